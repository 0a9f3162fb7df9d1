"""Our NIR files read by snnTorch's own importer (``snntorch.import_nir.import_from_nir``, which
needs ``nirtorch``): the imported network spikes exactly like the source model under LayerSync."""

from __future__ import annotations

import nir
import pytest
import snntorch as snn
import torch
from torch import nn

from lava_bridge import convert
from lava_bridge.nir import export_nir
from snntorch_async import LayerSync, simulate

pytest.importorskip("nirtorch", reason="snnTorch's NIR importer needs nirtorch (the [lava] extra)")
from snntorch.import_nir import import_from_nir  # noqa: E402


def _model(seed: int, synaptic: bool) -> nn.Sequential:
    torch.manual_seed(seed)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    beta = torch.rand(12) * 0.4 + 0.5  # per-neuron (snnTorch's importer needs one threshold)
    hidden = (
        snn.Synaptic(alpha=0.6, beta=beta, threshold=0.5, **kw)
        if synaptic
        else snn.Leaky(beta=beta, threshold=0.5, **kw)
    )
    m = nn.Sequential(
        nn.Linear(8, 12),
        hidden,
        nn.Linear(12, 5),
        snn.Leaky(beta=0.8, threshold=0.5, output=True, **kw),
    )
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    return m


def _run_imported(path, x: torch.Tensor) -> torch.Tensor:
    net = import_from_nir(nir.read(str(path)))
    with torch.no_grad():
        return torch.stack([net(x[t])[0] for t in range(x.shape[0])])


@pytest.mark.parametrize("synaptic", [False, True], ids=["leaky", "synaptic"])
def test_snntorch_importer_reads_our_files_spike_for_spike(tmp_path, synaptic):
    m = _model(0, synaptic)
    x = (torch.rand(30, 4, 8, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    with torch.no_grad():
        ref = simulate(m, x, scheduler=LayerSync()).spikes
    path = tmp_path / "net.nir"
    export_nir(convert(m, (8,)), path)  # default dt = 1e-4, snnTorch's importer's convention
    out = _run_imported(path, x)
    assert ref.sum() > 20
    assert int((out != ref).sum()) == 0
    # the check can fail: a file written with another dt (the old default, 1) differs
    export_nir(convert(m, (8,)), tmp_path / "dt1.nir", dt=1.0)
    if synaptic:  # its CubaLIF check (r = tau_mem / 1e-4) refuses the file
        with pytest.raises(AssertionError, match="r not supported"):
            _run_imported(tmp_path / "dt1.nir", x)
    else:  # its LIF reads tau with dt = 1e-4: beta ~ 1, a different network
        assert int((_run_imported(tmp_path / "dt1.nir", x) != ref).sum()) > 0


def _recurrent_model(seed: int) -> nn.Sequential:
    """8-12-5: an all-to-all RLeaky with a recurrent bias, then a one-to-one RLeaky (per-neuron
    V); Lava's reset rule, one threshold per layer (snnTorch's importer needs that)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    m = nn.Sequential(
        nn.Linear(8, 12),
        snn.RLeaky(beta=0.8, threshold=0.5, linear_features=12, **kw),
        nn.Linear(12, 5),
        snn.RLeaky(
            beta=0.75,
            threshold=0.5,
            all_to_all=False,
            V=torch.rand(5, generator=g) - 0.3,
            output=True,
            **kw,
        ),
    )
    with torch.no_grad():
        for lin in (m[0], m[2]):
            lin.weight.mul_(2.0)
            lin.bias.uniform_(-0.1, 0.2, generator=g)
        m[1].recurrent.weight.mul_(2.0)
        m[1].recurrent.bias.uniform_(-0.2, 0.3, generator=g)
    return m


def _run_imported_stateful(graph, x: torch.Tensor) -> torch.Tensor:
    """snnTorch's importer, run step by step passing nirtorch's state back (it carries the
    recurrent edge's previous output)."""
    net = import_from_nir(graph)
    state, out = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            spk, state = net(x[t], state)
            out.append(spk)
    return torch.stack(out)


def test_snntorch_importer_reads_our_recurrent_layers_spike_for_spike(tmp_path):
    """The recurrence as snnTorch's exporter writes it (a subgraph input → lif → w_rec → lif →
    output per layer), read by snnTorch's importer: LayerSync's spikes exactly. The check can
    fail: the recurrent matrix transposed in the file, and the recurrent bias on w_rec (an
    Affine) instead of the layer's Affine, differ (nirtorch starts w_rec's output at zero, so
    the bias is missing at step 0)."""
    m = _recurrent_model(0)
    x = (torch.rand(30, 4, 8, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    with torch.no_grad():
        ref = simulate(m, x, scheduler=LayerSync()).spikes
    spec = convert(m, (8,))
    path = tmp_path / "rec.nir"
    export_nir(spec, path)
    out = _run_imported_stateful(nir.read(str(path)), x)
    assert ref.sum() > 40 and 0 < ref.mean() < 0.8
    assert int((out != ref).sum()) == 0
    # deliberately wrong files
    g = nir.read(str(path))
    sub = g.nodes["001.neuron"]
    sub.nodes["w_rec"] = nir.Linear(weight=sub.nodes["w_rec"].weight.T.copy())
    assert int((_run_imported_stateful(g, x) != ref).sum()) > 0
    g = nir.read(str(path))
    rec_bias = m[1].recurrent.bias.detach().double().numpy()
    dense, sub = g.nodes["001.dense"], g.nodes["001.neuron"]
    g.nodes["001.dense"] = nir.Affine(weight=dense.weight, bias=dense.bias - rec_bias)
    sub.nodes["w_rec"] = nir.Affine(weight=sub.nodes["w_rec"].weight, bias=rec_bias)
    assert int((_run_imported_stateful(g, x) != ref).sum()) > 0


def test_snntorch_importer_reads_our_recurrent_synaptic_layer(tmp_path):
    """An RSynaptic layer (converted with approximate_reset=True; NIR's CubaLIF resets at once)
    read by snnTorch's importer spikes as the spec says (simulate_spec, pipeline lag removed)."""
    from lava_bridge import align_pipeline, simulate_spec

    torch.manual_seed(2)
    m = nn.Sequential(
        nn.Linear(8, 12),
        snn.RSynaptic(alpha=0.6, beta=0.8, threshold=0.5, linear_features=12, init_hidden=True),
        nn.Linear(12, 5),
        snn.Leaky(
            beta=0.8,
            threshold=0.5,
            output=True,
            init_hidden=True,
            reset_mechanism="zero",
            reset_delay=False,
        ),
    )
    with torch.no_grad():
        m[0].weight.mul_(2.0)
        m[2].weight.mul_(2.0)
    x = (torch.rand(30, 4, 8, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    spec = convert(m, (8,), approximate_reset=True)
    xp = torch.cat([x, torch.zeros(spec.output_lag(), 4, 8)])
    ref = align_pipeline(simulate_spec(spec, xp.numpy()), spec.output_lag())
    export_nir(spec, tmp_path / "rsyn.nir")
    out = _run_imported_stateful(nir.read(str(tmp_path / "rsyn.nir")), x).numpy()
    assert ref.sum() > 20
    assert int((out != ref).sum()) == 0
