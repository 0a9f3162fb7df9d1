"""The Lava bridge for snn.RLeaky / snn.RSynaptic, without Lava: ``convert`` maps the recurrence to
a Dense from the layer back to itself (its bias joins the layer's bias), the spec keeps it (format
v3; older files read), ``Pipelined`` equals the spec's own float semantics (``simulate_spec``)
under both bias timings, ``quantize`` puts the recurrent Dense on the layer's grid, ``emulate``'s
recurrent hop takes one step (by hand), NIR and netx files hold it, and the refusals. The real
Lava / lava-dl / snnTorch-importer cross-checks are in test_recurrent_lava.py, test_lava_dl.py and
test_nir_snntorch.py."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace

import h5py
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from conftest import DEVICES
from fixed_specs import random_fixed_spec, random_spikes

from lava_bridge import (
    FORMAT_VERSION,
    BridgeValueError,
    ConversionError,
    LoihiLimitError,
    QuantizeSettings,
    SpecFormatError,
    convert,
    export_netx,
    load,
    quantize,
    read_netx,
    simulate_spec,
)
from lava_bridge._quantize import mantissa_range, part_range
from lava_bridge.emulator import emulate, loihi_weights
from lava_bridge.nir import export_nir, import_nir, model_from_spec
from lava_bridge.spec import LayerSpec, NetworkSpec, NeuronSpec
from snntorch_async import LayerSync, Pipelined, Record, simulate

NIN, NH, NOUT = 5, 8, 4
KW = dict(init_hidden=True, reset_mechanism="zero", reset_delay=False)


def recurrent_net(seed: int, *, bias: bool = True, one_to_one_first: bool = False) -> nn.Sequential:
    """5-8-4: an RLeaky (all-to-all, or one-to-one with per-neuron V) then a one-to-one RLeaky,
    Lava's reset rule, seeded; feed-forward and recurrent biases when ``bias``."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    if one_to_one_first:
        first = snn.RLeaky(
            beta=0.8, threshold=0.6, all_to_all=False, V=torch.rand(NH, generator=g) - 0.4, **KW
        )
    else:
        first = snn.RLeaky(beta=0.8, threshold=0.6, linear_features=NH, **KW)
    v_out = torch.rand(NOUT, generator=g) * 0.8 - 0.3
    m = nn.Sequential(
        nn.Linear(NIN, NH, bias=bias),
        first,
        nn.Linear(NH, NOUT, bias=bias),
        snn.RLeaky(beta=0.7, threshold=0.5, all_to_all=False, V=v_out, output=True, **KW),
    )
    with torch.no_grad():
        for lin in (m[0], m[2]):
            lin.weight.mul_(2.5).add_(0.15)
            if bias:
                lin.bias.uniform_(-0.1, 0.3, generator=g)
        if not one_to_one_first:
            m[1].recurrent.weight.mul_(2.0)
            if bias:
                m[1].recurrent.bias.uniform_(-0.2, 0.3, generator=g)
            else:
                m[1].recurrent.bias.zero_()
    return m


def spikes_in(seed: int, T: int = 30, B: int = 3, n: int = NIN, p: float = 0.4) -> torch.Tensor:
    return (torch.rand(T, B, n, generator=torch.Generator().manual_seed(seed)) < p).float()


def _pad(x: torch.Tensor, lag: int) -> torch.Tensor:
    return torch.cat([x, torch.zeros(lag, *x.shape[1:])])


def _without(spec: NetworkSpec, change) -> NetworkSpec:
    return replace(spec, layers=tuple(change(layer) for layer in spec.layers))


# -- convert -----------------------------------------------------------------------------------


