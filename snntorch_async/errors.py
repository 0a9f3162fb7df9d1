"""Exception types raised by snntorch-async.

Every error says what was expected, what was received, where, and how to fix it. The classes
derive from the built-in exception a user would naturally catch (``ValueError`` / ``TypeError``)
so that ``except ValueError`` keeps working.
"""

from __future__ import annotations


class SnnTorchAsyncError(Exception):
    """Base class of every error raised on purpose by snntorch-async."""


class UnsupportedModuleError(SnnTorchAsyncError, TypeError):
    """A module in the user's model cannot be read into a network graph."""


class ModelStructureError(SnnTorchAsyncError, ValueError):
    """The model's modules are supported one by one but their order cannot be read."""


class InputError(SnnTorchAsyncError, ValueError):
    """The inputs given to ``simulate`` (or a wrapper) are malformed."""


class ConfigError(SnnTorchAsyncError, ValueError):
    """A scheduler, record or training setting is out of range."""


class WriteError(SnnTorchAsyncError, OSError):
    """A file could not be written (nothing was left behind: no partial file, no temporary)."""
