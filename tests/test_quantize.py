"""quantize(): golden values by hand, Lava's grid, error report, limits and errors."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from lava_bridge import LoihiLimitError, convert
from lava_bridge import check_loihi_limits
from lava_bridge.emulator import emulate, loihi_weights
from lava_bridge._quantize import (
    QuantizeSettings,
    layer_grid,
    mantissa_range,
    quantize,
    quantize_decays,
)
from lava_bridge.spec import LayerSpec, NetworkSpec, NeuronSpec
from snntorch_async.reference import run_snntorch


def _float_spec(w, *, vth=1.0, du=1.0, dv=0.25, bias=None):
    w = np.atleast_2d(np.asarray(w, dtype=float))
    n = w.shape[0]
    layer = LayerSpec(
        name="fc",
        weight=w,
        neuron=NeuronSpec(du=np.full(n, du), dv=np.full(n, dv), vth=np.full(n, vth)),
        shape=(n,),
        bias=None if bias is None else np.asarray(bias, dtype=float),
    )
    return NetworkSpec(layers=(layer,), input_shape=(w.shape[1],))


def _model(seed, sizes=(12, 16, 5), beta=0.85, gain=3.0):
    torch.manual_seed(seed)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    mods = []
    for i in range(len(sizes) - 1):
        lin = nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():
            lin.weight.mul_(gain)
        mods += [lin, snn.Leaky(beta=beta, output=i == len(sizes) - 2, **kw)]
    return nn.Sequential(*mods)


def test_golden_layer_by_hand():
    # mixed matrix: mantissas even in [-256, 254]; s/2^e = min(254/0.5, 256/0.25) = 508
    # e = 7 (largest): vth = 1·508·128 = 65024 <= 131071; worst current (254·128 + 1)·64 < 2^23
    q = quantize(_float_spec([[0.5, -0.25]], vth=1.0, dv=0.25))
    layer = q.spec.layers[0]
    assert layer.weight_exp == 7
    assert layer.meta["scale"] == 508 * 128
    assert layer.weight.tolist() == [[254, -128]]  # -0.25·508 = -127 -> even grid: -63.5 -> -64
    assert layer.neuron.vth.tolist() == [65024]
    assert layer.neuron.du.tolist() == [4095] and layer.neuron.dv.tolist() == [1024]
    assert q.spec.fixed_point and q.report.layers[0].weight_exp == 7


def test_decays_by_hand():
    du, dv = quantize_decays(np.array([1.0, 0.0, 0.5, 1 / 4096]), np.array([1.0, 0.0, 0.1, 0.5]))
    assert du.tolist() == [4095, 0, 2047, 0]
    assert dv.tolist() == [4095, 0, 410, 2048]


def test_mantissa_ranges_by_hand():
    assert mantissa_range(np.array([1.0, -1.0]), 8) == (-256, 254, 2)
    assert mantissa_range(np.array([1.0, 0.0]), 8) == (0, 255, 1)
    assert mantissa_range(np.array([-1.0, 0.0]), 8) == (-255, 0, 1)
    assert mantissa_range(np.array([-1.0, 2.0]), 4) == (-256, 224, 32)


def test_current_guard_lowers_the_exponent():
    # 64 inputs of weight 1: all spiking gives 64·255·2^e·64 -> must stay below 2^23
    spec = _float_spec(np.ones((2, 64)), vth=0.5)
    e = quantize(spec).spec.layers[0].weight_exp
    assert 64 * 255 * 2**e * 64 < 2**23 <= 64 * 255 * 2 ** (e + 1) * 64
    unguarded = quantize(spec, QuantizeSettings(guard_current=False)).spec.layers[0]
    assert unguarded.weight_exp == 7


@pytest.mark.parametrize("seed", range(4))
def test_mantissas_are_on_lavas_grid_and_within_limits(seed):
    model = _model(seed)
    for settings in (
        QuantizeSettings(),
        QuantizeSettings(num_weight_bits=5),
        QuantizeSettings.slayer(),
    ):
        spec = quantize(convert(model, (12,)), settings).spec
        check_loihi_limits(spec)
        for layer in spec.layers:
            np.testing.assert_array_equal(
                loihi_weights(layer.weight, layer.num_weight_bits), layer.weight
            )
            np.testing.assert_array_equal(
                loihi_weights(layer.bias[:, None], layer.num_weight_bits)[:, 0], layer.bias
            )


@pytest.mark.parametrize("seed", range(3))
def test_report_errors_match_the_grid(seed):
    spec = convert(_model(seed), (12,))
    q = quantize(spec)
    for f, x, r in zip(spec.layers, q.spec.layers, q.report.layers):
        s, e = x.meta["scale"], x.weight_exp
        back = x.weight * 2.0**e / s
        assert r.weight_max_abs_error == pytest.approx(np.abs(back - f.weight).max())
        step = mantissa_range(f.weight, 8)[2]
        assert r.weight_max_abs_error <= step / 2 * 2.0**e / s + 1e-12  # half a grid step
        assert r.weight_rel_error < 0.01  # 8 bits: under 1 % of the largest weight
        assert r.current_headroom < 1.0
        assert r.threshold_rel_error <= 0.5 / (f.neuron.vth.min() * s) + 1e-12
    assert "w_err_max" in q.report.summary()


@pytest.mark.parametrize("seed", range(3))
def test_fixed_point_follows_the_float_model(seed):
    """8-bit quantization keeps nearly every output spike of the float (snnTorch) model."""
    model = _model(seed)
    q = quantize(convert(model, (12,))).spec
    x = (torch.rand(30, 16, 12, generator=torch.Generator().manual_seed(seed)) < 0.3).float()
    ref = run_snntorch(model, x)
    got = emulate(q, torch.cat([x, torch.zeros(2, 16, 12)])).spikes[2:]
    assert ref.sum() > 20
    assert float((ref != got).float().mean()) < 0.02


# -- errors -----------------------------------------------------------------------------------


def test_threshold_that_cannot_fit_is_an_error():
    with pytest.raises(
        LoihiLimitError,
        match=r"Layer 0 \('fc'\): no weight exponent in -8..7 fits.*threshold mantissa",
    ):
        quantize(_float_spec([[1e-6, 2e-6]], vth=1.0))


def test_fixed_scale_with_weights_out_of_range_is_an_error():
    with pytest.raises(LoihiLimitError, match=r"weights reach .*outside -256..254.*Fix:"):
        quantize(_float_spec([[5.0, -1.0]]), QuantizeSettings.slayer())


def test_negative_threshold_is_an_error():
    with pytest.raises(LoihiLimitError, match="thresholds must be >= 0"):
        quantize(_float_spec([[1.0]], vth=-1.0))


def test_bias_that_cannot_fit_is_an_error():
    with pytest.raises(LoihiLimitError, match="bias exponent"):
        quantize(_float_spec([[1e-3]], vth=1e-3, bias=[1e4]), QuantizeSettings(guard_current=False))


def test_already_fixed_point_is_an_error():
    fixed = quantize(_float_spec([[0.5]])).spec
    with pytest.raises(ValueError, match="already fixed point.*lava_bridge.convert"):
        quantize(fixed)


def test_settings_are_validated():
    with pytest.raises(ValueError, match="num_weight_bits must be in 1..8"):
        QuantizeSettings(num_weight_bits=9)
    with pytest.raises(ValueError, match="outside weight_exp_range"):
        QuantizeSettings(weight_exp=9)
    with pytest.raises(ValueError, match="scale must be a positive"):
        QuantizeSettings(scale=0.0)
    with pytest.raises(TypeError):
        QuantizeSettings(8)  # keyword-only


def test_layer_grid_is_what_quantize_uses():
    spec = _float_spec([[0.3, -0.7, 0.1]], vth=0.8, bias=[0.05])
    layer = spec.layers[0]
    g = layer_grid(layer.weight, layer.neuron.vth, layer.neuron.du, layer.bias, QuantizeSettings())
    q = quantize(spec).spec.layers[0]
    assert (g.scale, g.weight_exp, g.bias_exp) == (q.meta["scale"], q.weight_exp, q.bias_exp)