def test_convert_maps_the_recurrence_to_a_dense_from_the_layer_to_itself():
    m = recurrent_net(0)
    spec = convert(m, (NIN,))
    l0, l1 = spec.layers
    f64 = lambda t: t.detach().double().numpy()  # noqa: E731
    assert np.array_equal(l0.recurrent, f64(m[1].recurrent.weight))  # nn.Linear layout [out, in]
    assert np.array_equal(l1.recurrent, np.diag(f64(m[3].V)))
    assert l0.meta["recurrent"] == "all-to-all" and l1.meta["recurrent"] == "one-to-one"
    # the recurrent Linear's bias is a constant current per step: it joins the layer's bias
    assert np.array_equal(l0.bias, f64(m[0].bias) + f64(m[1].recurrent.bias))
    assert np.array_equal(l1.bias, f64(m[2].bias))
    assert "recurrent all-to-all 8->8" in spec.summary()
    # a bias-free feed-forward Linear still gets the recurrent bias as the layer's bias
    m = recurrent_net(1, bias=False)
    with torch.no_grad():
        m[1].recurrent.bias.fill_(0.25)
    assert np.array_equal(convert(m, (NIN,)).layers[0].bias, np.full(NH, 0.25))
    # a scalar V is one value per neuron
    m[3] = snn.RLeaky(beta=0.7, all_to_all=False, V=0.4, output=True, **KW)
    v = np.float64(np.float32(0.4))  # the module holds V as float32
    assert np.array_equal(convert(m, (NIN,)).layers[1].recurrent, np.diag(np.full(NOUT, v)))


def test_rsynaptic_converts_with_approximate_reset_only():
    torch.manual_seed(2)
    m = nn.Sequential(
        nn.Linear(NIN, NH),
        snn.RSynaptic(
            alpha=0.6, beta=0.8, threshold=0.5, linear_features=NH, init_hidden=True, output=True
        ),
    )
    with pytest.raises(ConversionError, match=r"reset_delay=True.*Fix:.*approximate_reset=True"):
        convert(m, (NIN,))
    spec = convert(m, (NIN,), approximate_reset=True)
    layer = spec.layers[0]
    assert layer.neuron.kind == "synaptic" and layer.neuron.source_reset_delay
    assert np.array_equal(layer.recurrent, m[1].recurrent.weight.detach().double().numpy())


# -- float semantics: Pipelined (the model) against simulate_spec (the spec) ---------------------


@pytest.mark.parametrize("timing", ["synaptic", "lava"])
@pytest.mark.parametrize("one_to_one_first", [False, True], ids=["all-to-all", "one-to-one"])
def test_pipelined_equals_the_spec_semantics_and_fails_on_wrong_recurrence(
    timing, one_to_one_first
):
    """Pipelined (float64) runs the model; simulate_spec runs convert's spec with Lava's
    equations: spike for spike under both bias timings. A spec with the recurrence dropped, or
    (all-to-all) transposed, differs."""
    m = recurrent_net(3, one_to_one_first=one_to_one_first)
    x = _pad(spikes_in(3), 2)
    spec = convert(m, (NIN,), bias_timing=timing)
    with torch.no_grad():
        ours = simulate(m, x, scheduler=Pipelined(float64=True, bias_timing=timing)).spikes
    ours = ours.numpy()
    assert 0.05 < ours.mean() < 0.9
    assert int((simulate_spec(spec, x.numpy()) != ours).sum()) == 0
    dropped = _without(spec, lambda l: replace(l, recurrent=None, meta={}))
    assert int((simulate_spec(dropped, x.numpy()) != ours).sum()) > 0
    if not one_to_one_first:
        transposed = replace(
            spec,
            layers=(replace(spec.layers[0], recurrent=spec.layers[0].recurrent.T), spec.layers[1]),
        )
        assert int((simulate_spec(transposed, x.numpy()) != ours).sum()) > 0


def test_pipelined_lava_timing_moves_the_recurrent_bias_into_v_from_step_0():
    """Under BiasTiming.LAVA the recurrent bias, part of the LIF bias, flows from step 0, before
    any input can arrive; under SYNAPTIC a layer rests until the first input could (step l + 1)."""
    m = recurrent_net(4, bias=False)
    with torch.no_grad():
        m[1].recurrent.bias.fill_(0.7)  # above threshold 0.6 on its own
    x = torch.zeros(4, 1, NIN)
    with torch.no_grad():
        rec = Record(layer_spikes=True)
        lava = simulate(m, x, scheduler=Pipelined(float64=True, bias_timing="lava"), record=rec)
        syn = simulate(m, x, scheduler=Pipelined(float64=True), record=rec)
    assert lava.layer_spikes[0][0, 0].sum() == NH  # v = 0.7 > 0.6 at step 0
    assert syn.layer_spikes[0][0].sum() == 0 and syn.layer_spikes[0][1, 0].sum() == NH


