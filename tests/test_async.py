"""The asynchronous schedulers: anchor (= LayerSync at F >= N), invariants, gradients, errors."""

from __future__ import annotations

import dataclasses

import pytest
import snntorch as snn
import torch
from torch import nn

import snntorch_async as sa
from snntorch_async.errors import ConfigError, UnsupportedModuleError
from random_models import (
    assert_gradients_match_finite_differences,
    mlp,
    random_inputs,
    random_model,
)

STRATEGIES = [sa.LayerOrderedAsync, sa.RandomAsync, sa.MomentumAsync]


def _mlp(
    reset="zero",
    reset_delay=False,
    neuron=snn.Leaky,
    sizes=(12, 16, 10, 4),
    thr=0.5,
    seed=0,
    bias=True,
):
    return mlp(
        sizes, reset=reset, reset_delay=reset_delay, neuron=neuron, thr=thr, seed=seed, bias=bias
    )


def _spikes_in(seed, T=10, B=4, n=12, p=0.4):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, B, n), generator=g) < p).float()


# ---------------------------------------------------------------- anchor
@pytest.mark.parametrize("seed", range(24))
def test_anchor_random_models_equal_layersync(seed):
    """prioritize_input, F >= all neurons: every strategy reproduces LayerSync spike for spike."""
    case = random_model(seed)
    x = random_inputs(seed, 8, 3, case.input_shape)
    ref = sa.simulate(case.model, x, record=sa.Record(layer_spikes=True))
    n_total = sum(ref.neurons)
    for strategy in STRATEGIES:
        for F in (None, n_total):
            sched = strategy(forward_group_size=F, seed=seed)
            try:
                out = sa.simulate(
                    case.model, x, scheduler=sched, record=sa.Record(layer_spikes=True)
                )
            except UnsupportedModuleError as e:  # MaxPool over currents: refused, by design
                assert "MaxPool2d" in str(e) and "current" in str(e)
                pytest.skip(f"{case.description}: max pooling of currents (refused under async)")
            for a, b in zip(out.layer_spikes, ref.layer_spikes):
                assert torch.equal(a, b), f"{strategy.__name__} F={F} {case.description}"
    assert float(sum(s.detach().sum() for s in ref.layer_spikes)) > 0


@pytest.mark.parametrize("neuron", [snn.Leaky, snn.Synaptic])
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("reset_delay", [True, False])
def test_anchor_every_reset_rule(neuron, reset, reset_delay):
    net = _mlp(reset, reset_delay, neuron, thr=0.4)
    x = _spikes_in(1) * 1.5
    ref = sa.simulate(net, x, record=sa.Record(membranes=True))
    assert ref.spike_counts.sum() > 20
    for strategy in STRATEGIES:
        out = sa.simulate(net, x, scheduler=strategy(seed=3), record=sa.Record(membranes=True))
        assert torch.equal(out.spikes, ref.spikes)
        for a, b in zip(out.membranes, ref.membranes):
            assert torch.equal(a, b)


def test_bias_above_threshold_fires_without_input_like_layersync():
    """A layer that no spike reaches still fires from its bias alone (the settle rule)."""
    net = _mlp(bias=True)
    with torch.no_grad():
        net[2].bias.fill_(0.7)  # above threshold 0.5 with no input at all
    x = torch.zeros(5, 2, 12)
    ref = sa.simulate(net, x)
    assert ref.spike_counts[:, :, 1].sum() > 0
    assert torch.equal(
        sa.simulate(net, x, scheduler=sa.RandomAsync()).spike_counts, ref.spike_counts
    )
    # one spike at a time: the first layer (bias only, settled) is unchanged; downstream layers
    # receive its spikes one by one, so their timing may differ
    out = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=1))
    assert torch.equal(out.spike_counts[:, :, 0], ref.spike_counts[:, :, 0])
    assert out.spike_counts[:, :, 1].sum() > 0


