"""lava_bridge's surface: a plain package of re-exports, every error a LavaBridgeError, one
output-lag alignment shared with the core package."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import lava_bridge
from lava_bridge import BridgeTypeError, BridgeValueError, LavaBridgeError, QuantizeSettings


def test_plain_package_whose_functions_stay_functions():
    code = (
        "import sys, types, lava_bridge, lava_bridge._quantize, lava_bridge._run, lava_bridge._qat;"
        "assert type(sys.modules['lava_bridge']) is types.ModuleType;"
        "assert all(isinstance(getattr(lava_bridge, n), types.FunctionType) for n in "
        "('quantize', 'run', 'convert', 'verify', 'build', 'qat'));"
        "assert 'lava' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert set(lava_bridge.__all__) <= set(dir(lava_bridge))


def test_every_bridge_error_is_a_lava_bridge_error():
    with pytest.raises(BridgeValueError, match="num_weight_bits must be in 1..8") as e:
        QuantizeSettings(num_weight_bits=9)
    assert isinstance(e.value, (LavaBridgeError, ValueError))
    spec = lava_bridge.load  # any non-spec object
    with pytest.raises(BridgeTypeError) as e:
        lava_bridge.emulate(spec, torch.zeros(2, 1, 3))
    assert isinstance(e.value, TypeError)
    with pytest.raises(LavaBridgeError):
        lava_bridge.quantize("net.npz")


def test_one_alignment():
    from snntorch_async.metrics import drop_lag

    x = np.arange(10).reshape(5, 2)
    assert (lava_bridge.align_pipeline(x, 2) == drop_lag(x, 2)).all()
    with pytest.raises(ValueError, match="output lag must be in 0..5"):
        lava_bridge.align_pipeline(x, 6)
