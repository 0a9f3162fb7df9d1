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