def test_anchor_graded_real_valued_inputs():
    net = _mlp()
    x = torch.rand(6, 3, 12) * 2 * (torch.rand(6, 3, 12) < 0.5)
    ref = sa.simulate(net, x)
    for strategy in STRATEGIES:
        assert torch.equal(sa.simulate(net, x, scheduler=strategy()).spikes, ref.spikes)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_silent_gradients_at_full_group_equal_layersync_gradients(reset):
    net = _mlp(reset, reset_delay=False, thr=0.4)
    x = _spikes_in(2) * 1.5
    w = torch.arange(1.0, 5.0)

    def grads(s):
        net.zero_grad()
        (sa.simulate(net, x, scheduler=s).spikes * w).sum().backward()
        return [p.grad.clone() for p in net.parameters()]

    ref = grads(sa.LayerSync())
    for s in (
        sa.LayerOrderedAsync(silent_gradients=True),
        sa.RandomAsync(seed=4, silent_gradients=True),
    ):
        for a, b in zip(grads(s), ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    # the event-driven gradient differs (silent neurons pass no surrogate gradient)
    event = grads(sa.RandomAsync(seed=4, gradient_rule=sa.EventGradients()))
    assert any(not torch.allclose(a, b, atol=1e-3) for a, b in zip(event, ref))


def test_finite_difference_gradient_through_forward_steps():
    """Smooth 'spikes' (sigmoid forward) make the dynamics differentiable: autograd = FD."""
    torch.manual_seed(0)
    smooth = lambda v: torch.sigmoid(4 * v)  # noqa: E731
    net = nn.Sequential(
        nn.Linear(5, 4),
        snn.Leaky(
            beta=0.8, threshold=0.3, spike_grad=smooth, init_hidden=True, reset_mechanism="none"
        ),
        nn.Linear(4, 3),
        snn.Leaky(
            beta=0.7,
            threshold=0.3,
            spike_grad=smooth,
            init_hidden=True,
            reset_mechanism="none",
            output=True,
        ),
    ).double()
    x = (torch.rand(4, 2, 5) < 0.6).double()
    sched = sa.LayerOrderedAsync(forward_group_size=2)

    def loss():
        return (
            sa.simulate(net, x, scheduler=sched).spikes * torch.tensor([1.0, -2.0, 0.5]).double()
        ).sum()

    assert_gradients_match_finite_differences(loss, net.parameters())


# ---------------------------------------------------------------- invariants
@pytest.mark.parametrize("F", [1, 3, None])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_invariants_small_groups(F, strategy):
    net = _mlp(bias=False)  # zero reset, no bias: no neuron can fire without receiving current
    x = _spikes_in(5, T=8, B=5)
    r = sa.simulate(
        net,
        x,
        scheduler=strategy(forward_group_size=F, seed=1),
        record=sa.Record(layer_spikes=True),
    )
    s = [ls.flatten(2) for ls in r.layer_spikes]
    # at most one spike per neuron per time step
    assert all(float(v.max()) <= 1.0 for v in s)
    # causality: a layer fires only in time steps in which its source delivered something
    src = [x.flatten(2)] + s[:-1]
    for a, b in zip(src, s):
        fired = b.sum(2) > 0
        assert bool(((a.sum(2) > 0) | ~fired).all())
    # conservation: every spike (and input event) is delivered exactly once -> synops equal the
    # fan-out of the recorded spikes, layer by layer
    for i, layer_src in enumerate(src):
        w = net[2 * i].weight
        expected = (layer_src != 0).float() @ (w != 0).float().sum(0)
        torch.testing.assert_close(r.synops[:, :, i], expected)
    assert float(r.spike_counts.sum()) > 0


def test_determinism_and_seed_dependence():
    net = _mlp(thr=0.4)
    x = _spikes_in(7, T=12, B=6) * 1.5
    a = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=1, seed=11)).spikes
    b = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=1, seed=11)).spikes
    assert torch.equal(a, b)
    others = [
        sa.simulate(
            net,
            x,
            scheduler=sa.RandomAsync(forward_group_size=1, seed=s),
            record=sa.Record(layer_spikes=True),
        ).layer_spikes
        for s in range(5)
    ]
    assert any(not torch.equal(o[1], others[0][1]) for o in others[1:])


