"""Pipelined: one step per hop, delays, the bias wavefront, and agreement with LayerSync shifted.

Agreement with real Lava is in test_lava_float.py; here the timing is pinned by hand-computed
golden cases and by the layer-synchronous reference (snnTorch's own loop) shifted by the lag.
"""

import pytest
import snntorch as snn
import torch
from torch import nn

import snntorch_async as sa
from lava_bridge import align_pipeline, convert, simulate_spec
from snntorch_async import DelayedLinear, LayerSync, Pipelined, Record, simulate
from snntorch_async.schedulers import Pipelined as Pipelined2


def _kw(reset="zero"):
    return dict(init_hidden=True, reset_mechanism=reset, reset_delay=False)


def _lin(n_in, n_out, w, b=None):
    m = nn.Linear(n_in, n_out, bias=b is not None)
    with torch.no_grad():
        m.weight.fill_(w)
        if b is not None:
            m.bias.fill_(b)
    return m


def test_exports():
    assert Pipelined is Pipelined2 is sa.Pipelined


def test_golden_one_step_per_hop():
    # beta = 0: the membrane is this step's current; threshold 0.5, weight 1
    m = nn.Sequential(
        _lin(1, 1, 1.0),
        snn.Leaky(beta=0.0, threshold=0.5, **_kw()),
        _lin(1, 1, 1.0),
        snn.Leaky(beta=0.0, threshold=0.5, **_kw()),
        _lin(1, 1, 1.0),
        snn.Leaky(beta=0.0, threshold=0.5, output=True, **_kw()),
    )
    x = torch.zeros(6, 1, 1)
    x[0] = 1.0
    res = simulate(m, x, scheduler=Pipelined(), record=Record(layer_spikes=True))
    firsts = [int(s[:, 0].flatten().nonzero()[0]) for s in res.layer_spikes]
    assert firsts == [1, 2, 3]  # input step 0 reaches layer l at step l + 1
    assert res.output_lag == Pipelined().output_lag(sa.read_model(m, (1,))) == 3
    assert res.spikes[:, 0, 0].tolist() == [0, 0, 0, 1, 0, 0]


@pytest.mark.parametrize("d", [0, 1, 4])
def test_golden_delay_adds_d_steps(d):
    m = nn.Sequential(
        DelayedLinear(1, 1, bias=False, delays=d),
        snn.Leaky(beta=0.0, threshold=0.5, output=True, **_kw()),
    )
    with torch.no_grad():
        m[0].weight.fill_(1.0)
    x = torch.zeros(8, 1, 1)
    x[0] = 1.0
    out = simulate(m, x, scheduler=Pipelined()).spikes[:, 0, 0]
    assert out.nonzero().flatten().tolist() == [1 + d]


def test_bias_arrives_with_the_wavefront():
    # strong positive bias, no input: layer l starts integrating at step l + 1, not before
    m = nn.Sequential(
        _lin(1, 1, 0.0, b=1.0),
        snn.Leaky(beta=0.0, threshold=0.5, **_kw()),
        _lin(1, 1, 0.0, b=1.0),
        snn.Leaky(beta=0.0, threshold=0.5, output=True, **_kw()),
    )
    res = simulate(m, torch.zeros(5, 1, 1), scheduler=Pipelined(), record=Record(layer_spikes=True))
    assert res.layer_spikes[0][:, 0, 0].tolist() == [0, 1, 1, 1, 1]
    assert res.layer_spikes[1][:, 0, 0].tolist() == [0, 0, 1, 1, 1]