# -- the spec file -----------------------------------------------------------------------------


def test_spec_v3_keeps_the_recurrence_and_reads_older_files(tmp_path):
    spec = convert(recurrent_net(5), (NIN,))
    assert spec.version == FORMAT_VERSION == 3
    back = load(spec.save(tmp_path / "r.npz"))
    assert back.equals(spec) and np.array_equal(back.layers[0].recurrent, spec.layers[0].recurrent)
    fixed = quantize(spec).spec
    assert load(fixed.save(tmp_path / "q.npz")).equals(fixed)
    assert not spec.equals(_without(spec, lambda l: replace(l, recurrent=l.recurrent * 2)))
    # a version-2 file (no recurrent field) is read, without recurrence (what it meant)
    ff = convert(recurrent_net(5), (NIN,))
    ff = _without(ff, lambda l: replace(l, recurrent=None, meta={}))
    path = ff.save(tmp_path / "v3.npz")
    with np.load(path) as npz:
        header = json.loads(str(npz["header"]))
        arrays = {k: npz[k] for k in npz.files if k != "header"}
    header["version"] = 2
    for layer in header["layers"]:
        del layer["has_recurrent"]
    np.savez(tmp_path / "v2.npz", header=np.array(json.dumps(header)), **arrays)
    v2 = load(tmp_path / "v2.npz")
    assert v2.equals(ff) and not v2.has_recurrence
    with zipfile.ZipFile(path) as z:
        assert not any("recurrent" in n for n in z.namelist())


def test_spec_validates_the_recurrent_matrix():
    layer = convert(recurrent_net(6), (NIN,)).layers[0]
    with pytest.raises(SpecFormatError, match=r"recurrent: expected shape \[8, 8\]"):
        NetworkSpec(layers=(replace(layer, recurrent=np.zeros((NH, NH - 1))),), input_shape=(NIN,))
    with pytest.raises(SpecFormatError, match="one-to-one.*diagonal.*Fix"):
        NetworkSpec(layers=(replace(layer, meta={"recurrent": "one-to-one"}),), input_shape=(NIN,))
    with pytest.raises(SpecFormatError, match="meta\\['recurrent'\\].*needs a recurrent matrix"):
        NetworkSpec(
            layers=(replace(layer, recurrent=None, meta={"recurrent": "all-to-all"}),),
            input_shape=(NIN,),
        )


# -- quantize ----------------------------------------------------------------------------------


def test_part_ranges_by_hand():
    mixed = np.array([[1.0, -1.0]])
    exc, inh = np.array([[1.0, 0.0]]), np.array([[-1.0, 0.0]])
    for m in (mixed, exc, inh):  # one matrix: its own range
        assert part_range(m, m, 8) == mantissa_range(m, 8)
    joint = np.concatenate([mixed, exc], 1)
    assert part_range(exc, joint, 8) == (0, 254, 2)  # excitatory beside a mixed matrix
    assert part_range(inh, np.concatenate([mixed, inh], 1), 8) == (-254, 0, 2)
    assert part_range(mixed, joint, 8) == (-256, 254, 2)
    assert part_range(exc, np.concatenate([exc, inh], 1), 6) == (0, 248, 8)  # 6 bits mixed: 8


