"""netx HDF5 export: the layout lava-dl's reader expects (read back with h5py), round trip,
errors, and (lava) the network rebuilt from the file spikes exactly like the original."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import snntorch as snn
import torch
from fixed_specs import random_spikes
from torch import nn

from dataclasses import replace

from lava_bridge import ConversionError, LoihiLimitError, SpecFormatError, convert
from lava_bridge.emulator import emulate
from lava_bridge.netx import export_netx, read_netx
from lava_bridge import QuantizeSettings, quantize
from lava_bridge.spec import LayerSpec, NetworkSpec, NeuronSpec


def _model(seed, bias=True, delays=False):
    import snntorch_async as sa

    torch.manual_seed(seed)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    second = (
        sa.DelayedLinear(10, 4, max_delay=3, seed=seed, bias=bias)
        if delays
        else nn.Linear(10, 4, bias=bias)
    )
    model = nn.Sequential(
        nn.Linear(6, 10, bias=bias),
        snn.Leaky(beta=0.8, **kw),
        second,
        snn.Leaky(beta=0.7, output=True, **kw),
    )
    with torch.no_grad():
        model[0].weight.mul_(3)
        model[2].weight.mul_(3)
    return model


def _fixed(seed, **kw):
    spec = convert(_model(seed, **kw), (6,), bias_timing="lava")  # netx's bias timing
    return quantize(spec, QuantizeSettings(weight_exp=0)).spec


def test_layout_read_back_with_h5py(tmp_path):
    spec = _fixed(0)
    path = export_netx(spec, tmp_path / "net.net", num_steps=40)
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == ["layer", "simulation"]
        assert float(f["simulation/Ts"][()]) == 1.0 and int(f["simulation/tSample"][()]) == 40
        assert sorted(f["layer"].keys()) == ["0", "1"]
        for i, layer in enumerate(spec.layers):
            g = f[f"layer/{i}"]
            assert g["type"][0] == b"dense"
            assert g["shape"][()].tolist() == [layer.out_size]
            assert (
                int(g["inFeatures"][()]) == layer.in_size
                and int(g["outFeatures"][()]) == layer.out_size
            )
            np.testing.assert_array_equal(g["weight"][()], layer.weight)  # weight_exp = 0
            np.testing.assert_array_equal(g["bias"][()], layer.bias << layer.bias_exp)
            n = g["neuron"]
            assert n["type"][0] == b"CUBA"
            assert int(n["iDecay"][()]) == 4096 == int(layer.neuron.du[0]) + 1  # Leaky: du = 4095
            assert int(n["vDecay"][()]) == int(layer.neuron.dv[0])
            assert int(n["vThMant"][()]) == int(layer.neuron.vth[0])
            assert int(n["refDelay"][()]) == 1 and not bool(n["gradedSpike"][()])


def test_round_trip_without_lava(tmp_path):
    spec = _fixed(1, bias=False, delays=True)
    back = read_netx(export_netx(spec, tmp_path / "d.net"))
    assert back.fixed_point and back.num_layers == spec.num_layers
    for a, b in zip(spec.layers, back.layers):
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.delay, b.delay)
        for name in ("du", "dv", "vth"):
            np.testing.assert_array_equal(getattr(a.neuron, name), getattr(b.neuron, name))
    x = torch.tensor(random_spikes(1, 20, 4, 6))
    assert torch.equal(emulate(spec, x).spikes, emulate(back, x).spikes)


def test_positive_weight_exp_is_written_as_effective_weights(tmp_path):
    w = np.array([[3, -4], [5, 1]])
    layer = LayerSpec(
        name="l",
        weight=w,
        neuron=NeuronSpec(du=[4095, 4095], dv=[0, 0], vth=[5, 5]),
        shape=(2,),
        weight_exp=2,
    )
    spec = NetworkSpec(layers=(layer,), input_shape=(2,), fixed_point=True)
    with h5py.File(export_netx(spec, tmp_path / "e.net"), "r") as f:
        assert f["layer/0/weight"][()].tolist() == [[12, -16], [20, 4]]


def test_errors(tmp_path):
    # a float spec is put on netx's grid by export_netx itself (weight exponent 0)
    own = read_netx(export_netx(convert(_model(0), (6,), bias_timing="lava"), tmp_path / "f.net"))
    assert all(a.weight.tolist() == b.weight.tolist() for a, b in zip(own.layers, _fixed(0).layers))
    with pytest.raises(SpecFormatError, match="expected a lava_bridge.NetworkSpec"):
        export_netx("net.npz", tmp_path / "f2.net")
    big = quantize(
        convert(_model(0), (6,), bias_timing="lava")
    ).spec  # chosen exponents > 0: out of netx's range
    assert any(layer.weight_exp > 0 for layer in big.layers)
    with pytest.raises(LoihiLimitError, match="outside netx's 8-bit range.*weight_exp=0"):
        export_netx(big, tmp_path / "g.net")
    odd = LayerSpec(
        name="o",
        weight=np.array([[3]]),
        neuron=NeuronSpec(du=[4095], dv=[0], vth=[1]),
        shape=(1,),
        weight_exp=-1,
    )
    with pytest.raises(LoihiLimitError, match="no exact netx form"):
        export_netx(
            NetworkSpec(layers=(odd,), input_shape=(1,), fixed_point=True), tmp_path / "h.net"
        )
    per_neuron = LayerSpec(
        name="p",
        weight=np.array([[3], [4]]),
        neuron=NeuronSpec(du=[4095, 4095], dv=[0, 1], vth=[1, 1]),
        shape=(2,),
    )
    with pytest.raises(LoihiLimitError, match="one dv .* per layer"):
        export_netx(
            NetworkSpec(layers=(per_neuron,), input_shape=(1,), fixed_point=True),
            tmp_path / "i.net",
        )
    syn_bias = LayerSpec(
        name="s",
        weight=np.array([[3]]),
        bias=np.array([2]),
        neuron=NeuronSpec(du=[100], dv=[0], vth=[1]),
        shape=(1,),
    )
    with pytest.raises(ConversionError, match="bias_timing 'synaptic'.*BiasTiming.LAVA"):
        export_netx(
            NetworkSpec(layers=(syn_bias,), input_shape=(1,), fixed_point=True), tmp_path / "j.net"
        )
    assert not (tmp_path / "j.net").exists()
    lava_bias = replace(syn_bias, bias_timing="lava")  # Lava's timing: a Synaptic bias is fine
    with h5py.File(
        export_netx(
            NetworkSpec(layers=(lava_bias,), input_shape=(1,), fixed_point=True), tmp_path / "k.net"
        ),
        "r",
    ) as f:
        assert f["layer/0/bias"][()].tolist() == [2]
    (tmp_path / "not.net").write_bytes(b"nope")
    with pytest.raises(SpecFormatError, match="cannot be opened as an HDF5 netx file"):
        read_netx(tmp_path / "not.net")


@pytest.mark.lava
@pytest.mark.timeout(120)
@pytest.mark.parametrize("delays", [False, True])
def test_lava_network_rebuilt_from_the_file_spikes_identically(tmp_path, delays):
    pytest.importorskip(
        "lava.magma.core.run_configs",
        reason="Lava is not installed: run `make test`, or install the [lava] extra on Python 3.10",
    )
    from lava_fixed_harness import run_lava_fixed

    spec = _fixed(2, bias=False, delays=delays)
    rebuilt = read_netx(export_netx(spec, tmp_path / "n.net"))  # h5py only
    x = random_spikes(2, 25, 1, 6)[:, 0]
    lava_spikes, _, _ = run_lava_fixed(rebuilt, x)
    ours = emulate(spec, torch.tensor(x)[:, None])
    assert sum(int(s.sum()) for s in lava_spikes) > 0
    for i in range(spec.num_layers):
        np.testing.assert_array_equal(
            lava_spikes[i], ours.layer_spikes[i][:, 0].numpy().astype(np.int64)
        )
