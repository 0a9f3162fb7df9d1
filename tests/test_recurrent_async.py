"""snn.RLeaky / snn.RSynaptic under the asynchronous schedulers: the anchor (= LayerSync spike for
spike and membrane for membrane at F >= N), both recurrent timings on a hand-built network, the
recurrent synapses in the synops and the conservation invariant, the torch backend, gradients
(finite differences, LayerSync's at F >= N) and training under every scheduler."""

from __future__ import annotations

import dataclasses
import random

import pytest
import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

import snntorch_async as sa
from snntorch_async.engine import native
from random_models import assert_gradients_match_finite_differences
from snntorch_async.errors import ConfigError
from test_recurrent import CASES, NIN, _model

STRATEGIES = [sa.LayerOrderedAsync, sa.RandomAsync, sa.MomentumAsync]
REC = sa.Record(layer_spikes=True, membranes=True)


def _x(seed, T=12, B=3, n=NIN, scale=1.5):
    return torch.rand(T, B, n, generator=torch.Generator().manual_seed(seed)) * scale


def _assert_same(out, ref, what):
    for i, (a, b) in enumerate(zip(out.layer_spikes, ref.layer_spikes)):
        assert torch.equal(a, b), f"{what}: spikes of layer {i}"
    for i, (a, b) in enumerate(zip(out.membranes, ref.membranes)):
        assert torch.equal(a, b), f"{what}: membranes of layer {i}"
    assert torch.equal(out.synops, ref.synops), f"{what}: synops"


# ---------------------------------------------------------------- anchor
@pytest.mark.parametrize("kind,reset,delay,all_to_all,learn,vpn", CASES)
def test_anchor_every_recurrent_form(kind, reset, delay, all_to_all, learn, vpn):
    """prioritize_input, F >= all neurons: every ordering equals LayerSync spike for spike,
    membrane for membrane and synop for synop (RLeaky / RSynaptic, all-to-all / one-to-one, every
    reset, reset_delay on and off)."""
    model = _model(kind, reset, delay, all_to_all, learn, vpn, 21)
    x = _x(3)
    with torch.no_grad():
        ref = sa.simulate(model, x, record=REC)
        rate = float(ref.layer_spikes[0].mean())
        assert 0.0 < rate < 1.0, rate
        for strategy in STRATEGIES:
            for F in (None, 10**4):
                out = sa.simulate(
                    model, x, scheduler=strategy(forward_group_size=F, seed=1), record=REC
                )
                _assert_same(out, ref, f"{strategy.__name__} F={F}")


def _random_recurrent(seed):
    """A random MLP of 2-3 layers mixing Leaky/Synaptic and RLeaky/RSynaptic layers with random
    settings (recurrent bias, V per neuron or scalar, reset rule, thresholds, output=True)."""
    g = random.Random(seed)
    torch.manual_seed(seed)
    sizes = [g.randint(4, 9)] + [g.randint(5, 12) for _ in range(g.randint(2, 3))]
    mods, desc = [], []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        lin = nn.Linear(a, b, bias=g.random() < 0.6)
        with torch.no_grad():
            lin.weight.mul_(2.5).add_(0.15)
        kw = dict(
            beta=round(g.uniform(0.5, 0.95), 3),
            threshold=round(g.uniform(0.5, 1.2), 3),
            init_hidden=True,
            reset_mechanism=g.choice(["subtract", "zero", "none"]),
            output=last,
        )
        kind = g.choice(["Leaky", "RLeaky", "RLeaky", "RSynaptic"])
        delay = g.random() < 0.5 if kind != "RSynaptic" else True
        if kind == "Leaky":
            neuron = snn.Leaky(reset_delay=delay, **kw)
        else:
            if g.random() < 0.5:
                rec = dict(all_to_all=True, linear_features=b)
            else:
                v = (
                    torch.rand(b) * 0.8 - 0.3
                    if g.random() < 0.5
                    else round(g.uniform(-0.3, 0.5), 2)
                )
                rec = dict(all_to_all=False, V=v)
            if kind == "RLeaky":
                neuron = snn.RLeaky(reset_delay=delay, **rec, **kw)
            else:
                neuron = snn.RSynaptic(alpha=round(g.uniform(0.3, 0.8), 2), **rec, **kw)
            if rec["all_to_all"]:
                with torch.no_grad():
                    neuron.recurrent.weight.mul_(2.0)
                    if g.random() < 0.3:
                        neuron.recurrent.bias.fill_(kw["threshold"] + 0.1)  # fires on its bias
        desc.append(f"{kind}({kw['reset_mechanism']},delay={delay})")
        mods += [lin, neuron]
    return nn.Sequential(*mods), sizes[0], " ".join(desc)