@pytest.mark.parametrize("big", ["feed-forward", "recurrent"])
def test_quantize_puts_the_recurrent_dense_on_the_layer_grid(big):
    m = recurrent_net(7)
    with torch.no_grad():
        (m[0].weight if big == "feed-forward" else m[1].recurrent.weight).mul_(4.0)
    spec = convert(m, (NIN,))
    q = quantize(spec)
    layer, fl = q.spec.layers[0], spec.layers[0]
    s, e = layer.meta["scale"], layer.weight_exp
    joint = fl.joint_weight()
    wr, rr = part_range(fl.weight, joint, 8), part_range(fl.recurrent, joint, 8)
    for mant, rng, flt in ((layer.weight, wr, fl.weight), (layer.recurrent, rr, fl.recurrent)):
        lo, hi, step = rng
        assert mant.min() >= lo and mant.max() <= hi and np.all(mant % step == 0)
        assert np.array_equal(loihi_weights(mant, 8), mant)  # Lava keeps them as they are
        assert np.abs(mant * 2.0**e / s - flt).max() <= step / 2 * 2.0**e / s + 1e-12
    # the larger matrix (either one) sets the scale: it reaches the end of its range
    bigger = layer.weight if big == "feed-forward" else layer.recurrent
    lo, hi, _ = wr if big == "feed-forward" else rr
    assert bigger.max() == hi or bigger.min() == lo
    r = q.report.layers[0]
    assert 0 < r.recurrent_rel_error < 0.05 and r.current_headroom < 1
    assert q.report.layers[1].recurrent_rel_error > 0  # the diagonal V too
    # the report's headroom counts the recurrent synapses
    from lava_bridge.limits import U_LIMIT, worst_case_current

    du, b = layer.neuron.du, float(np.abs(layer.bias).max()) * 2.0**layer.bias_exp
    with_rec = worst_case_current(layer.joint_weight(), e, du, bias=b) / U_LIMIT
    assert r.current_headroom == pytest.approx(with_rec)
    assert with_rec > worst_case_current(layer.weight, e, du, bias=b) / U_LIMIT


def test_quantize_fixed_scale_refuses_recurrent_weights_out_of_range():
    m = recurrent_net(8)
    with torch.no_grad():
        m[1].recurrent.weight.mul_(50.0)
    with pytest.raises(LoihiLimitError, match="recurrent weights reach"):
        quantize(convert(m, (NIN,)), QuantizeSettings.slayer())


def test_qat_refuses_recurrent_layers():
    from lava_bridge import prepare_qat

    with pytest.raises(BridgeValueError, match=r"layer 0 \('1', RLeaky\) is recurrent.*Fix:"):
        prepare_qat(recurrent_net(9), (NIN,))


# -- emulate -----------------------------------------------------------------------------------


def _rec_layer(w, rec, *, e=0, vth=10, du=4095, dv=0):
    w, rec = np.atleast_2d(w), np.atleast_2d(rec)
    n = w.shape[0]
    return LayerSpec(
        name="r",
        weight=w,
        neuron=NeuronSpec(du=np.full(n, du), dv=np.full(n, dv), vth=np.full(n, vth)),
        shape=(n,),
        recurrent=rec,
        weight_exp=e,
    )


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "wrapping-path"])
def test_emulate_recurrent_hop_by_hand(fast, monkeypatch):
    """Neuron 0 gets the input, neuron 1 only neuron 0's spikes through the recurrent Dense
    (``recurrent[1, 0] = 20``, ``weight_exp = 1``): an input spike at t = 0 makes neuron 0 fire at
    t = 1 (one hop) and neuron 1 at t = 2 (one more hop, the recurrent one), with
    ``u = (20 << 1) << 6 = 2560`` there."""
    import lava_bridge.emulator as em

    monkeypatch.setattr(em, "FAST_PATH", fast)
    layer = _rec_layer([[20], [0]], [[0, 0], [20, 0]], e=1, vth=30)
    spec = NetworkSpec(layers=(layer,), input_shape=(1,), fixed_point=True)
    x = torch.zeros(5, 1, 1)
    x[0] = 1
    r = emulate(spec, x, record_state=True)
    assert r.layer_spikes[0][:, 0].tolist() == [[0, 0], [1, 0], [0, 1], [0, 0], [0, 0]]
    assert r.u[0][:, 0, 1].tolist() == [0, 0, 2560, 0, 0]
    # a self-connection keeps a neuron firing once it started: one spike per step after t = 1
    spec = NetworkSpec(layers=(_rec_layer([[20]], [[20]]),), input_shape=(1,), fixed_point=True)
    assert emulate(spec, x).spikes[:, 0, 0].tolist() == [0, 1, 1, 1, 1]


