"""Exception types raised by the Lava bridge.

This module imports nothing but the standard library, so that ``lava_bridge.spec`` stays usable
without torch or Lava. Every error says what was expected, what was received, where, and the fix.
The classes derive from the built-in exception a user would naturally catch.
"""

from __future__ import annotations

__all__ = [
    "LavaBridgeError",
    "SpecFormatError",
    "SpecVersionError",
    "ConversionError",
    "BiasTimingError",
    "LoihiLimitError",
    "LavaUnavailableError",
    "LavaRunError",
    "LavaTimeoutError",
    "BridgeValueError",
    "BridgeTypeError",
]


class LavaBridgeError(Exception):
    """Base class of every error raised on purpose by ``lava_bridge``."""


class BridgeValueError(LavaBridgeError, ValueError):
    """A bridge function got a bad value: settings, inputs, a lag (not a spec or a model)."""


class BridgeTypeError(LavaBridgeError, TypeError):
    """A bridge function got an object of the wrong type."""


class SpecFormatError(LavaBridgeError, ValueError):
    """A network spec (in memory or in a ``.npz`` file) is malformed."""


class SpecVersionError(SpecFormatError):
    """A spec file was written by another version of the spec format."""


class ConversionError(LavaBridgeError, ValueError):
    """A model cannot be converted to a network spec (exactly, or at all)."""


class BiasTimingError(ConversionError):
    """A target needs another bias timing than the spec records (netx needs ``"lava"``)."""


class LoihiLimitError(LavaBridgeError, ValueError):
    """A spec exceeds a Loihi/Lava limit (delays, weight, threshold or decay ranges)."""


class LavaUnavailableError(LavaBridgeError, ImportError):
    """Lava (``lava-nc``) cannot be imported in this interpreter."""


class LavaRunError(LavaBridgeError, RuntimeError):
    """A Lava run failed (the processes were stopped)."""


class LavaTimeoutError(LavaRunError, TimeoutError):
    """A Lava run or its ``stop()`` did not finish within the time limit."""