def test_small_groups_change_the_dynamics():
    """F = 1 is a real asynchronous regime: spikes differ from LayerSync on a busy network."""
    net = _mlp(thr=0.3)
    x = _spikes_in(8, T=12, B=6) * 2
    ref = sa.simulate(net, x, record=sa.Record(layer_spikes=True))
    out = sa.simulate(
        net,
        x,
        scheduler=sa.RandomAsync(forward_group_size=1, seed=0),
        record=sa.Record(layer_spikes=True),
    )
    assert not all(torch.equal(a, b) for a, b in zip(out.layer_spikes, ref.layer_spikes))
    assert out.forward_steps.float().mean() > ref.forward_steps.float().mean()


def test_max_forward_steps_carries_spikes_over():
    net = _mlp(bias=False)  # 3 layers
    x = _spikes_in(3, T=10, B=4) * 1.5
    r = sa.simulate(
        net, x, scheduler=sa.RandomAsync(max_forward_steps=2), record=sa.Record(layer_spikes=True)
    )
    assert int(r.forward_steps.max()) <= 2
    # input + one delivery per step: the output layer can only be fed by carried-over spikes
    assert float(r.layer_spikes[2][0].sum()) == 0.0
    assert float(r.layer_spikes[2].sum()) > 0.0


def test_stop_on_output_ends_steps_early():
    net = _mlp(thr=0.3)
    x = _spikes_in(4, T=10, B=6) * 2
    free = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=2))
    early = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=2, stop_on_output=0))
    assert free.spike_counts[:, :, -1].sum() > 0
    assert int(early.forward_steps.sum()) < int(free.forward_steps.sum())
    assert float(early.spike_counts[:, :, -1].max()) <= float(free.spike_counts[:, :, -1].max())


def test_sync_threshold_gates_firing():
    net = _mlp(thr=0.3)
    x = _spikes_in(4) * 2
    base = sa.simulate(net, x, scheduler=sa.RandomAsync())
    gated = sa.simulate(net, x, scheduler=sa.RandomAsync(sync_threshold=1e9))
    assert base.spike_counts.sum() > 0 and gated.spike_counts.sum() == 0
    per_layer = [torch.zeros(16), torch.zeros(10), torch.zeros(4)]
    same = sa.simulate(net, x, scheduler=sa.RandomAsync(sync_threshold=per_layer))
    assert torch.equal(same.spikes, base.spikes)


def test_momentum_prefers_strongly_driven_neurons():
    """At F = 1 momentum delivers the highest pre-spike membrane first: the order differs from
    random's and is reproducible."""
    net = _mlp(thr=0.3)
    x = _spikes_in(9, T=10, B=6) * 2
    m1 = sa.simulate(net, x, scheduler=sa.MomentumAsync(forward_group_size=1, seed=0)).spikes
    m2 = sa.simulate(net, x, scheduler=sa.MomentumAsync(forward_group_size=1, seed=0)).spikes
    assert torch.equal(m1, m2)


def test_unprioritized_inputs_join_pending_set():
    net = _mlp()
    x = _spikes_in(6) * 1.5
    ref = sa.simulate(net, x)
    out = sa.simulate(net, x, scheduler=sa.LayerOrderedAsync(prioritize_input=False))
    assert torch.equal(out.spikes, ref.spikes)  # layer order delivers all inputs first
    rnd = sa.simulate(
        net, x, scheduler=sa.RandomAsync(prioritize_input=False, forward_group_size=2)
    )
    assert rnd.forward_steps.float().mean() > ref.forward_steps.float().mean()