@pytest.mark.parametrize("seed", range(12))
def test_anchor_random_recurrent_models(seed):
    model, n_in, desc = _random_recurrent(seed)
    x = (_x(seed, T=10, n=n_in) > 0.6).float()
    with torch.no_grad():
        ref = sa.simulate(model, x, record=REC)
        for strategy in STRATEGIES:
            for F in (None, sum(ref.neurons)):
                out = sa.simulate(
                    model, x, scheduler=strategy(forward_group_size=F, seed=seed), record=REC
                )
                _assert_same(out, ref, f"{desc}: {strategy.__name__} F={F}")
    assert float(sum(s.sum() for s in ref.layer_spikes)) > 0


def test_anchor_gradients_equal_layersync_with_layer_carriers():
    """At F >= N LayerCarriers gives LayerSync's gradients, the recurrent weights' included
    (the silent neurons' zeros feed the recurrence); EventGradients does not."""
    model = _model("RLeaky", "subtract", True, True, True, False, 2)
    x = _x(2)
    w = torch.arange(1.0, 5.0)

    def grads(s):
        model.zero_grad()
        (sa.simulate(model, x, scheduler=s).spikes * w).sum().backward()
        return [p.grad.clone() for p in model.parameters() if p.requires_grad]

    ref = grads(sa.LayerSync())
    assert float(ref[2].abs().sum()) > 0  # the first layer's recurrent weight
    for s in (
        sa.LayerOrderedAsync(silent_gradients=True),
        sa.RandomAsync(seed=3, silent_gradients=True),
    ):
        for a, b in zip(grads(s), ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    event = grads(sa.LayerOrderedAsync(gradient_rule=sa.EventGradients()))
    assert any(not torch.allclose(a, b, atol=1e-3) for a, b in zip(event, ref))


# ---------------------------------------------------------------- timings, by hand
def _lateral_pair(bias=0.0, weight=1.0):
    """Input 0 drives neuron 0 of an RLeaky pair (β = 0, threshold 0.5); the recurrence sends
    neuron 0's spike to neuron 1 (W[1, 0] = weight) and adds ``bias`` to neuron 1."""
    lin = nn.Linear(1, 2, bias=False)
    rleaky = snn.RLeaky(
        beta=0.0,
        threshold=0.5,
        linear_features=2,
        init_hidden=True,
        reset_mechanism="zero",
        reset_delay=False,
        output=True,
    )
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0], [0.0]]))
        rleaky.recurrent.weight.copy_(torch.tensor([[0.0, 0.0], [weight, 0.0]]))
        rleaky.recurrent.bias.copy_(torch.tensor([0.0, bias]))
    return nn.Sequential(lin, rleaky)


