"""Lava (Loihi) bridge: network spec, conversion, quantization, emulation and real Lava runs.

``lava_bridge`` imports without Lava and without torch: the spec (``NetworkSpec``, ``load``),
the errors, conversion, quantization and the builders are numpy/stdlib at import time (torch and
snntorch_async are imported inside the functions that need them). The emulator, QAT (torch) and
NIR (``nir``) are imported on first use of their names. Only ``build`` imports Lava, inside the
call (Python 3.10 with the ``[lava]`` extra).

The implementation lives in private modules (``lava_bridge._convert``, ``_quantize``, ``_build``,
``_run``, ``_verify``, ``_qat``, whose names would otherwise collide with the functions) and in
``spec``, ``errors``, ``limits``, ``emulator``, ``netx`` and ``nir``; import the public names
from the package: ``from lava_bridge import convert, quantize, QuantizeSettings``.

Quick start::

    from lava_bridge import convert, verify
    spec = convert(model, input_shape=(784,))       # zero reset, reset_delay=False
    spec.save("net.npz")
    result = verify(model, inputs)                  # Pipelined vs Lava float, spike for spike
    assert result.mismatches == 0
"""

from __future__ import annotations

import importlib

from ._build import BuiltNetwork, build, lava_available, require_lava
from ._convert import convert
from ._quantize import LayerQuantReport, QuantizeReport, QuantizeResult, QuantizeSettings, quantize
from ._run import LavaOutput, LavaRun, run, run_spec
from ._verify import VerifyResult, align_pipeline, simulate_spec, verify
from .errors import (
    BiasTimingError,
    BridgeTypeError,
    BridgeValueError,
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
from .netx import NETX_GRID, TimingMismatch, bias_timing_mismatch, export_netx, read_netx
from .spec import BIAS_TIMINGS, FORMAT_VERSION, MAX_DELAY, LayerSpec, NetworkSpec, NeuronSpec, load

#: Public names whose modules import torch or ``nir``, imported on first use: name -> module.
_LAZY = {
    "emulate": ".emulator",
    "EmulationResult": ".emulator",
    "export_nir": ".nir",
    "import_nir": ".nir",
    "model_from_spec": ".nir",
    "prepare_qat": "._qat",
    "remove_qat": "._qat",
    "qat": "._qat",
    "is_qat": "._qat",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lava_bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BIAS_TIMINGS",
    "FORMAT_VERSION",
    "LOIHI_LIMITS",
    "MAX_DELAY",
    "NETX_GRID",
    "BiasTimingError",
    "BridgeTypeError",
    "BridgeValueError",
    "BuiltNetwork",
    "ConversionError",
    "LavaBridgeError",
    "LavaOutput",
    "LavaRun",
    "LavaRunError",
    "LavaTimeoutError",
    "LavaUnavailableError",
    "LayerQuantReport",
    "LayerSpec",
    "LoihiLimitError",
    "NetworkSpec",
    "NeuronSpec",
    "QuantizeReport",
    "QuantizeResult",
    "QuantizeSettings",
    "SpecFormatError",
    "SpecVersionError",
    "TimingMismatch",
    "VerifyResult",
    "align_pipeline",
    "bias_timing_mismatch",
    "build",
    "check_loihi_limits",
    "convert",
    "export_netx",
    "lava_available",
    "load",
    "quantize",
    "read_netx",
    "require_lava",
    "run",
    "run_spec",
    "simulate_spec",
    "verify",
    *_LAZY,
]
