"""The native training path (``engine/native_grad.py``) against the torch backend.

Every test runs the same seeded simulation twice, through the kernel and through the torch code
(``native.use_native(False)``), backpropagates the same loss (output spikes, every layer's spikes
and membranes, each weighted by a fixed random tensor) and asserts: the kernel ran (``backend ==
"native"``), the spikes are identical, the membranes equal to the last bits (with gradients the
torch code sums a delivery's current as a dense product, the kernel source by source, as in
inference), and every parameter's gradient is within 1e-5 relative of the torch path's.
"""

from __future__ import annotations

import logging

import pytest
import snntorch as snn
import torch
from snntorch import surrogate
from torch import nn

import snntorch_async as sa
from snntorch_async import native
from snntorch_async.engine import native_grad

from random_models import mlp, random_inputs, random_model

needs_kernel = pytest.mark.skipif(not native.available(), reason="native kernel unavailable")
pytestmark = needs_kernel

REC = sa.Record(layer_spikes=True, membranes=True)


def _loss(r: sa.SimulationResult) -> torch.Tensor:
    gen = torch.Generator().manual_seed(123)
    terms = [r.spikes] + list(r.layer_spikes) + [0.1 * m for m in r.membranes]
    return sum((t * torch.rand(t.shape, generator=gen)).sum() for t in terms)


def _run(net, x, sched, kernel: bool):
    net.zero_grad()
    with native.use_native(kernel):
        r = sa.simulate(net, x, scheduler=sched, record=REC)
    _loss(r).backward()
    grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
    return r, grads


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def assert_native_matches_torch(net, x, sched, tol: float = 1e-5):
    r1, g1 = _run(net, x, sched, True)
    r2, g2 = _run(net, x, sched, False)
    assert r1.backend == "native" and r2.backend == "torch"
    assert torch.equal(r1.spikes, r2.spikes)
    for a, b in zip(r1.layer_spikes, r2.layer_spikes):
        assert torch.equal(a, b)
    for a, b in zip(r1.membranes, r2.membranes):  # (last bits: see the module docstring)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert g1.keys() == g2.keys() and g2
    for name in g2:
        assert _rel(g1[name], g2[name]) <= tol, (name, _rel(g1[name], g2[name]))
    assert any(float(g.abs().max()) > 0 for g in g2.values())  # a gradient to compare
    return r1, g1


SCHEDULERS = [
    lambda: sa.RandomAsync(forward_group_size=1, seed=3),
    lambda: sa.RandomAsync(forward_group_size=3, seed=4, prioritize_input=False),
    lambda: sa.MomentumAsync(forward_group_size=2, seed=5),
    lambda: sa.LayerOrderedAsync(forward_group_size=4, full_layer_evaluation=True),
    lambda: sa.RandomAsync(forward_group_size=None, seed=6),
]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("which", range(len(SCHEDULERS)))
def test_random_models_match_the_torch_path(seed, which):
    """Random MLPs: Leaky / Synaptic, every reset rule, reset_delay, per-neuron and learnable
    beta / threshold, biases on and off, atan and fast-sigmoid surrogates; five schedulers."""
    case = random_model(seed, kind="mlp")
    x = random_inputs(seed, 6, 3, case.input_shape)
    assert_native_matches_torch(case.model, x, SCHEDULERS[which]())


RULES = [
    sa.QueuedCarriers(),
    sa.QueuedCarriers(output_per_evaluation=False),
    sa.EventGradients(),
    sa.LayerCarriers(),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: repr(r))
@pytest.mark.parametrize("F", [1, 2, 5, None])
def test_gradient_rules_match_the_torch_path(rule, F):
    net = mlp((12, 16, 10, 5), seed=1, thr=0.4)
    x = random_inputs(2, 8, 4, (12,), p=0.4)
    assert_native_matches_torch(
        net, x, sa.RandomAsync(forward_group_size=F, gradient_rule=rule, seed=1)
    )


def test_the_gradient_rules_give_different_gradients():
    """(the comparison above could not tell the rules apart if they agreed)"""
    net = mlp((12, 16, 10, 5), seed=1, thr=0.4)
    x = random_inputs(2, 8, 4, (12,), p=0.4)
    grads = [
        _run(net, x, sa.RandomAsync(forward_group_size=2, gradient_rule=rule, seed=1), True)[1]
        for rule in RULES
    ]
    for a in range(len(RULES)):
        for b in range(a):
            assert _rel(grads[a]["0.weight"], grads[b]["0.weight"]) > 1e-3


