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
from .spec import FORMAT_VERSION, MAX_DELAY, LayerSpec, NetworkSpec, NeuronSpec, load

#: Public names imported on first use: name -> submodule (torch / Lava are loaded only then).
_LAZY = {
    "convert": "convert",
    "check_loihi_limits": "convert",
    "build": "build",
    "BuiltNetwork": "build",
    "lava_available": "build",
    "run": "run",
    "run_spec": "run",
    "LavaRun": "run",
    "verify": "verify",
    "VerifyResult": "verify",
    "align_pipeline": "verify",
    # part B (quantization, emulator, file formats)
    "quantize": "quantize",
    "emulate": "emulator",
    "export_netx": "netx",
    "export_nir": "nir",
}


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
    "MAX_DELAY",
    "ConversionError",
    "LavaBridgeError",
    "LavaRunError",
    "LavaTimeoutError",
    "LavaUnavailableError",
    "LayerSpec",
    "LoihiLimitError",
    "NetworkSpec",
    "NeuronSpec",
    "SpecFormatError",
    "SpecVersionError",
    "load",
    *_LAZY,
]