def test_conv_and_pooled_spikes():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        snn.Leaky(beta=0.9, threshold=0.3, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3),
        snn.Leaky(beta=0.9, threshold=0.3, init_hidden=True),
        nn.Flatten(),
        nn.Linear(16, 5),
        snn.Leaky(beta=0.9, threshold=0.2, init_hidden=True),
    )
    x = (torch.rand(6, 2, 1, 8, 8) < 0.4).float()
    ref = sa.simulate(net, x)
    for strategy in STRATEGIES:
        assert torch.equal(sa.simulate(net, x, scheduler=strategy()).spikes, ref.spikes)
    r1 = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=1))
    assert r1.spikes.shape == ref.spikes.shape


@pytest.mark.cuda
def test_anchor_on_cuda():
    """On a CUDA device every ordering at F = all equals LayerSync on that device, spike for spike
    (the torch backend: the native kernel is CPU-only)."""
    net = _mlp().cuda()
    x = _spikes_in(1).cuda()
    ref = sa.simulate(net, x)
    for strategy in STRATEGIES:
        out = sa.simulate(net, x, scheduler=strategy())
        assert out.spikes.device.type == "cuda" and out.backend == "torch"
        assert torch.equal(out.spikes, ref.spikes)
    r3 = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=3, seed=0))
    assert r3.spikes.shape == ref.spikes.shape and r3.backend == "torch"


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("F", [0, -1, 1.5, True])
def test_bad_forward_group_size(F):
    with pytest.raises(ConfigError, match="forward_group_size must be an integer >= 1"):
        sa.RandomAsync(forward_group_size=F)


@pytest.mark.parametrize("field", ["max_forward_steps", "stop_on_output"])
def test_negative_bounds(field):
    with pytest.raises(ConfigError, match=f"{field} must be a non-negative integer"):
        sa.RandomAsync(**{field: -1})


def test_bad_dropout_and_sync_threshold():
    with pytest.raises(ConfigError, match=r"spike_dropout must be a probability in \[0, 1\)"):
        sa.RandomAsync(spike_dropout=1.5)
    net = _mlp()
    x = _spikes_in(0)
    with pytest.raises(ConfigError, match="sync_threshold has 2 tensors but the model has 3"):
        sa.simulate(
            net, x, scheduler=sa.RandomAsync(sync_threshold=[torch.zeros(16), torch.zeros(10)])
        )
    with pytest.raises(ConfigError, match=r"expected a shape broadcastable to \[10\]"):
        sa.simulate(
            net,
            x,
            scheduler=sa.RandomAsync(
                sync_threshold=[torch.zeros(16), torch.zeros(7), torch.zeros(4)]
            ),
        )


def test_max_pooling_of_currents_is_refused():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), snn.Leaky(beta=0.9, init_hidden=True))
    x = torch.ones(2, 1, 1, 8, 8)
    sa.simulate(net, x)  # fine layer-synchronously
    with pytest.raises(
        UnsupportedModuleError, match=r"cannot run nn.MaxPool2d at '1'.*Fix: pool spikes"
    ):
        sa.simulate(net, x, scheduler=sa.RandomAsync())