@pytest.mark.parametrize(
    "settings",
    [
        dict(max_forward_steps=3),
        dict(stop_on_output=1),
        dict(max_forward_steps=5, stop_on_output=2, prioritize_input=False),
        dict(sync_threshold=2),
        dict(sync_threshold=1, prioritize_input=False),
        dict(sync_threshold=[torch.full((16,), 1.0), torch.arange(10.0) % 3, torch.zeros(5)]),
    ],
    ids=str,
)
def test_stop_rules_and_partial_synchronisation_match_the_torch_path(settings):
    """Stop rules leave spikes pending across time steps (their gradient travels with them)."""
    net = mlp((12, 16, 10, 5), seed=4, thr=0.4, reset="subtract")
    x = random_inputs(5, 8, 4, (12,), p=0.4)
    assert_native_matches_torch(net, x, sa.RandomAsync(forward_group_size=2, seed=2, **settings))


@pytest.mark.parametrize("neuron", ["RLeaky", "RSynaptic"])
@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
def test_recurrent_layers_match_the_torch_path(neuron, reset):
    torch.manual_seed(3)
    kw = dict(beta=0.8, threshold=0.5, init_hidden=True, reset_mechanism=reset, linear_features=14)
    layer = snn.RLeaky(**kw) if neuron == "RLeaky" else snn.RSynaptic(alpha=0.6, **kw)
    net = nn.Sequential(
        nn.Linear(10, 14),
        layer,
        nn.Linear(14, 6),
        snn.Leaky(beta=0.8, init_hidden=True, output=True),
    )
    with torch.no_grad():
        net[0].weight.mul_(3)
        net[2].weight.mul_(3)
    x = random_inputs(3, 8, 4, (10,), p=0.4)
    assert_native_matches_torch(net, x, sa.RandomAsync(forward_group_size=2, seed=7))


@pytest.mark.parametrize(
    "spike_grad",
    [
        surrogate.atan(alpha=3.0),
        surrogate.fast_sigmoid(slope=10),
        surrogate.sigmoid(slope=5),
        surrogate.straight_through_estimator(),
        surrogate.triangular(),  # not in the kernel: the backward calls spike_grad itself
    ],
    ids=["atan", "fast_sigmoid", "sigmoid", "ste", "triangular"],
)
def test_surrogates_match_the_torch_path(spike_grad):
    net = mlp((12, 16, 5), seed=2, thr=0.4)
    for m in net:
        if isinstance(m, snn.Leaky):
            m.spike_grad = spike_grad
    x = random_inputs(4, 6, 3, (12,), p=0.4)
    assert_native_matches_torch(net, x, sa.RandomAsync(forward_group_size=2, seed=2))


def test_surrogates_the_kernel_computes_itself():
    kinds = {
        "atan": surrogate.atan(),
        "fast_sigmoid": surrogate.fast_sigmoid(),
        "sigmoid": surrogate.sigmoid(),
        "straight_through_estimator": surrogate.straight_through_estimator(),
    }
    for name, fn in kinds.items():
        kind, _ = native_grad.surrogate_of(_neuron_of(snn.Leaky(beta=0.5, spike_grad=fn)))
        assert kind == native_grad.KERNEL_SURROGATES[name][0]
    assert (
        native_grad.surrogate_of(
            _neuron_of(snn.Leaky(beta=0.5, spike_grad=surrogate.triangular()))
        )[0]
        == 0
    )
    # a surrogate that only looks like atan by name is checked against its own backward pass
    fake = surrogate.fast_sigmoid(slope=7)
    fake.__qualname__ = "atan.<locals>.inner"
    assert native_grad.surrogate_of(_neuron_of(snn.Leaky(beta=0.5, spike_grad=fake)))[0] == 0


def _neuron_of(module):
    from snntorch_async.neurons import LeakyNeuron

    return LeakyNeuron(module, "x", (3,))


def test_gradients_do_not_depend_on_the_thread_count():
    net = mlp((20, 24, 16, 6), seed=3)
    x = random_inputs(1, 6, 9, (20,), p=0.4)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        r1, g1 = _run(net, x, sa.RandomAsync(forward_group_size=3, seed=1), True)
        torch.set_num_threads(2)
        r2, g2 = _run(net, x, sa.RandomAsync(forward_group_size=3, seed=1), True)
    finally:
        torch.set_num_threads(old)
    assert r1.backend == r2.backend == "native"
    assert torch.equal(r1.spikes, r2.spikes)
    for k in g1:
        assert torch.equal(g1[k], g2[k])


def test_a_second_backward_pass_gives_the_same_gradients():
    """The weight gradients accumulate per block over the time steps and leave with the first
    step's backward; a retained graph accumulates anew."""
    net = mlp((12, 16, 5), seed=2, thr=0.4)
    x = random_inputs(4, 6, 3, (12,), p=0.4)
    r = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=2, seed=2), record=REC)
    assert r.backend == "native"
    loss = _loss(r)
    first = torch.autograd.grad(loss, list(net.parameters()), retain_graph=True, allow_unused=True)
    second = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
    for a, b in zip(first, second):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.equal(a, b)


