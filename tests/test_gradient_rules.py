"""The gradient rules of unlayered backprop (``engine/gradients.py``): same spikes under every
rule; QueuedCarriers (the reference implementation's rule) close to LayerSync at F >= N, exact
through a finite-difference check, one output surrogate term per evaluation."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from snntorch import functional as SF
from snntorch import surrogate
from torch import nn

import snntorch_async as sa
from snntorch_async.errors import ConfigError
from random_models import assert_gradients_match_finite_differences, mlp

RULES = [sa.EventGradients(), sa.LayerCarriers(), sa.QueuedCarriers()]
STRATEGIES = [sa.LayerOrderedAsync, sa.RandomAsync, sa.MomentumAsync]


def _spikes_in(seed, T=8, B=4, n=12, p=0.5):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((T, B, n), generator=g) < p).float() * 1.5


def _grads(net, x, sched, w=None):
    net.zero_grad()
    r = sa.simulate(net, x, scheduler=sched)
    w = torch.arange(1.0, r.spikes.shape[-1] + 1) if w is None else w
    (r.spikes * w).sum().backward()
    return r.spikes.detach(), torch.cat([p.grad.flatten() for p in net.parameters()])


def _cos(a, b):
    return float(nn.functional.cosine_similarity(a, b, 0))


@pytest.mark.parametrize("F", [1, 3, None])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_spikes_do_not_depend_on_the_rule(F, strategy):
    net = mlp((12, 16, 10, 4), reset="zero", reset_delay=False, thr=0.4, seed=1)
    x = _spikes_in(2)
    out = [_grads(net, x, strategy(forward_group_size=F, seed=5, gradient_rule=r)) for r in RULES]
    assert out[0][0].sum() > 0
    for spikes, _ in out[1:]:
        assert torch.equal(spikes, out[0][0])
    # ... while the gradients do
    assert not torch.allclose(out[0][1], out[2][1])


@pytest.mark.parametrize("seed", range(4))
def test_queued_carriers_at_full_group_follow_layersync(seed):
    """F >= all neurons: the reference's rule has cosine >= 0.98 with LayerSync's gradient; the
    event-driven rule does not (the test tells them apart)."""
    net = mlp((12, 16, 10, 4), reset="zero", reset_delay=False, thr=0.3, seed=seed)
    x = _spikes_in(seed)
    spikes, ref = _grads(net, x, sa.LayerSync())
    assert spikes.sum() > 5
    for strategy in STRATEGIES:
        for F in (None, 30):
            s, g = _grads(net, x, strategy(forward_group_size=F, gradient_rule=sa.QueuedCarriers()))
            assert torch.equal(s, spikes)
            assert _cos(g, ref) >= 0.98, (strategy.__name__, F, _cos(g, ref))
    _, event = _grads(net, x, sa.LayerOrderedAsync(gradient_rule=sa.EventGradients()))
    assert _cos(event, ref) < 0.98


@pytest.mark.parametrize("F", [1, 2, None])
def test_queued_carriers_finite_difference(F):
    """A smooth spike function that is negative below threshold: a 'silent' neuron's output is
    then a small negative number, not 0, so it changes the forward pass exactly where the rule
    sends it (queued, then with the neuron's next spike or as filler, across time steps; output
    terms per evaluation). Autograd must equal finite differences of that forward pass."""
    torch.manual_seed(0)
    smooth = lambda v: torch.tanh(3 * v)  # noqa: E731
    kw = dict(beta=0.8, threshold=0.3, spike_grad=smooth, init_hidden=True, reset_mechanism="none")
    net = nn.Sequential(
        nn.Linear(5, 4), snn.Leaky(**kw), nn.Linear(4, 3), snn.Leaky(output=True, **kw)
    ).double()
    x = (torch.rand(4, 2, 5) < 0.6).double()
    sched = sa.LayerOrderedAsync(forward_group_size=F, gradient_rule=sa.QueuedCarriers())
    w = torch.tensor([1.0, -2.0, 0.5]).double()

    def loss(s=sched):
        return (sa.simulate(net, x, scheduler=s).spikes * w).sum()

    # the carriers reach the forward pass (else this test would be idle); they exist only when
    # gradients are recorded, so the perturbed losses below are computed with gradients too
    event = sa.LayerOrderedAsync(forward_group_size=F, gradient_rule=sa.EventGradients())
    assert abs(float(loss().detach()) - float(loss(event).detach())) > 1e-3
    assert_gradients_match_finite_differences(loss, net.parameters())


def test_output_surrogate_once_per_evaluation():
    """One output neuron fed event by event (F = 1, inputs not prioritised): the gradient of its
    spike count is the sum of one surrogate term per evaluation, computed here by hand."""
    slope = 5.0
    fs = surrogate.fast_sigmoid(slope=slope)
    lin = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.1, 0.2, 0.15]]))
    net = nn.Sequential(
        lin,
        snn.Leaky(
            beta=0.5,
            threshold=1.0,
            spike_grad=fs,
            init_hidden=True,
            output=True,
            reset_mechanism="none",
        ),
    )
    x = torch.tensor([[[1.0, 1.0, 1.0]], [[1.0, 0.0, 1.0]]])  # [T=2, B=1, 3]: all stay silent
    w = lin.weight.detach()[0]

    def d_surrogate(u):  # fast sigmoid: d/du of u/(1+slope|u|) around the threshold
        return 1.0 / (1.0 + slope * abs(u - 1.0)) ** 2

    for per_evaluation in (True, False):
        rule = sa.QueuedCarriers(output_per_evaluation=per_evaluation)
        sched = sa.LayerOrderedAsync(
            forward_group_size=1, prioritize_input=False, gradient_rule=rule
        )
        net.zero_grad()
        out = sa.simulate(net, x, scheduler=sched).spikes
        assert out.sum() == 0
        out.sum().backward()
        expected, mem, dmem = torch.zeros(3), 0.0, torch.zeros(3)
        for t in range(2):
            mem, dmem = 0.5 * mem, 0.5 * dmem
            for j in range(3):  # index order: one input event per forward step
                if x[t, 0, j] == 0:
                    continue
                mem, dmem = mem + float(w[j]), dmem + torch.eye(3)[j]
                if per_evaluation:
                    expected += d_surrogate(mem) * dmem
            if not per_evaluation:  # one term per step, at the end-of-step membrane
                expected += d_surrogate(mem) * dmem
        torch.testing.assert_close(lin.weight.grad[0], expected.float(), rtol=1e-5, atol=1e-7)


def test_gradient_rule_errors():
    with pytest.raises(ConfigError, match="gradient_rule must be a gradient rule object"):
        sa.RandomAsync(gradient_rule="queued")
    with pytest.raises(
        ConfigError, match="silent_gradients=True means gradient_rule=LayerCarriers"
    ):
        sa.RandomAsync(silent_gradients=True, gradient_rule=sa.QueuedCarriers())
    sa.RandomAsync(silent_gradients=True, gradient_rule=sa.LayerCarriers())  # consistent: fine


def test_silent_network_under_async_training_is_explained():
    """Nothing reaches the output layer: no gradient exists under the event-driven rules, and
    the error says why (not the generic 'no surrogate' message)."""
    net = mlp((12, 16, 10, 4), reset="zero", reset_delay=False, thr=50.0, seed=0, bias=False)
    x, y = _spikes_in(0), torch.zeros(4, dtype=torch.long)
    kw = dict(optimizer=torch.optim.Adam(net.parameters()), loss_fn=SF.ce_rate_loss())
    with pytest.raises(sa.TrainingError, match="No spike reached the output layer in this batch"):
        sa.train_step(net, (x, y), scheduler=sa.RandomAsync(forward_group_size=4), **kw)
    sa.train_step(net, (x, y), scheduler=sa.LayerSync(), **kw)  # every layer evaluated: a gradient


@pytest.mark.slow
def test_momentum_training_does_not_collapse():
    """MomentumAsync training (digits, the reference's regime, T = 10, 3 epochs): the model keeps
    its accuracy under LayerSync and random order. With EventGradients the same run collapses
    (measured: LayerSync 0.46, random 0.54, momentum 0.84 after 3 epochs; chance by epoch 5)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (the measured numbers above are for one thread)
    try:
        acc = _momentum_trained_accuracies(sa.QueuedCarriers())
    finally:
        torch.set_num_threads(threads)
    assert acc["momentum"] > 0.75, acc
    assert acc["sync"] > acc["momentum"] - 0.05, acc
    assert acc["random"] > acc["momentum"] - 0.05, acc


def _momentum_trained_accuracies(rule: sa.GradientRule) -> dict[str, float]:
    from snntorch_async.app.regimes import REFERENCE
    from snntorch_async.app.zoo import digits_mlp2
    from snntorch_async.data import RateEncoding, load_digits_spikes, make_loader

    data = load_digits_spikes(encoding=RateEncoding(), num_steps=10, seed=0)
    train = make_loader(data.train, batch_size=32, shuffle=True, seed=0)
    test = make_loader(data.test, batch_size=128, shuffle=False, seed=0)
    torch.manual_seed(0)
    net = digits_mlp2(**REFERENCE.model_settings())
    sa.fit(
        net,
        train,
        scheduler=sa.MomentumAsync(forward_group_size=8, gradient_rule=rule),
        config=sa.TrainConfig(epochs=3, lr=3e-3, seed=0, optimizer=REFERENCE.optimizer()),
        progress=False,
    )
    return {
        name: float(sa.evaluate(net, test, scheduler=s).summary()["accuracy"])
        for name, s in [
            ("sync", sa.LayerSync()),
            ("random", sa.RandomAsync(forward_group_size=8, seed=1)),
            ("momentum", sa.MomentumAsync(forward_group_size=8, seed=1)),
        ]
    }


def test_layer_carriers_gradient_does_not_depend_on_how_a_delivery_is_summed():
    """LayerCarriers' value-0 carriers ride in the delivered vectors; a sparse gather of the
    non-zero entries would drop them with their gradient (it did: 30-55 % off in the hidden
    layers at F = 2), so such deliveries use the module call whatever ``SPARSE_RATIO`` says."""
    from snntorch_async.engine import currents

    net = mlp((40, 64, 48, 5), reset="zero", reset_delay=False, thr=0.4, seed=1)
    x = (torch.rand(6, 4, 40, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    sched = sa.RandomAsync(forward_group_size=2, seed=1, gradient_rule=sa.LayerCarriers())
    grads = []
    old = currents.SPARSE_RATIO
    try:
        for ratio in (32, 10**9):  # the default heuristic, and never sparse
            currents.SPARSE_RATIO = ratio
            net.zero_grad()
            r = sa.simulate(net, x, scheduler=sched)
            (r.spikes * torch.linspace(0.5, 1.5, 5)).sum().backward()
            grads.append([p.grad.clone() for p in net.parameters()])
    finally:
        currents.SPARSE_RATIO = old
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