def random_model(seed, *, synaptic=False, delays=False, reset="zero", conv=False, layers=3):
    torch.manual_seed(seed)
    mods = []
    n_in = 10
    if conv:
        mods += [
            nn.Conv2d(1, 2, 3, padding=1),
            nn.AvgPool2d(2),
            nn.Flatten(),
            snn.Leaky(beta=0.7, threshold=0.3, **_kw(reset)),
        ]
        n_in = 2 * 2 * 2
        layers -= 1
    widths = [12, 9, 5][-layers:]
    for i, w in enumerate(widths):
        lin = DelayedLinear(n_in, w, max_delay=4, seed=seed + i) if delays else nn.Linear(n_in, w)
        last = i == len(widths) - 1
        beta = torch.rand(w) * 0.5 + 0.45  # per-neuron
        neuron = (
            snn.Synaptic(alpha=0.6, beta=beta, threshold=0.35, output=last, **_kw(reset))
            if synaptic and i % 2 == 1
            else snn.Leaky(beta=beta, threshold=0.3, output=last, **_kw(reset))
        )
        mods += [lin, neuron]
        n_in = w
    m = nn.Sequential(*mods)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.0)
    return m


def _inputs(seed, T, shape):
    return (torch.rand(T, 3, *shape, generator=torch.Generator().manual_seed(seed)) < 0.35).float()


CASES = [
    dict(seed=0),
    dict(seed=1, synaptic=True),
    dict(seed=2, delays=True),
    dict(seed=3, synaptic=True, delays=True),
    dict(seed=4, conv=True),
    dict(seed=5, layers=2),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_pipelined_is_layersync_shifted_by_the_lag(case):
    m = random_model(**case)
    shape = (1, 4, 4) if case.get("conv") else (10,)
    T = 20
    x = _inputs(case["seed"], T, shape)
    sync = simulate(m, x, scheduler=LayerSync())
    lag = Pipelined().output_lag(sa.read_model(m, shape))
    padded = torch.cat([x, torch.zeros(lag, *x.shape[1:])])
    pipe = simulate(m, padded, scheduler=Pipelined(float64=True))
    assert pipe.spikes.dtype == torch.float32
    assert sync.spikes.sum() > 0
    assert torch.equal(align_pipeline(pipe.spikes, lag), sync.spikes)


def test_subtract_reset_models_run_their_own_rule_with_pipelined_timing():
    m = random_model(7, synaptic=True, reset="subtract")
    x = _inputs(7, 15, (10,))
    sync = simulate(m, x)
    padded = torch.cat([x, torch.zeros(3, *x.shape[1:])])
    pipe = simulate(m, padded, scheduler=Pipelined())
    assert torch.equal(align_pipeline(pipe.spikes, 3), sync.spikes)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_pipelined_equals_the_spec_semantics(case):
    """Pipelined on the model = the converted spec run with Lava's float expressions (numpy)."""
    m = random_model(**case)
    shape = (1, 4, 4) if case.get("conv") else (10,)
    x = _inputs(case["seed"] + 100, 22, shape)
    pipe = simulate(m, x, scheduler=Pipelined(float64=True)).spikes.detach().numpy()
    ref = simulate_spec(convert(m, shape), x.numpy())
    assert ref.sum() > 0
    assert (pipe == ref).all()


def test_gradients_and_recordings():
    m = random_model(8, synaptic=True, delays=True)
    x = _inputs(8, 10, (10,))
    res = simulate(m, x, scheduler=Pipelined(), record=Record(membranes=True, layer_spikes=True))
    res.spikes.sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    assert [t.shape for t in res.membranes] == [(10, 3, 12), (10, 3, 9), (10, 3, 5)]
    assert res.spike_counts.shape == (10, 3, 3)
    assert torch.equal(res.spike_counts[:, :, 2], res.spikes.sum(-1))


def test_state_continues_across_calls():
    m = random_model(9)
    x = _inputs(9, 12, (10,))
    whole = simulate(m, x, scheduler=Pipelined())
    a = simulate(m, x[:5], scheduler=Pipelined())
    b = simulate(m, x[5:], scheduler=Pipelined(), initial_state=a.final_state)
    assert torch.equal(torch.cat([a.spikes, b.spikes]), whole.spikes)


@pytest.mark.cuda
def test_cuda_matches_cpu():
    m = random_model(3, synaptic=True, delays=True)
    x = _inputs(3, 12, (10,))
    cpu = simulate(m, x, scheduler=Pipelined(float64=True)).spikes.detach()
    gpu = simulate(m.cuda(), x.cuda(), scheduler=Pipelined(float64=True)).spikes.detach().cpu()
    assert torch.equal(cpu, gpu)