def test_seeded_training_repeats_bit_for_bit():
    def train():
        net = mlp((12, 16, 5), seed=2, thr=0.4)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        x = random_inputs(4, 6, 8, (12,), p=0.4)
        y = torch.arange(8) % 5
        for _ in range(3):
            opt.zero_grad()
            r = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=2, seed=9))
            nn.functional.cross_entropy(r.spikes.sum(0), y).backward()
            opt.step()
        return [p.detach().clone() for p in net.parameters()]

    for a, b in zip(train(), train()):
        assert torch.equal(a, b)


class _Flat(torch.autograd.Function):
    """Heaviside forward with a derivative of exactly 0: the true derivative of a step away from
    its jump."""

    @staticmethod
    def forward(ctx, x):
        return (x > 0).float()

    @staticmethod
    def backward(ctx, g):
        return torch.zeros_like(g)


def test_finite_differences_through_the_native_path():
    """With a spike derivative of exactly 0 the gradient of a loss on the membranes is the true
    derivative of the simulation (spikes are piecewise constant): weights -> the currents of
    every delivery -> membranes -> the next step's leak, zero-reset masking, biases, the input
    frame. Finite differences check it through the kernel's backward (the perturbations change
    no spike: asserted). The surrogate paths are checked against the torch path above, whose own
    finite-difference checks use smooth spike functions (tests/test_gradient_rules.py)."""
    torch.manual_seed(0)
    kw = dict(beta=0.7, threshold=0.5, spike_grad=_Flat.apply, init_hidden=True)
    net = nn.Sequential(
        nn.Linear(6, 5),
        snn.Leaky(reset_mechanism="zero", **kw),
        nn.Linear(5, 4),
        snn.Leaky(reset_mechanism="subtract", output=True, **kw),
    )
    with torch.no_grad():
        net[0].weight.mul_(2.5)
        net[2].weight.mul_(2.5)
    x = random_inputs(8, 5, 2, (6,), p=0.5)
    sched = sa.RandomAsync(forward_group_size=2, seed=3)
    base = sa.simulate(net, x, scheduler=sched, record=REC)
    assert base.backend == "native" and float(base.spikes.detach().sum()) > 0

    def loss():
        r = sa.simulate(net, x, scheduler=sched, record=REC)
        assert torch.equal(r.spikes, base.spikes)  # no spike flipped: the function is smooth here
        return sum((m * (i + 1)).sum() for i, m in enumerate(r.membranes))

    params = [net[0].weight, net[0].bias, net[2].weight]
    loss().backward()
    assert float(net[0].weight.grad.abs().max()) > 0
    # float32 loss: eps large enough for its rounding, small enough to flip no spike
    from random_models import assert_gradients_match_finite_differences

    assert_gradients_match_finite_differences(loss, params, eps=2e-3, tol=2e-2)


def test_what_the_native_path_does_not_run_falls_back_with_one_log_line(caplog):
    net = mlp((12, 16, 5), seed=2, thr=0.4)
    x = random_inputs(4, 4, 3, (12,), p=0.4)
    rec = nn.Sequential(
        nn.Linear(12, 8),
        snn.RLeaky(beta=0.8, linear_features=8, init_hidden=True),
        nn.Linear(8, 5),
        snn.Leaky(beta=0.8, init_hidden=True, output=True),
    )
    lateral = sa.RecurrentTiming.IMMEDIATE
    cases = [
        (net, sa.RandomAsync(forward_group_size=2, spike_dropout=0.2), None, "dropout"),
        (rec, sa.RandomAsync(forward_group_size=2, recurrent_timing=lateral), None, "IMMEDIATE"),
        (
            net,
            sa.RandomAsync(forward_group_size=2),
            sa.Record(spike_forward_steps=True),
            "spike_forward_steps",
        ),
    ]
    native_grad._said.clear()
    with caplog.at_level(logging.INFO, logger="snntorch_async.engine.native_grad"):
        for model, sched, record, _ in cases:
            model.train()
            for _ in range(2):  # twice: still one line
                kw = {} if record is None else dict(record=record)
                assert sa.simulate(model, x, scheduler=sched, **kw).backend == "torch"
        with native.use_native(False):
            r = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=2))
            assert r.backend == "torch"
    lines = [
        r.getMessage() for r in caplog.records if r.name == "snntorch_async.engine.native_grad"
    ]
    assert len(lines) == 4, lines  # one per reason, not one per simulation
    for *_, why in cases:
        assert sum(why in m for m in lines) == 1, (why, lines)
    assert any("switched off" in m for m in lines)
    assert all(
        m.startswith("snntorch_async: asynchronous training runs the torch backend: ")
        for m in lines
    )


