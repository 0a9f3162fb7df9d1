"""convert(): the Leaky/Synaptic ↔ LIF mapping, conv-as-dense, reset refusal, Loihi limits, no-Lava errors."""

import importlib
import logging

import numpy as np
import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from torch import nn

from lava_bridge import (
    ConversionError,
    LavaUnavailableError,
    LayerSpec,
    LoihiLimitError,
    NetworkSpec,
    NeuronSpec,
    build,
    check_loihi_limits,
    convert,
)
from snntorch_async import DelayedLinear
from snntorch_async.graph import read_model

ZERO = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)


def test_leaky_and_synaptic_mapping():
    torch.manual_seed(0)
    beta = torch.tensor([0.5, 0.9, 0.25, 1.0])
    m = nn.Sequential(
        nn.Linear(3, 4),
        snn.Leaky(beta=beta, threshold=0.7, **ZERO),
        nn.Linear(4, 2, bias=False),
        snn.Synaptic(alpha=0.3, beta=0.8, threshold=1.5, output=True, **ZERO),
    )
    spec = convert(m, (3,))
    l0, l1 = spec.layers
    assert l0.name == "1" and l1.name == "3" and l0.source == "linear"
    assert np.array_equal(l0.weight, m[0].weight.detach().double().numpy())
    assert np.array_equal(l0.bias, m[0].bias.detach().double().numpy()) and l1.bias is None
    assert np.array_equal(l0.neuron.du, np.ones(4))
    assert np.array_equal(l0.neuron.dv, 1.0 - beta.double().numpy())
    assert np.array_equal(l0.neuron.vth, np.full(4, np.float64(np.float32(0.7))))
    assert l0.neuron.kind == "leaky" and l1.neuron.kind == "synaptic"
    assert np.array_equal(l1.neuron.du, np.full(2, 1.0 - np.float64(np.float32(0.3))))
    assert np.array_equal(l1.neuron.dv, np.full(2, 1.0 - np.float64(np.float32(0.8))))
    # exactness used by Pipelined and Lava: 1 - dv gives back beta exactly in float64
    assert np.array_equal(1 - l0.neuron.dv, beta.double().numpy())
    assert spec.exact and spec.output_lag() == 2 and spec.input_shape == (3,)


def test_delays_are_copied():
    m = nn.Sequential(DelayedLinear(5, 3, max_delay=9, seed=1), snn.Leaky(beta=0.5, **ZERO))
    spec = convert(m, (5,))
    assert spec.layers[0].source == "delayed-linear"
    assert np.array_equal(spec.layers[0].delay, m[0].delays.numpy())


def test_conv_pool_flatten_become_one_dense_matrix(caplog):
    torch.manual_seed(1)
    m = nn.Sequential(
        nn.Conv2d(2, 3, 3, stride=1, padding=1),
        nn.AvgPool2d(2),
        nn.Flatten(),
        snn.Leaky(beta=0.5, **ZERO),
        nn.Linear(12, 4),
        snn.Leaky(beta=0.5, output=True, **ZERO),
    )
    with caplog.at_level(logging.INFO, logger="lava_bridge._convert"):
        spec = convert(m, (2, 4, 4))
    assert "unrolled into a dense 12x32 matrix" in caplog.text
    l0 = spec.layers[0]
    assert l0.source == "conv2d-as-dense" and l0.weight.shape == (12, 32)
    x = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    w = m[0].weight.detach().double()
    want = F.avg_pool2d(F.conv2d(x, w, m[0].bias.detach().double(), padding=1), 2).flatten(1)
    got = x.flatten(1).numpy() @ l0.weight.T + l0.bias
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "reset,delay", [("subtract", False), ("none", False), ("zero", True), ("subtract", True)]
)
def test_reset_rules_lava_cannot_run_are_refused(reset, delay):
    m = nn.Sequential(
        nn.Linear(3, 4),
        snn.Leaky(beta=0.9, **ZERO),
        nn.Linear(4, 2),
        snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism=reset, reset_delay=delay),
    )
    with pytest.raises(
        ConversionError,
        match=r"Layer 1 \('3', Leaky\).*retrain with reset_mechanism='zero', "
        r"reset_delay=False.*approximate_reset=True",
    ):
        convert(m, (3,))


