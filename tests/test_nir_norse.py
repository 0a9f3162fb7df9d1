"""Our NIR files read by norse's own importer (``norse.torch.from_nir``, norse 1.1.0): written with
``convention=NORSE`` (dt = 1e-3, LIF ``r = 1`` with its gain folded into the weights), the imported
network spikes exactly like the source model under LayerSync; files in another convention or dt
do not."""

from __future__ import annotations

import logging

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from lava_bridge import SpecFormatError, convert
from lava_bridge.nir import NORSE, SNNTORCH, export_nir, import_nir, model_from_spec
from snntorch_async import LayerSync, simulate

norse_torch = pytest.importorskip("norse.torch", reason="norse 1.1.0 (installed by the Makefile)")


def _model(seed: int, *, synaptic: bool) -> nn.Sequential:
    torch.manual_seed(seed)
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True)
    beta = torch.rand(12) * 0.5 + 0.45  # per-neuron β and thresholds
    thr = torch.rand(12) * 0.4 + 0.4
    hidden = (
        snn.Synaptic(alpha=torch.rand(12) * 0.5 + 0.3, beta=beta, threshold=thr, **kw)
        if synaptic
        else snn.Leaky(beta=beta, threshold=thr, **kw)
    )
    m = nn.Sequential(
        nn.Linear(8, 12),  # Affine
        hidden,
        nn.Linear(12, 10, bias=False),  # Linear (norse maps it separately)
        snn.Leaky(beta=torch.rand(10) * 0.5 + 0.4, threshold=0.5, **kw),
        nn.Linear(10, 5),
        snn.Leaky(beta=0.8, threshold=0.5, output=True, **kw),
    )
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    return m


def _x(seed: int) -> torch.Tensor:
    return (torch.rand(40, 4, 8, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def _run_norse(path, x: torch.Tensor, **from_nir_kw) -> torch.Tensor:
    net = norse_torch.from_nir(nir.read(str(path)), **from_nir_kw)
    state, out = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            z, state = net(x[t], state)
            out.append(z)
    return torch.stack(out)


@pytest.mark.parametrize("synaptic", [False, True], ids=["leaky", "synaptic"])
@pytest.mark.parametrize("seed", [0, 1])
def test_norse_reads_our_files_spike_for_spike(tmp_path, caplog, synaptic, seed):
    m = _model(seed, synaptic=synaptic)
    x = _x(seed + 100)
    with torch.no_grad():
        ref = simulate(m, x, scheduler=LayerSync()).spikes
    spec = convert(m, (8,))
    path = tmp_path / "net.nir"
    g = export_nir(spec, path, convention=NORSE)  # dt = 1e-3: from_nir's default
    assert g.metadata["dt"] == 1e-3 and g.metadata["convention"] == "norse"
    with caplog.at_level(logging.WARNING):
        out = _run_norse(path, x)
    assert "parameter r is expected" not in caplog.text  # norse finds r = 1 in every LIF
    assert ref.sum() > 50
    assert int((out != ref).sum()) == 0
    # the file is plain NIR for the same network: our reader (which honours r) gets it back
    back = model_from_spec(import_nir(path))
    assert torch.equal(simulate(back, x, scheduler=LayerSync()).spikes, ref)

    # the check can fail: snnTorch's convention (r = τ/dt) at norse's dt -> norse warns, and
    # ignores r, so its LIF layers integrate the input with gain 1 - β
    caplog.clear()
    export_nir(spec, tmp_path / "snntorch.nir", dt=1e-3, convention=SNNTORCH)
    with caplog.at_level(logging.WARNING):
        wrong = _run_norse(tmp_path / "snntorch.nir", x)
    assert "parameter r is expected" in caplog.text
    assert int((wrong != ref).sum()) > 10
    # ... and norse's convention written with another dt than the reader integrates with
    export_nir(spec, tmp_path / "dt.nir", dt=2e-3, convention=NORSE)
    assert int((_run_norse(tmp_path / "dt.nir", x) != ref).sum()) > 10


def test_norse_convention_refusals():
    kw = dict(reset_mechanism="zero", reset_delay=False, init_hidden=True, output=True)
    m = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=1.0, **kw))
    spec = convert(m, (4,))
    with pytest.raises(SpecFormatError, match="β = 1 or α = 1"):
        export_nir(spec, convention=NORSE)
    g = export_nir(spec)  # snnTorch's convention writes tau = inf
    assert np.isinf(g.nodes["001.neuron"].tau).all()
    with pytest.raises(SpecFormatError, match="unknown NIR convention"):
        export_nir(spec, convention="nengo")