@pytest.mark.parametrize("seed", range(6))
def test_emulate_recurrent_fast_path_equals_wrapping_path_and_batches(seed, monkeypatch):
    import lava_bridge.emulator as em

    spec = random_fixed_spec(seed, sizes=(7, 6, 5, 4), recurrent=True)
    x = torch.tensor(random_spikes(seed, 20, 3, 7))
    fast = emulate(spec, x, record_state=True)
    one = emulate(spec, x[:, 1:2], record_state=True)
    monkeypatch.setattr(em, "FAST_PATH", False)
    monkeypatch.setattr(em, "FIRST_LAYER_MAX_ELEMENTS", 0)
    full = emulate(spec, x, record_state=True)
    for i in range(spec.num_layers):
        assert torch.equal(fast.layer_spikes[i], full.layer_spikes[i])
        assert torch.equal(fast.u[i], full.u[i]) and torch.equal(fast.v[i], full.v[i])
        assert torch.equal(fast.layer_spikes[i][:, 1:2], one.layer_spikes[i])
    assert float(fast.layer_spikes[-1].mean()) > 0
    # the recurrence matters: dropped, the spikes differ
    plain = _without(spec, lambda l: replace(l, recurrent=None))
    assert not all(
        torch.equal(a, b) for a, b in zip(emulate(plain, x).layer_spikes, fast.layer_spikes)
    )


@pytest.mark.parametrize("device", DEVICES)
def test_emulate_recurrent_devices_agree(device):
    spec = random_fixed_spec(4, recurrent=True, bias=True)
    x = torch.tensor(random_spikes(4, 12, 3, spec.input_size))
    ref = emulate(spec, x, record_state=True)
    got = emulate(spec, x.to(device), record_state=True)
    assert got.spikes.device.type == device
    assert all(torch.equal(a.cpu(), b) for a, b in zip(got.layer_spikes, ref.layer_spikes))
    assert all(torch.equal(a.cpu(), b) for a, b in zip(got.u, ref.u))


def test_fixed_point_follows_the_float_model():
    """quantize + emulate of a converted recurrent model stays close to Pipelined: far closer
    than the same network quantized without its recurrence."""
    m = recurrent_net(10)
    x = _pad(spikes_in(10, T=40, B=4), 2)
    with torch.no_grad():
        ref = simulate(m, x, scheduler=Pipelined(float64=True)).spikes
    spec = convert(m, (NIN,))
    out = emulate(quantize(spec).spec, x).spikes
    plain = emulate(quantize(_without(spec, lambda l: replace(l, recurrent=None, meta={}))).spec, x)
    err, err_plain = (float((o != ref).float().mean()) for o in (out, plain.spikes))
    assert ref.sum() > 20 and err < 0.1 and err < err_plain / 3


# -- NIR ---------------------------------------------------------------------------------------


def test_nir_writes_snntorch_recurrent_subgraph_and_reads_it_back(tmp_path):
    import nir

    m = recurrent_net(11)
    spec = convert(m, (NIN,))
    g = export_nir(spec, tmp_path / "r.nir")
    sub = g.nodes["001.neuron"]
    assert isinstance(sub, nir.NIRGraph) and set(sub.nodes) == {"input", "lif", "w_rec", "output"}
    assert sorted(sub.edges) == sorted(
        [("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")]
    )
    assert isinstance(sub.nodes["w_rec"], nir.Linear)  # its bias is in the layer's Affine
    assert np.array_equal(sub.nodes["w_rec"].weight, spec.layers[0].recurrent)
    assert np.array_equal(g.nodes["001.dense"].bias, spec.layers[0].bias)
    # keys sort in chain order (HDF5 lists them alphabetically; nirtorch converts in that order)
    assert sorted(k for k in g.nodes if k[0].isdigit()) == [
        "001.dense",
        "001.neuron",
        "002.dense",
        "002.neuron",
    ]
    back = import_nir(tmp_path / "r.nir")
    for a, b in zip(back.layers, spec.layers):
        assert (
            np.array_equal(a.recurrent, b.recurrent) and a.meta["recurrent"] == b.meta["recurrent"]
        )
    x = spikes_in(11)
    with torch.no_grad():
        ref = simulate(m, x, scheduler=LayerSync()).spikes
        out = simulate(model_from_spec(back), x, scheduler=LayerSync()).spikes
    assert ref.sum() > 20 and int((out != ref).sum()) == 0
    rebuilt = model_from_spec(back)
    assert isinstance(rebuilt[1], snn.RLeaky) and rebuilt[1].all_to_all
    assert isinstance(rebuilt[3], snn.RLeaky) and not rebuilt[3].all_to_all