def test_approximate_reset_is_explicit_and_recorded(caplog):
    m = nn.Sequential(
        nn.Linear(3, 4), snn.Leaky(beta=0.9, init_hidden=True)
    )  # snnTorch default: subtract
    with caplog.at_level(logging.WARNING, logger="lava_bridge._convert"):
        spec = convert(m, (3,), approximate_reset=True)
    assert "approximating reset 'subtract'" in caplog.text
    assert not spec.exact and spec.layers[0].neuron.source_reset == "subtract"


def test_max_pool_and_missing_shape_are_refused():
    m = nn.Sequential(
        nn.Conv2d(1, 1, 3), nn.MaxPool2d(2), nn.Flatten(), snn.Leaky(beta=0.5, **ZERO)
    )
    with pytest.raises(ConversionError, match="MaxPool2d at '1' is not linear.*AvgPool2d"):
        convert(m, (1, 6, 6))
    with pytest.raises(ConversionError, match="input shape"):
        convert(m)


def test_graph_is_accepted():
    m = nn.Sequential(nn.Linear(3, 2), snn.Leaky(beta=0.5, **ZERO))
    assert convert(read_model(m, (3,))).equals(convert(m, (3,)))


def _spec(*, delay=None, fixed=False, weight=None, vth=None, du=None):
    n = NeuronSpec(
        du=np.full(2, 1 if du is None else du),
        dv=np.zeros(2, int if fixed else float),
        vth=np.full(2, 1 if vth is None else vth),
    )
    w = np.ones((2, 3), int if fixed else float) if weight is None else weight
    return NetworkSpec(
        layers=(LayerSpec(name="fc", weight=w, neuron=n, shape=(2,), delay=delay),),
        input_shape=(3,),
        fixed_point=fixed,
    )


@pytest.mark.parametrize("d", [63, 64])
def test_delays_above_62_are_refused_before_any_lava_object(d, monkeypatch):
    spec = _spec(delay=np.full((2, 3), d))
    with pytest.raises(
        LoihiLimitError,
        match=rf"Layer 0 \('fc'\): synaptic delays .* 0\.\.62.*got values in {d}\.\.{d}",
    ):
        check_loihi_limits(spec)
    calls = []
    monkeypatch.setattr(
        importlib.import_module("lava_bridge._build"), "require_lava", lambda: calls.append(1)
    )
    with pytest.raises(LoihiLimitError):
        build(spec, np.zeros((2, 3)))
    assert calls == []  # refused before Lava was even imported
    check_loihi_limits(_spec(delay=np.full((2, 3), 62)))


def test_fixed_point_ranges():
    with pytest.raises(
        LoihiLimitError, match=r"weight mantissas must lie in -256\.\.255.*got values in 1\.\.300"
    ):
        check_loihi_limits(_spec(fixed=True, weight=np.array([[1, 300, 1], [1, 1, 1]])))
    with pytest.raises(LoihiLimitError, match=r"vth .* 0\.\.131071.*131072"):
        check_loihi_limits(_spec(fixed=True, vth=2**17))
    with pytest.raises(LoihiLimitError, match=r"du must lie in 0\.\.4095"):
        check_loihi_limits(_spec(fixed=True, du=4096))
    with pytest.raises(LoihiLimitError, match=r"du must lie in \[0, 1\]"):
        check_loihi_limits(_spec(du=1.5))
    check_loihi_limits(_spec(fixed=True, du=4095, vth=2**17 - 1))


def test_build_on_python_311_says_which_python_and_extra(monkeypatch):
    mod = importlib.import_module("lava_bridge._build")
    monkeypatch.setattr(mod, "_python_version", lambda: (3, 11, 4))
    with pytest.raises(
        LavaUnavailableError,
        match=r"needs Python 3\.10, but this is Python 3\.11\.4.*"
        r"pip install 'snntorch-async\[lava\]'",
    ):
        build(_spec(), np.zeros((2, 3)))
    assert not mod.lava_available()