def test_next_step_and_immediate_by_hand():
    model = _lateral_pair()
    x = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(4, 1, 1)
    ref = sa.simulate(model, x)
    want_next = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    assert torch.equal(ref.spikes[:, 0], want_next)  # LayerSync: neuron 1 one step later
    for strategy in STRATEGIES:
        for F in (1, None):
            nxt = sa.simulate(model, x, scheduler=strategy(forward_group_size=F))
            assert torch.equal(nxt.spikes[:, 0], want_next)
            # synops: the input event (fan-out 1) at step 0, neuron 0's spike through the
            # recurrence (one non-zero synapse) at step 1
            assert nxt.synops[:, 0, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
            imm = sa.simulate(
                model, x, scheduler=strategy(forward_group_size=F, recurrent_timing="immediate")
            )
            assert torch.equal(
                imm.spikes[:, 0], torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
            )
            assert imm.synops[:, 0, 0].tolist() == [2.0, 0.0, 0.0, 0.0]
            # step 0: the input frame, neuron 0's lateral spike, neuron 1's (no synapse)
            assert imm.forward_steps[0, 0] == 3 and nxt.forward_steps[0, 0] == 1


@pytest.mark.parametrize("timing", list(sa.RecurrentTiming))
def test_recurrent_bias_flows_every_step(timing):
    """The recurrent nn.Linear's bias is a constant current (snnTorch adds recurrent(spk) every
    step, bias included): with zero recurrent weights both timings equal LayerSync, in which
    neuron 1 fires on its recurrent bias alone, at every step."""
    model = _lateral_pair(bias=0.7, weight=0.0)
    x = torch.zeros(6, 2, 1)
    ref = sa.simulate(model, x)
    assert ref.spikes[:, :, 1].sum() == 12 and ref.spikes[:, :, 0].sum() == 0
    for strategy in STRATEGIES:
        for F in (1, None):
            out = sa.simulate(
                model, x, scheduler=strategy(forward_group_size=F, recurrent_timing=timing)
            )
            assert torch.equal(out.spikes, ref.spikes), (strategy.__name__, F)


@pytest.mark.parametrize("timing", list(sa.RecurrentTiming))
def test_recurrent_events_count_for_partial_synchronisation(timing):
    """Neuron 1 receives no feed-forward event, only neuron 0's recurrent spike: with
    sync_threshold=0.5 (more than 0.5 received events needed) it fires under both timings only
    because the recurrent event counts; a threshold of 1 for neuron 1 (two events) keeps it
    silent."""
    model = _lateral_pair()
    x = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    at = 0 if timing is sa.RecurrentTiming.IMMEDIATE else 1
    for F in (1, None):
        s = sa.LayerOrderedAsync(forward_group_size=F, recurrent_timing=timing, sync_threshold=0.5)
        out = sa.simulate(model, x, scheduler=s).spikes[:, 0]
        assert out[:, 0].tolist() == [1.0, 0.0, 0.0] and out[at, 1] == 1.0 and out[:, 1].sum() == 1
        s = dataclasses.replace(s, sync_threshold=[torch.tensor([0.5, 1.0])])
        out = sa.simulate(model, x, scheduler=s).spikes[:, 0]
        assert out[:, 0].tolist() == [1.0, 0.0, 0.0] and out[:, 1].sum() == 0


def test_immediate_differs_from_next_step_on_a_busy_network():
    model = _model("RLeaky", "subtract", True, True, False, False, 8)
    x = _x(8)
    with torch.no_grad():
        ref = sa.simulate(model, x, record=REC)
        imm = sa.simulate(
            model, x, scheduler=sa.RandomAsync(recurrent_timing="immediate"), record=REC
        )
    assert not all(torch.equal(a, b) for a, b in zip(imm.layer_spikes, ref.layer_spikes))
    assert imm.forward_steps.float().mean() > ref.forward_steps.float().mean()


def test_recurrent_timing_is_checked():
    with pytest.raises(ConfigError, match=r"recurrent_timing.*'later'.*RecurrentTiming.NEXT_STEP"):
        sa.RandomAsync(recurrent_timing="later")
    assert (
        sa.RandomAsync(recurrent_timing="immediate").recurrent_timing
        is sa.RecurrentTiming.IMMEDIATE
    )


# ---------------------------------------------------------------- invariants
def _fanout_model(all_to_all, seed=0):
    """RLeaky layers, no biases anywhere (so the recurrent bias adds no current), zero reset,
    some recurrent synapses zeroed (the fan-out is the count of non-zero ones)."""
    torch.manual_seed(seed)
    kw = dict(beta=0.8, threshold=0.5, init_hidden=True, reset_mechanism="zero", reset_delay=False)
    mods = []
    for i, (a, b) in enumerate([(10, 12), (12, 8), (8, 4)]):
        lin = nn.Linear(a, b, bias=False)
        with torch.no_grad():
            lin.weight.mul_(3.0)
        if all_to_all:
            n = snn.RLeaky(linear_features=b, output=i == 2, **kw)
            with torch.no_grad():
                n.recurrent.bias.zero_()
                n.recurrent.weight.mul_(2.0)
                n.recurrent.weight[:, :3] = 0.0  # three neurons with no recurrent synapse
        else:
            v = torch.rand(b) * 0.6
            v[:2] = 0.0
            n = snn.RLeaky(all_to_all=False, V=v, output=i == 2, **kw)
        mods += [lin, n]
    return nn.Sequential(*mods)


def _recurrent_fan(neuron):
    m = neuron
    if m.all_to_all:
        return (m.recurrent.weight.detach() != 0).float().sum(0)
    return (m.V.detach() != 0).float()


@pytest.mark.parametrize("timing", ["next_step", "immediate"])
@pytest.mark.parametrize("all_to_all", [True, False])
@pytest.mark.parametrize("F", [1, 3, None])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_invariants_with_recurrence(strategy, F, all_to_all, timing):
    """At most one spike per neuron per step; conservation: the synops of each layer equal the
    fan-out of its source's recorded spikes plus the recurrent fan-out of its own spikes (those of
    the previous step under NEXT_STEP, of the same step under IMMEDIATE)."""
    net = _fanout_model(all_to_all)
    x = (_x(5, T=10, B=4, n=10) > 0.9).float()
    with torch.no_grad():
        r = sa.simulate(
            net,
            x,
            scheduler=strategy(forward_group_size=F, seed=1, recurrent_timing=timing),
            record=sa.Record(layer_spikes=True),
        )
    s = [ls.flatten(2) for ls in r.layer_spikes]
    assert all(float(v.max()) <= 1.0 for v in s)
    src = [x.flatten(2)] + s[:-1]
    recurrent_total = 0.0
    for i, layer_src in enumerate(src):
        ff = (layer_src != 0).float() @ (net[2 * i].weight != 0).float().sum(0)
        own = (s[i] != 0).float() @ _recurrent_fan(net[2 * i + 1])
        if timing == "next_step":  # sent at t, delivered at t + 1
            own = torch.cat([torch.zeros_like(own[:1]), own[:-1]])
        recurrent_total += float(own.sum())
        torch.testing.assert_close(r.synops[:, :, i], ff + own)
    assert recurrent_total > 0 and float(r.spike_counts.sum()) > 0


def test_layersync_counts_recurrent_synops_and_dense_synops():
    net = _fanout_model(True)
    x = (_x(5, T=10, B=4, n=10) > 0.8).float()
    r = sa.simulate(net, x, record=sa.Record(layer_spikes=True))
    s = r.layer_spikes[0].flatten(2)
    ff = (x != 0).float() @ (net[0].weight != 0).float().sum(0)
    own = (s != 0).float() @ _recurrent_fan(net[1])
    own = torch.cat([torch.zeros_like(own[:1]), own[:-1]])
    assert float(own.sum()) > 0
    torch.testing.assert_close(r.synops[:, :, 0], ff + own)
    assert r.dense_synops == (10 * 12 + 12 * 12, 12 * 8 + 8 * 8, 8 * 4 + 4 * 4)
    one = sa.simulate(_fanout_model(False), x)
    assert one.dense_synops == (10 * 12 + 12, 12 * 8 + 8, 8 * 4 + 4)


def test_pipelined_counts_recurrent_synops_like_layersync():
    """Pipelined sends the same spikes through the same synapses, each layer l + 1 steps later:
    its per-layer synops, shifted back, equal LayerSync's (the recurrent hop's included)."""
    net = _fanout_model(True)
    x = (_x(6, T=10, B=4, n=10) > 0.8).float()
    ref = sa.simulate(net, x)
    L = 3
    out = sa.simulate(net, torch.cat([x, torch.zeros(L, 4, 10)]), scheduler=sa.Pipelined())
    for i in range(L):
        torch.testing.assert_close(out.synops[i + 1 : i + 1 + 10, :, i], ref.synops[:, :, i])


# ---------------------------------------------------------------- backend
def test_recurrent_models_run_the_native_kernel_with_next_step_timing():
    """NEXT_STEP: the recurrent current is part of the step's base, so CPU float32 inference with
    partial groups runs the kernel, spike for spike and membrane for membrane as the torch code;
    IMMEDIATE's lateral events run the torch code."""
    if native.library() is None:
        pytest.skip("no native kernel on this machine")
    x = (_x(1, T=6, B=2) > 0.6).float()
    rec = _model("RLeaky", "zero", False, True, False, False, 4)
    rec_record = sa.Record(membranes=True)
    with torch.no_grad():
        out = sa.simulate(rec, x, scheduler=sa.RandomAsync(forward_group_size=2), record=rec_record)
        with native.use_native(False):
            ref = sa.simulate(
                rec, x, scheduler=sa.RandomAsync(forward_group_size=2), record=rec_record
            )
        lateral = sa.RandomAsync(
            forward_group_size=2, recurrent_timing=sa.RecurrentTiming.IMMEDIATE
        )
        assert sa.simulate(rec, x, scheduler=lateral).backend == "torch"
    assert out.backend == "native" and ref.backend == "torch"
    assert torch.equal(out.spikes, ref.spikes)
    for a, b in zip(out.membranes, ref.membranes):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("timing", ["next_step", "immediate"])
@pytest.mark.parametrize("all_to_all", [True, False])
@pytest.mark.parametrize("strategy", [sa.LayerOrderedAsync, sa.RandomAsync])
def test_finite_difference_through_the_recurrence(strategy, all_to_all, timing):
    """A smooth spike function, negative below threshold (docs/async.md, "Gradients"): the
    recurrence carries real values, so autograd through the engine (forward steps of F = 2, the
    recurrent weights, bias and V included) must equal finite differences of the forward pass."""
    torch.manual_seed(1)
    smooth = lambda v: torch.tanh(3 * v)  # noqa: E731
    kw = dict(beta=0.8, threshold=0.3, spike_grad=smooth, init_hidden=True, reset_mechanism="none")
    rec = (
        dict(linear_features=4)
        if all_to_all
        else dict(all_to_all=False, V=torch.tensor([0.3, -0.2, 0.4, 0.1]))
    )
    net = nn.Sequential(
        nn.Linear(5, 4),
        snn.RLeaky(learn_recurrent=True, **rec, **kw),
        nn.Linear(4, 3),
        snn.RLeaky(all_to_all=False, V=0.25, output=True, **kw),
    ).double()
    x = (torch.rand(4, 2, 5) < 0.6).double()
    sched = strategy(forward_group_size=2, seed=2, recurrent_timing=timing)
    w = torch.tensor([1.0, -2.0, 0.5]).double()

    def loss():
        return (sa.simulate(net, x, scheduler=sched).spikes * w).sum()

    params = [p for p in net.parameters() if p.requires_grad]
    recurrence = list(net[1].parameters())  # recurrent.weight and .bias, or V
    assert recurrence and all(any(p is q for q in params) for p in recurrence)
    assert_gradients_match_finite_differences(loss, params)
    assert all(float(p.grad.abs().sum()) > 0 for p in recurrence)


# ---------------------------------------------------------------- training
def _task(seed=0, n=48, T=10, n_in=12):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    rate = torch.full((n, n_in), 0.1)
    for c in range(3):
        rate[y == c, 4 * c : 4 * c + 4] = 0.6
    return (torch.rand(n, T, n_in, generator=g) < rate.unsqueeze(1)).to(torch.uint8), y


@pytest.mark.parametrize(
    "scheduler",
    [
        sa.LayerSync(),
        sa.Pipelined(),
        sa.RandomAsync(forward_group_size=4, seed=0),
        sa.MomentumAsync(forward_group_size=4, seed=0),
        sa.LayerOrderedAsync(forward_group_size=4),
        sa.RandomAsync(forward_group_size=4, seed=0, recurrent_timing="immediate"),
    ],
    ids=lambda s: (
        type(s).__name__
        + ("-immediate" if getattr(s, "recurrent_timing", "") == "immediate" else "")
    ),
)
def test_fit_trains_recurrent_models_under_every_scheduler(scheduler):
    """fit() lowers the loss of an RLeaky model and trains its recurrent weights."""
    from snntorch_async.data import SpikeDataset, make_loader
    from snntorch_async.training import TrainConfig, fit

    torch.manual_seed(0)
    kw = dict(beta=0.8, threshold=0.5, init_hidden=True, spike_grad=surrogate.fast_sigmoid())
    model = nn.Sequential(
        nn.Linear(12, 16),
        snn.RLeaky(linear_features=16, **kw),
        nn.Linear(16, 3),
        snn.RLeaky(all_to_all=False, V=0.2, output=True, **kw),
    )
    x, y = _task()
    w0 = model[1].recurrent.weight.detach().clone()
    h = fit(
        model,
        make_loader(SpikeDataset(x, y), batch_size=8),
        scheduler=scheduler,
        config=TrainConfig(epochs=3, lr=2e-2, seed=0),
        progress=False,
    )
    assert h.loss[-1] < h.loss[0], h.loss
    assert not torch.equal(model[1].recurrent.weight.detach(), w0)