# ---------------------------------------------------------------- synaptic delays
def _delay_net(max_delay, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(
        sa.DelayedLinear(10, 12, max_delay=max_delay, seed=1),
        snn.Leaky(
            beta=0.9, threshold=0.4, init_hidden=True, reset_mechanism="zero", reset_delay=False
        ),
        nn.Linear(12, 4),
        snn.Leaky(beta=0.9, threshold=0.3, init_hidden=True, output=True),
    )
    with torch.no_grad():
        net[0].weight.mul_(3)
    return net


@pytest.mark.parametrize("max_delay", [0, 3])
def test_input_delays_at_full_group_equal_layersync(max_delay):
    """Delayed input events due at a step arrive with that step's input frame."""
    net = _delay_net(max_delay)
    x = _spikes_in(2, T=12, B=3, n=10)
    ref = sa.simulate(net, x, record=sa.Record(layer_spikes=True))
    assert ref.layer_spikes[0].sum() > 10
    for s in (
        sa.LayerOrderedAsync(),
        sa.RandomAsync(seed=2),
        sa.MomentumAsync(),
        sa.LayerOrderedAsync(prioritize_input=False),
    ):
        out = sa.simulate(net, x, scheduler=s, record=sa.Record(layer_spikes=True))
        for a, b in zip(out.layer_spikes, ref.layer_spikes):
            assert torch.equal(a, b)


def test_delay_zero_layer_equals_linear_under_async():
    net = _delay_net(0)
    lin = nn.Sequential(nn.Linear(10, 12), *list(net)[1:])
    with torch.no_grad():
        lin[0].weight.copy_(net[0].weight)
        lin[0].bias.copy_(net[0].bias)
    x = _spikes_in(3, T=8, B=3, n=10)
    for F in (1, None):
        s = sa.RandomAsync(forward_group_size=F, seed=5)
        assert torch.equal(
            sa.simulate(net, x, scheduler=s).spikes, sa.simulate(lin, x, scheduler=s).spikes
        )


def test_hidden_delay_golden():
    """Layer 0 fires once at t = 0; its spike reaches layer 1 through a delay-2 synapse at t = 2."""
    net = nn.Sequential(
        nn.Linear(1, 1, bias=False),
        snn.Leaky(
            beta=0.0, threshold=0.5, init_hidden=True, reset_mechanism="zero", reset_delay=False
        ),
        sa.DelayedLinear(1, 1, bias=False, delays=2),
        snn.Leaky(
            beta=0.0, threshold=0.5, init_hidden=True, reset_mechanism="zero", reset_delay=False
        ),
    )
    with torch.no_grad():
        net[0].weight.fill_(1.0)
        net[2].weight.fill_(1.0)
    x = torch.zeros(5, 1, 1)
    x[0] = 1.0
    for s in (sa.LayerSync(), sa.RandomAsync(), sa.MomentumAsync(forward_group_size=1)):
        r = sa.simulate(net, x, scheduler=s, record=sa.Record(layer_spikes=True))
        assert r.layer_spikes[0].flatten().tolist() == [1, 0, 0, 0, 0]
        assert r.spikes.flatten().tolist() == [0, 0, 1, 0, 0]


def test_delay_layer_must_stand_alone():
    net = nn.Sequential(
        nn.Conv2d(1, 1, 1),
        nn.Flatten(),
        sa.DelayedLinear(4, 3, delays=1),
        snn.Leaky(beta=0.9, init_hidden=True),
    )
    x = torch.ones(2, 1, 1, 2, 2)
    with pytest.raises(
        UnsupportedModuleError, match=r"a delay layer must be the only weighted module"
    ):
        sa.simulate(net, x, scheduler=sa.RandomAsync())


# ---------------------------------------------------------------- spike order within a step
ORDER = sa.Record(layer_spikes=True, spike_forward_steps=True)


@pytest.mark.parametrize(
    "sched",
    [
        sa.RandomAsync(forward_group_size=2, seed=1),
        sa.MomentumAsync(forward_group_size=3, seed=2),
        sa.LayerOrderedAsync(forward_group_size=1),
        sa.RandomAsync(forward_group_size=2, prioritize_input=False, seed=3),
        sa.RandomAsync(forward_group_size=1, max_forward_steps=4, seed=4),
        sa.MomentumAsync(forward_group_size=2, stop_on_output=1, seed=5),
        sa.RandomAsync(seed=6),
    ],
    ids=["random", "momentum", "layer", "unprioritized", "max-steps", "stop-on-output", "dense"],
)
def test_spike_forward_steps_are_consistent_and_change_nothing(sched):
    """Index > 0 exactly where a neuron fired, at most the step's forward steps; with the record
    on, spikes (and gradients' inputs) and counters are those of the record off."""
    net, x = _mlp(), _spikes_in(7, T=6)
    on = sa.simulate(net, x, scheduler=sched, record=ORDER)  # gradients: the torch backend
    off = sa.simulate(net, x, scheduler=sched, record=sa.Record(layer_spikes=True))
    assert off.spike_forward_steps is None
    assert torch.equal(on.forward_steps, off.forward_steps)
    assert torch.equal(on.spike_counts, off.spike_counts)
    fs = on.forward_steps
    for s_on, s_off, k in zip(on.layer_spikes, off.layer_spikes, on.spike_forward_steps):
        assert torch.equal(s_on, s_off)
        assert k.dtype == torch.long and k.shape == s_on.shape
        assert torch.equal(k > 0, s_on.detach() != 0)
        assert bool((k >= 0).all()) and bool((k <= fs.view(*fs.shape, 1)).all())
    assert sum(int((k > 0).sum()) for k in on.spike_forward_steps) > 0


@pytest.mark.parametrize(
    "sched",
    [sa.LayerOrderedAsync(forward_group_size=1), sa.RandomAsync(forward_group_size=2, seed=9)],
)
def test_spike_forward_steps_are_when_the_spikes_happen(sched):
    """Stopping a time step after m forward steps fires exactly the spikes whose recorded forward
    step is at most m (first time step: same state, same keys)."""
    net, x = _mlp(), _spikes_in(8, T=1)
    full = sa.simulate(net, x, scheduler=sched, record=ORDER)
    steps = int(full.forward_steps.max())
    assert steps >= 4  # the check covers several forward steps
    for m in range(1, steps + 1):
        cut = sa.simulate(
            net, x, scheduler=dataclasses.replace(sched, max_forward_steps=m), record=ORDER
        )
        for s, k in zip(cut.layer_spikes, full.spike_forward_steps):
            assert torch.equal(s.detach() != 0, (k > 0) & (k <= m)), m


def test_layer_ordered_full_group_fires_layer_l_in_forward_step_l_plus_1():
    """LayerOrderedAsync at F >= all neurons with prioritised inputs (= LayerSync): the input frame
    is forward step 1 and layer l fires in forward step l + 1, as LayerSync's record says."""
    for seed in (0, 3, 5, 14):
        case = random_model(seed)
        x = random_inputs(seed, 6, 3, case.input_shape)
        sync = sa.simulate(case.model, x, record=ORDER)
        n_total = sum(sync.neurons)
        for F in (None, n_total):
            r = sa.simulate(
                case.model, x, scheduler=sa.LayerOrderedAsync(forward_group_size=F), record=ORDER
            )
            for l, (s, k) in enumerate(zip(r.layer_spikes, r.spike_forward_steps)):
                assert bool(s.detach().sum() > 0), (seed, l)  # every layer fires here
                assert bool((k[s.detach() != 0] == l + 1).all()), (case.description, l)
            for a, b in zip(r.spike_forward_steps, sync.spike_forward_steps):
                assert torch.equal(a, b)


def test_a_settle_step_fires_a_layer_earlier_than_l_plus_1():
    """What is true beyond the wave: when no spike reaches a layer whose neurons fire from their
    bias alone, a settle forward step reaches it as soon as nothing is pending, so layer 2 fires
    in forward step 2 (LayerSync: 3 of 3). The spikes are LayerSync's."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 3),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(3, 3, bias=False),
        snn.Leaky(beta=0.9, init_hidden=True),
        nn.Linear(3, 2),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.zero_()  # layer 0 never fires, layer 1 has no bias: nothing reaches layer 2
        net[4].bias.fill_(2.0)  # but layer 2 fires from its bias
    x = torch.ones(3, 1, 4)
    r = sa.simulate(net, x, scheduler=sa.LayerOrderedAsync(), record=ORDER)
    sync = sa.simulate(net, x, record=ORDER)
    assert torch.equal(r.spikes, sync.spikes) and int(r.spikes.sum()) == 6
    assert r.forward_steps.flatten().tolist() == [2, 2, 2]
    assert r.spike_forward_steps[2].flatten().tolist() == [2] * 6
    assert sync.spike_forward_steps[2].flatten().tolist() == [3] * 6