def test_nir_reads_a_flat_cycle_and_an_affine_recurrence():
    """import_nir also reads the flat form (neuron → weights → neuron in the outer graph) and a
    recurrent Affine (as snnTorch's exporter writes it), whose bias joins the layer's."""
    import nir

    spec = convert(recurrent_net(12), (NIN,))
    g = export_nir(spec)
    sub = g.nodes["001.neuron"]
    rb = np.linspace(-0.2, 0.2, NH)
    nodes = {k: v for k, v in g.nodes.items() if k != "001.neuron"}
    lif = sub.nodes["lif"]
    nodes["001.neuron"] = nir.LIF(
        tau=lif.tau, r=lif.r, v_leak=lif.v_leak, v_threshold=lif.v_threshold, v_reset=lif.v_reset
    )
    nodes["001.rec"] = nir.Affine(weight=sub.nodes["w_rec"].weight, bias=rb)
    edges = list(g.edges) + [("001.neuron", "001.rec"), ("001.rec", "001.neuron")]
    flat = import_nir(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))  # two inputs
    assert np.array_equal(flat.layers[0].recurrent, spec.layers[0].recurrent)
    assert np.allclose(flat.layers[0].bias, spec.layers[0].bias + rb)
    broken = nir.NIRGraph(nodes=dict(sub.nodes), edges=sub.edges[:3], type_check=False)
    bad = nir.NIRGraph(nodes={**g.nodes, "001.neuron": broken}, edges=g.edges, type_check=False)
    with pytest.raises(SpecFormatError, match="subgraph but not a recurrent layer"):
        import_nir(bad)


# -- netx --------------------------------------------------------------------------------------


def test_netx_writes_dense_rec_and_reads_it_back(tmp_path):
    spec = quantize(
        convert(recurrent_net(13), (NIN,), bias_timing="lava"), QuantizeSettings(weight_exp=0)
    ).spec
    path = export_netx(spec, tmp_path / "r.net")
    with h5py.File(path, "r") as f:
        assert [f[f"layer/{i}/type"][0] for i in range(2)] == [b"dense_rec", b"dense_rec"]
        assert np.array_equal(f["layer/0/weight_rec"][()], spec.layers[0].recurrent)
        assert np.array_equal(f["layer/0/weight"][()], spec.layers[0].weight)
    back = read_netx(path)
    assert all(np.array_equal(a.recurrent, b.recurrent) for a, b in zip(back.layers, spec.layers))
    x = torch.tensor(random_spikes(0, 30, 2, NIN))
    assert torch.equal(emulate(back, x).spikes, emulate(spec, x).spikes)


def test_netx_refuses_what_dense_rec_cannot_hold(tmp_path):
    spec = quantize(
        convert(recurrent_net(14), (NIN,), bias_timing="lava"), QuantizeSettings(weight_exp=0)
    ).spec
    l0 = spec.layers[0]
    delayed = replace(spec, layers=(replace(l0, delay=np.zeros_like(l0.weight)), spec.layers[1]))
    with pytest.raises(LoihiLimitError, match="recurrent layer with synaptic delays.*Fix"):
        export_netx(delayed, tmp_path / "d.net")
    # an all-inhibitory recurrent matrix that lava-dl's reader scales to -256 (Lava clips to -255)
    w = np.array([[100, -50], [20, 60]])
    rec = np.array([[-128, 0], [0, -64]])  # joint min -128: the reader doubles it to -256
    layer = replace(
        l0,
        weight=w,
        recurrent=rec,
        bias=None,
        neuron=NeuronSpec(du=np.full(2, 4095), dv=np.zeros(2, dtype=np.int64), vth=np.full(2, 100)),
        shape=(2,),
        meta={},
    )
    bad = NetworkSpec(layers=(layer,), input_shape=(2,), fixed_point=True)
    with pytest.raises(LoihiLimitError, match=r"scales the layer's weights by 2\^1.*recurrent"):
        export_netx(bad, tmp_path / "i.net")
    ok = replace(bad, layers=(replace(layer, recurrent=np.array([[-126, 0], [0, -64]])),))
    export_netx(ok, tmp_path / "ok.net")  # -126 · 2 = -252: kept by Lava
