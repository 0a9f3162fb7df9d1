"""snn.RLeaky / snn.RSynaptic: the reader, LayerSync against snnTorch's own loop (spikes exactly,
gradients to 1e-5 through the recurrence) and the clear refusals of the modes not built yet."""

from __future__ import annotations

import itertools

import pytest
import snntorch as snn
import torch
from torch import nn

import snntorch_async as sa
from snntorch_async.errors import ModelStructureError, UnsupportedModuleError
from snntorch_async.graph import read_model
from snntorch_async.reference import run_snntorch

T, B, NIN, NH, NOUT = 14, 3, 6, 10, 4
RESETS = ["subtract", "zero", "none"]


def _rec(kind, n, *, reset, delay, all_to_all, learn, v_per_neuron, output=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = (torch.rand(n, generator=g) * 0.6 - 0.1) if v_per_neuron else 0.35
    kw = dict(
        beta=0.8,
        threshold=0.7,
        init_hidden=True,
        reset_mechanism=reset,
        output=output,
        learn_beta=learn,
        learn_threshold=learn,
        learn_recurrent=learn,
    )
    if all_to_all:
        kw.update(all_to_all=True, linear_features=n)
    else:
        kw.update(all_to_all=False, V=v)
    if kind == "RLeaky":
        return snn.RLeaky(reset_delay=delay, **kw)
    return snn.RSynaptic(alpha=0.6, **kw)


def _model(kind, reset, delay, all_to_all, learn, v_per_neuron, seed):
    torch.manual_seed(seed)
    args = dict(
        reset=reset, delay=delay, all_to_all=all_to_all, learn=learn, v_per_neuron=v_per_neuron
    )
    m = nn.Sequential(
        nn.Linear(NIN, NH),
        _rec(kind, NH, seed=seed, **args),
        nn.Linear(NH, NOUT),
        _rec(kind, NOUT, seed=seed + 1, output=True, **args),
    )
    with torch.no_grad():
        for mod in m:
            if isinstance(mod, nn.Linear):
                mod.weight.mul_(2.5).add_(0.1)  # excitatory on average: every layer spikes
            if getattr(mod, "all_to_all", False):
                mod.recurrent.weight.mul_(1.5)
    return m


CASES = [
    (k, r, d, a, learn, vpn)
    for k, r, d, a, learn, vpn in itertools.product(
        ["RLeaky", "RSynaptic"], RESETS, [True, False], [True, False], [True, False], [True, False]
    )
    if not (k == "RSynaptic" and not d) and not (a and vpn)  # vpn only means something for V
]


@pytest.mark.parametrize("kind,reset,delay,all_to_all,learn,vpn", CASES)
def test_layersync_equals_snntorch(kind, reset, delay, all_to_all, learn, vpn):
    # the first of a few seeded models whose snnTorch output neither stays silent nor saturates
    # (so that equality means something); the comparison below can fail on any of them
    for seed in range(100 * CASES.index((kind, reset, delay, all_to_all, learn, vpn)), 10**6)[:5]:
        model = _model(kind, reset, delay, all_to_all, learn, vpn, seed)
        x = torch.rand(T, B, NIN, generator=torch.Generator().manual_seed(seed)) * 1.5
        ref = run_snntorch(model, x)
        rate = float(ref.detach().mean())
        if 0.0 < rate < 1.0:
            break
    assert 0.0 < rate < 1.0, f"reference output spike rate {rate}: the test would mean nothing"
    res = sa.simulate(model, x, scheduler=sa.LayerSync())
    assert torch.equal(res.spikes, ref)

    params = [p for p in model.parameters() if p.requires_grad]
    loss_ref = (run_snntorch(model, x) * torch.linspace(1, 2, NOUT, dtype=x.dtype)).sum()
    g_ref = torch.autograd.grad(loss_ref, params, allow_unused=True)
    loss = (
        sa.simulate(model, x, scheduler=sa.LayerSync()).spikes
        * torch.linspace(1, 2, NOUT, dtype=x.dtype)
    ).sum()
    g = torch.autograd.grad(loss, params, allow_unused=True)
    assert any(a is not None and float(a.abs().sum()) > 0 for a in g_ref)
    for (name, _), a, b in zip(
        [(n, p) for n, p in model.named_parameters() if p.requires_grad], g_ref, g
    ):
        assert (a is None) == (b is None), name
        if a is not None:
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5, msg=name)


