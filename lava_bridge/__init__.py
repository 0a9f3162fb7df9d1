"""Lava (Loihi) bridge: network spec, conversion, quantization, emulation and real Lava runs.

``lava_bridge`` imports without Lava and without torch: the spec (``NetworkSpec``, ``load``) and
the errors are plain numpy/stdlib, and everything else is imported on first use. Only
``lava_bridge.build`` imports Lava (lazily, Python 3.10 with the ``[lava]`` extra).

Quick start::

    from lava_bridge import convert, verify
    spec = convert(model, input_shape=(784,))       # zero reset, reset_delay=False
    spec.save("net.npz")
    result = verify(model, inputs)                  # Pipelined vs Lava float, spike for spike
    assert result.mismatches == 0
"""

from __future__ import annotations

import importlib
import sys
import types

from .build import BuiltNetwork, build, lava_available, require_lava
from .convert import convert
from .errors import (
    ConversionError,
    LavaBridgeError,
    LavaRunError,
    LavaTimeoutError,
    LavaUnavailableError,
    LoihiLimitError,
    SpecFormatError,
    SpecVersionError,
)
from .limits import LOIHI_LIMITS, check_loihi_limits
from .run import LavaOutput, LavaRun, run, run_spec
from .spec import FORMAT_VERSION, MAX_DELAY, LayerSpec, NetworkSpec, NeuronSpec, load
from .verify import VerifyResult, align_pipeline, simulate_spec, verify

#: Public names of part B's modules, imported on first use: name -> submodule.
_LAZY = {
    "quantize": "quantize",
    "QuantizeSettings": "quantize",
    "emulate": "emulator",
    "EmulationResult": "emulator",
    "export_netx": "netx",
    "read_netx": "netx",
    "export_nir": "nir",
    "import_nir": "nir",
    "model_from_spec": "nir",
    "prepare_qat": "qat",
    "remove_qat": "qat",
    "qat": "qat",
}
#: Public functions that share their module's name: importing the submodule must not replace
#: the function on the package (Python binds a submodule to its package on first import).
_SHADOWED = {"build", "run", "convert", "verify", "quantize", "qat"}


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            current = self.__dict__.get(name)
            if current is not None and not isinstance(current, types.ModuleType):
                return  # keep the function; the module stays in sys.modules
            if name in _LAZY:
                return  # resolved to the function by __getattr__
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lava_bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "FORMAT_VERSION",
    "LOIHI_LIMITS",
    "MAX_DELAY",
    "BuiltNetwork",
    "ConversionError",
    "LavaBridgeError",
    "LavaOutput",
    "LavaRun",
    "LavaRunError",
    "LavaTimeoutError",
    "LavaUnavailableError",
    "LayerSpec",
    "LoihiLimitError",
    "NetworkSpec",
    "NeuronSpec",
    "SpecFormatError",
    "SpecVersionError",
    "VerifyResult",
    "align_pipeline",
    "build",
    "check_loihi_limits",
    "convert",
    "lava_available",
    "load",
    "require_lava",
    "run",
    "run_spec",
    "simulate_spec",
    "verify",
    *_LAZY,
]
