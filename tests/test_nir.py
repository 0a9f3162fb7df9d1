"""NIR export/import: parameter conventions, per-neuron parameters, reset rule and dt kept, round
trip through nir.write/nir.read, and the same spikes in our engine after loading."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

import snntorch_async as sa
from lava_bridge import SpecFormatError, convert
from lava_bridge.nir import export_nir, import_nir, model_from_spec
from lava_bridge import simulate_spec


def _model(seed, *, reset="zero", synaptic=False, delays=False, per_neuron=False):
    torch.manual_seed(seed)
    kw = dict(reset_mechanism=reset, reset_delay=False, init_hidden=True)
    beta = torch.rand(12) * 0.5 + 0.45 if per_neuron else 0.8
    thr = torch.rand(12) * 0.5 + 0.75 if per_neuron else 1.0
    first = (
        snn.Synaptic(alpha=0.6, beta=beta, threshold=thr, **kw)
        if synaptic
        else snn.Leaky(beta=beta, threshold=thr, **kw)
    )
    second = (
        sa.DelayedLinear(12, 5, max_delay=3, seed=seed) if delays else nn.Linear(12, 5, bias=False)
    )
    model = nn.Sequential(nn.Linear(8, 12), first, second, snn.Leaky(beta=0.7, output=True, **kw))
    with torch.no_grad():
        model[0].weight.mul_(3)
        model[2].weight.mul_(3)
    return model


def _x(seed, T=25, B=6, n=8):
    return (torch.rand(T, B, n, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def test_parameter_conventions_by_hand():
    model = _model(0, synaptic=True)
    assert export_nir(convert(model, (8,))).metadata["dt"] == 1e-4  # snnTorch's importer's dt
    g = export_nir(convert(model, (8,)), dt=0.5)
    assert g.metadata["dt"] == 0.5
    assert [
        type(g.nodes[k]).__name__
        for k in ("input", "001.dense", "001.neuron", "002.dense", "002.neuron", "output")
    ] == ["Input", "Affine", "CubaLIF", "Linear", "LIF", "Output"]
    cuba, lif = g.nodes["001.neuron"], g.nodes["002.neuron"]
    # alpha = 0.6 -> tau_syn = dt/(1-alpha) = 1.25, w_in = tau_syn/dt = 2.5;
    # beta = 0.8 -> tau_mem = 2.5, r = 5
    np.testing.assert_allclose(cuba.tau_syn, np.full(12, 1.25), rtol=1e-6)
    np.testing.assert_allclose(cuba.w_in, np.full(12, 2.5), rtol=1e-6)
    np.testing.assert_allclose(cuba.tau_mem, np.full(12, 2.5), rtol=1e-6)
    np.testing.assert_allclose(cuba.r, np.full(12, 5.0), rtol=1e-6)
    # Euler step of NIR's LIF with these values is snnTorch's: beta = 1 - dt/tau, gain r·dt/tau = 1
    np.testing.assert_allclose(1 - 0.5 / lif.tau, np.full(5, 0.7), rtol=1e-6)
    np.testing.assert_allclose(lif.r * 0.5 / lif.tau, np.ones(5), rtol=1e-12)
    assert lif.v_threshold.shape == (5,) and np.all(lif.v_leak == 0) and np.all(lif.v_reset == 0)
    assert lif.metadata["reset_mechanism"] == "zero" and lif.metadata["reset_delay"] is False


@pytest.mark.parametrize(
    "case", [dict(), dict(synaptic=True), dict(per_neuron=True), dict(delays=True)]
)
def test_round_trip_through_files_gives_the_same_spikes(tmp_path, case):
    model = _model(1, **case)
    spec = convert(model, (8,))
    path = tmp_path / "net.nir"
    export_nir(spec, path)
    back = import_nir(path)
    assert back.num_layers == spec.num_layers and back.dt == spec.dt
    for a, b in zip(spec.layers, back.layers):
        np.testing.assert_allclose(b.weight, a.weight, rtol=1e-12)
        np.testing.assert_allclose(b.neuron.dv, a.neuron.dv, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(b.neuron.du, a.neuron.du, rtol=1e-9, atol=1e-15)
        np.testing.assert_array_equal(b.neuron.vth, a.neuron.vth)
        assert (b.delay is None) == (a.delay is None)
    x = _x(1)
    # our engine, LayerSync (= snnTorch), on the loaded model
    ref = sa.simulate(model, x).spikes
    loaded = model_from_spec(back)
    assert torch.equal(sa.simulate(loaded, x).spikes, ref)
    # and Lava's float semantics (Pipelined timing) of the loaded spec
    pad = torch.cat([x, torch.zeros(spec.num_layers, *x.shape[1:])]).numpy()
    np.testing.assert_array_equal(simulate_spec(back, pad), simulate_spec(spec, pad))
    assert ref.sum() > 0


def test_reset_rule_and_model_export_kept(tmp_path):
    model = _model(2, reset="subtract")
    g = export_nir(model, tmp_path / "s.nir", input_shape=(8,))
    assert g.nodes["001.neuron"].metadata["reset_mechanism"] == "subtract"
    back = import_nir(nir.read(str(tmp_path / "s.nir")))
    assert back.layers[0].neuron.source_reset == "subtract" and not back.exact
    loaded = model_from_spec(back)
    x = _x(2)
    assert torch.equal(sa.simulate(loaded, x).spikes, sa.simulate(model, x).spikes)


def test_foreign_gain_is_folded_into_the_weights():
    # a LIF with input gain r·dt/tau = 2 behaves like gain 1 with twice the weights
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([2])}),
            "w": nir.Linear(weight=np.array([[0.5, 1.0]])),
            "n": nir.LIF(
                tau=np.array([4.0]), r=np.array([8.0]), v_leak=np.zeros(1), v_threshold=np.ones(1)
            ),
            "out": nir.Output(output_type={"output": np.array([1])}),
        },
        edges=[("in", "w"), ("w", "n"), ("n", "out")],
    )
    spec = import_nir(g, dt=1.0)
    np.testing.assert_allclose(spec.layers[0].weight, [[1.0, 2.0]])
    np.testing.assert_allclose(spec.layers[0].neuron.dv, [0.25])


def test_errors():
    spec = convert(_model(3), (8,))
    g = export_nir(spec)
    g.metadata = {}  # as snnTorch's exporter writes it: no dt, meaning 1e-4
    np.testing.assert_allclose(
        import_nir(g).layers[0].neuron.dv, spec.layers[0].neuron.dv, rtol=1e-9
    )
    with pytest.raises(SpecFormatError, match="positive time step"):
        export_nir(spec, dt=0.0)
    leak = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type={"input": np.array([1])}),
            "w": nir.Linear(weight=np.ones((1, 1))),
            "n": nir.LIF(
                tau=np.ones(1) * 2, r=np.ones(1) * 2, v_leak=np.ones(1), v_threshold=np.ones(1)
            ),
            "out": nir.Output(output_type={"output": np.array([1])}),
        },
        edges=[("in", "w"), ("w", "n"), ("n", "out")],
    )
    with pytest.raises(SpecFormatError, match="v_leak or v_reset other than 0"):
        import_nir(leak, dt=1.0)
    with pytest.raises(SpecFormatError, match="needs the per-sample input shape"):
        export_nir(_model(3))