def test_recurrent_gradient_reaches_recurrent_weights():
    """BPTT really goes through the recurrence: the recurrent weights get a gradient."""
    model = _model("RLeaky", "subtract", True, True, True, False, 3)
    x = torch.rand(T, B, NIN, generator=torch.Generator().manual_seed(3)) * 1.5
    sa.simulate(model, x, scheduler=sa.LayerSync()).spikes.sum().backward()
    assert float(model[1].recurrent.weight.grad.abs().sum()) > 0


def test_parameters_read_from_module_not_hidden_state():
    model = _model("RLeaky", "subtract", True, False, False, True, 4)
    x = torch.rand(T, B, NIN, generator=torch.Generator().manual_seed(4)) * 1.5
    before = sa.simulate(model, x, scheduler=sa.LayerSync()).spikes
    model[1].V.mul_(0).add_(-5.0)  # a changed V changes the run
    after = sa.simulate(model, x, scheduler=sa.LayerSync()).spikes
    assert torch.equal(after, run_snntorch(model, x))
    assert not torch.equal(before, after)


def test_refuses_conv_form():
    m = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        snn.RLeaky(beta=0.9, conv2d_channels=2, kernel_size=3, init_hidden=True),
    )
    with pytest.raises(UnsupportedModuleError, match=r"'1'.*convolutional.*Fix:"):
        read_model(m, (1, 5, 5))


def test_refuses_wrong_linear_features():
    m = nn.Sequential(nn.Linear(3, 5), snn.RLeaky(beta=0.9, linear_features=4, init_hidden=True))
    with pytest.raises(ModelStructureError, match=r"'1'.*linear_features=4.*linear_features=5"):
        read_model(m, (3,))


def test_refuses_wrong_V_shape():
    m = nn.Sequential(
        nn.Linear(3, 5), snn.RLeaky(beta=0.9, all_to_all=False, V=torch.ones(4), init_hidden=True)
    )
    with pytest.raises(ModelStructureError, match=r"'1'.*V of shape \[4\].*\[5\]"):
        read_model(m, (3,))


def test_refuses_rsynaptic_without_reset_delay():
    m = nn.Sequential(
        nn.Linear(3, 5),
        snn.RSynaptic(alpha=0.5, beta=0.9, linear_features=5, init_hidden=True, reset_delay=False),
    )
    with pytest.raises(UnsupportedModuleError, match="reset_delay=False"):
        read_model(m, (3,))


@pytest.mark.parametrize(
    "kind,reset,delay,all_to_all,vpn",
    [
        ("RLeaky", "zero", False, True, False),  # Lava's LIF rule: the recurrence enters u
        ("RLeaky", "zero", False, False, True),
        ("RLeaky", "subtract", True, True, False),  # the neuron's own rule
        ("RSynaptic", "zero", True, False, False),
    ],
)
@pytest.mark.parametrize("float64", [False, True])
def test_pipelined_recurrent_hop_takes_one_step(kind, reset, delay, all_to_all, vpn, float64):
    """Each feed-forward hop and the recurrent hop take one step, so Pipelined's output is
    LayerSync's shifted by the number of layers, spike for spike (zero-padded tail input)."""
    model = _model(kind, reset, delay, all_to_all, False, vpn, 11)
    x = (torch.rand(T, B, NIN, generator=torch.Generator().manual_seed(11)) < 0.5).float()
    ref = sa.simulate(model, x, scheduler=sa.LayerSync()).spikes
    assert 0.0 < float(ref.detach().mean()) < 1.0
    L = 2
    xp = torch.cat([x, torch.zeros(L, B, NIN)])
    out = sa.simulate(model, xp, scheduler=sa.Pipelined(float64=float64)).spikes
    assert torch.equal(out[L:].to(ref.dtype), ref)