def test_inference_of_synaptic_recurrent_and_synchronised_networks_equals_the_torch_code():
    torch.manual_seed(5)
    kw = dict(beta=0.8, threshold=0.5, init_hidden=True, reset_mechanism="zero")
    nets = [
        mlp((12, 16, 10, 5), seed=3, neuron=snn.Synaptic, thr=0.4),
        mlp((12, 16, 10, 5), seed=3, neuron=snn.Synaptic, thr=0.4, reset="subtract"),
        nn.Sequential(
            nn.Linear(12, 14),
            snn.RSynaptic(alpha=0.6, linear_features=14, **kw),
            nn.Linear(14, 5),
            snn.RLeaky(linear_features=5, output=True, **kw),
        ),
    ]
    for m in nets[2]:
        if isinstance(m, nn.Linear):
            with torch.no_grad():
                m.weight.mul_(3)
    x = random_inputs(6, 8, 4, (12,), p=0.4)
    with torch.no_grad():
        for net in nets:
            for sched in (
                sa.RandomAsync(forward_group_size=2, seed=1),
                sa.MomentumAsync(forward_group_size=3, seed=1, sync_threshold=1),
            ):
                r1 = sa.simulate(net, x, scheduler=sched, record=REC)
                with native.use_native(False):
                    r2 = sa.simulate(net, x, scheduler=sched, record=REC)
                assert r1.backend == "native" and r2.backend == "torch"
                assert torch.equal(r1.spikes, r2.spikes)
                for a, b in zip(r1.membranes, r2.membranes):
                    assert torch.equal(a, b)
                assert torch.equal(r1.synops, r2.synops)


@pytest.mark.cuda
def test_training_on_cuda_runs_the_torch_backend_and_says_so(caplog):
    net = mlp((12, 16, 5), seed=2, thr=0.4).cuda()
    x = random_inputs(4, 4, 3, (12,), p=0.4).cuda()
    native_grad._said.clear()
    with caplog.at_level(logging.INFO, logger="snntorch_async.engine.native_grad"):
        r = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=2, seed=1))
    assert r.backend == "torch" and r.spikes.device.type == "cuda"
    r.spikes.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    assert any("device cuda" in m.getMessage() for m in caplog.records)


@pytest.mark.parametrize("prioritize_input", [True, False])
def test_input_gradients_match_the_torch_path(prioritize_input):
    """The input frame's current (a module call) and input events in the pending set carry the
    gradient back to the inputs, also across time steps (stop rules leave events pending)."""
    net = mlp((12, 16, 10, 5), seed=4, thr=0.4, reset="subtract")
    x0 = random_inputs(5, 6, 4, (12,), p=0.5) * 1.5
    sched = sa.RandomAsync(
        forward_group_size=2, seed=2, max_forward_steps=4, prioritize_input=prioritize_input
    )
    grads, backends = [], []
    for kernel in (True, False):
        x = x0.clone().requires_grad_(True)
        with native.use_native(kernel):
            r = sa.simulate(net, x, scheduler=sched, record=REC)
        (g,) = torch.autograd.grad(_loss(r), [x])
        grads.append(g)
        backends.append(r.backend)
    assert backends == ["native", "torch"]
    assert float(grads[1].abs().max()) > 0
    assert _rel(grads[0], grads[1]) <= 1e-5


def test_the_native_path_does_not_depend_on_torchs_default_dtype():
    """The kernel's buffers are float32 whatever ``torch.set_default_dtype`` says (a float64
    default once gave the kernel float64 buffers to fill as float32: other spikes)."""
    net = mlp((12, 16, 10, 5), seed=1, thr=0.4)
    x = random_inputs(2, 6, 4, (12,), p=0.4)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert_native_matches_torch(
            net, x, sa.RandomAsync(forward_group_size=2, seed=1, max_forward_steps=4)
        )
    finally:
        torch.set_default_dtype(old)


def test_tape_bytes_and_kernel_threading_are_reported():
    net = mlp((12, 16, 5), seed=2, thr=0.4)
    x = random_inputs(4, 5, 3, (12,), p=0.4)
    r = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=2, seed=1))
    backend = r.final_state.plan.backend
    assert r.backend == "native" and backend.tape_bytes() == 0  # no backward yet
    r.spikes.sum().backward()
    assert backend.tape_bytes() > 0
    how = native.threading()
    assert how == "pthreads" or (how.startswith("openmp (") and "libgomp" in how), how
    assert native.thread_count(3) == min(torch.get_num_threads(), 3)
