"""Exception types raised by snntorch-async.

Every error says what was expected, what was received, where, and how to fix it. The classes
derive from the built-in exception a user would naturally catch (``ValueError`` / ``TypeError``)
so that ``except ValueError`` keeps working.
"""

from __future__ import annotations

import enum


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


class Choice(str, enum.Enum):
    """A setting with named choices whose ``value`` is the token accepted in its place (e.g.
    ``BiasTiming.LAVA`` or ``"lava"``). Subclasses say where it is set (:meth:`setting`) and how
    to choose (:meth:`fix`)."""

    @classmethod
    def setting(cls) -> str:
        """The setting's name, for messages."""
        return cls.__name__

    @classmethod
    def fix(cls) -> str:
        """How to choose, for messages."""
        return f"pass one of the {cls.__name__} members."

    @classmethod
    def coerce(cls, value, where: str | None = None):
        """``value`` as a member (a member or its token); ``where`` names the setting.

        Raises:
            ConfigError: ``value`` is neither.
        """
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(f"{cls.__name__}.{m.name} ({m.value!r})" for m in cls)
            raise ConfigError(
                f"{where or cls.setting()}: expected one of {choices}; got {value!r}. "
                f"Fix: {cls.fix()}"
            ) from None
