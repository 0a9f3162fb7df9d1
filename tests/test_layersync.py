"""LayerSync equals snnTorch's own time loop: spikes exactly, membranes exactly, gradients to 1e-5.

Every comparison runs the *real* snnTorch loop (one call of the user's ``nn.Sequential`` per time
step, see ``random_models.snntorch_loop``) on the same model object and inputs.
"""

from __future__ import annotations

import copy

import pytest
import snntorch as snn
import snntorch.functional as SF
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from random_models import SURROGATES, random_inputs, random_model, snntorch_loop
from torch import nn

import snntorch_async as sa
from snntorch_async.reference import run_snntorch

T, B = 12, 3
CUDA = pytest.mark.cuda
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


def _sim(model, x, **kw):
    return sa.simulate(model, x, record=sa.Record(membranes=True, layer_spikes=True), **kw)


def _assert_active(rec) -> None:
    """The reference really spikes in every layer (and not always), so equality means something."""
    for i, s in enumerate(rec.layer_spikes):
        rate = float(s.detach().float().mean())
        assert 0.0 < rate < 1.0, f"layer {i} of the reference has spike rate {rate}"


def _assert_same_run(res, rec) -> None:
    assert torch.equal(res.spikes, rec.spikes)
    assert len(res.layer_spikes) == len(rec.layer_spikes)
    for ours, theirs in zip(res.layer_spikes, rec.layer_spikes):
        assert torch.equal(ours, theirs)
    for ours, theirs in zip(res.membranes, rec.membranes):
        assert torch.equal(ours, theirs)


# ---------------------------------------------------------------------------------------------
# Forward: random models
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(60))
def test_random_model_spikes_and_membranes_equal_snntorch(seed):
    case = random_model(seed)
    x = random_inputs(seed, T, B, case.input_shape, real=seed % 3 == 0)
    with torch.no_grad():
        rec = snntorch_loop(case.model, x)
        res = _sim(case.model, x)
    _assert_active(rec)
    _assert_same_run(res, rec)
    # The library's own reference helper is the same loop.
    with torch.no_grad():
        assert torch.equal(run_snntorch(case.model, x), rec.spikes)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(100, 110))
def test_random_model_equal_on_device(seed, device):
    case = random_model(seed)
    model = case.model.to(device)
    x = random_inputs(seed, T, B, case.input_shape, device=device)
    with torch.no_grad():
        rec = snntorch_loop(model, x)
        res = _sim(model, x)
    _assert_active(rec)
    _assert_same_run(res, rec)
    assert res.spikes.device.type == device


# ---------------------------------------------------------------------------------------------
# Forward: every listed feature, on a fixed grid (independent of the random draws)
# ---------------------------------------------------------------------------------------------


def _two_layer_mlp(neuron_cls, *, reset, reset_delay, spike_grad, per_neuron, learn, output):
    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(12, 16), nn.Linear(16, 5, bias=False)
    with torch.no_grad():
        lin1.weight.mul_(3.0).add_(0.05)
        lin2.weight.mul_(3.0).add_(0.1)

    def neuron(n, out):
        beta = torch.linspace(0.5, 1.05, n) if per_neuron else 0.85
        thr = torch.linspace(0.7, 1.3, n) if per_neuron else 1.0
        kw = dict(
            beta=beta,
            threshold=thr,
            spike_grad=spike_grad(),
            init_hidden=True,
            reset_mechanism=reset,
            learn_beta=learn,
            learn_threshold=learn,
            output=out,
        )
        if neuron_cls is snn.Synaptic:
            alpha = torch.linspace(0.3, 0.9, n) if per_neuron else 0.6
            return snn.Synaptic(alpha=alpha, learn_alpha=learn, **kw)
        return snn.Leaky(reset_delay=reset_delay, **kw)

    return nn.Sequential(lin1, neuron(16, False), lin2, neuron(5, output))


GRID = [
    pytest.param(cls, reset, delay, id=f"{cls.__name__}-{reset}-delay{delay}")
    for cls in (snn.Leaky, snn.Synaptic)
    for reset in ("subtract", "zero", "none")
    for delay in ((True, False) if cls is snn.Leaky else (True,))
]


GRID_SURROGATES = {**SURROGATES, "default": lambda: None}  # None: snnTorch's default (atan)


@pytest.mark.parametrize("surrogate_name", ["default", "atan", "fast_sigmoid"])
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per-neuron"])
@pytest.mark.parametrize("neuron_cls,reset,reset_delay", GRID)
def test_neuron_grid_equal_snntorch_with_gradients(
    neuron_cls, reset, reset_delay, per_neuron, surrogate_name
):
    model = _two_layer_mlp(
        neuron_cls,
        reset=reset,
        reset_delay=reset_delay,
        spike_grad=GRID_SURROGATES[surrogate_name],
        per_neuron=per_neuron,
        learn=per_neuron,
        output=not per_neuron,
    )
    x = random_inputs(1, 16, 4, (12,), p=0.4)
    rec = snntorch_loop(model, x)
    _assert_active(rec)
    ref_grads = _grads(model, _weighted_loss(rec.layer_spikes))
    res = _sim(model, x)
    _assert_same_run(res, rec)
    grads = _grads(model, _weighted_loss(res.layer_spikes))
    _assert_grads_close(grads, ref_grads)


@pytest.mark.parametrize("pool", [None, nn.AvgPool2d, nn.MaxPool2d])
@pytest.mark.parametrize(
    "stride,padding,bias", [(1, 0, True), (2, 1, False), (1, 1, True), (2, 0, True)]
)
def test_conv_grid_equal_snntorch_with_gradients(stride, padding, bias, pool):
    torch.manual_seed(3)
    conv = nn.Conv2d(2, 4, 3, stride=stride, padding=padding, bias=bias)
    with torch.no_grad():
        conv.weight.mul_(4.0).add_(0.05)
    mods = [conv] + ([pool(2)] if pool else [])
    mods += [snn.Leaky(beta=0.8, init_hidden=True), nn.Flatten()]
    with torch.no_grad():
        flat = nn.Sequential(*mods[:-2], nn.Flatten())(torch.zeros(1, 2, 9, 9)).shape[1]
    lin = nn.Linear(flat, 6)
    with torch.no_grad():
        lin.weight.mul_(3.0).add_(0.3 / flat)
    model = nn.Sequential(
        *mods,
        nn.Dropout(0.5),
        nn.Identity(),
        lin,
        snn.Synaptic(alpha=0.5, beta=0.8, init_hidden=True, output=True),
    ).eval()
    x = random_inputs(2, 10, 3, (2, 9, 9), p=0.4)
    rec = snntorch_loop(model, x)
    _assert_active(rec)
    ref_grads = _grads(model, _weighted_loss(rec.layer_spikes))
    res = _sim(model, x)
    _assert_same_run(res, rec)
    _assert_grads_close(_grads(model, _weighted_loss(res.layer_spikes)), ref_grads)


def test_dropout_in_training_mode_draws_the_same_masks():
    """In training mode dropout is active; LayerSync calls it in snnTorch's order, same RNG."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Dropout(0.3),
        nn.Linear(10, 12),
        snn.Leaky(beta=0.8, init_hidden=True),
        nn.Dropout(0.2),
        nn.Linear(12, 4),
        snn.Leaky(beta=0.8, init_hidden=True),
    ).train()
    with torch.no_grad():
        for m in (model[1], model[4]):
            m.weight.mul_(3.0).add_(0.1)
    x = random_inputs(3, T, B, (10,))
    # No warm-up call: reading the model (first call) must not draw from the RNG either.
    torch.manual_seed(123)
    rec = snntorch_loop(model, x)
    _assert_active(rec)
    torch.manual_seed(123)
    res = _sim(model, x)
    _assert_same_run(res, rec)
    torch.manual_seed(124)
    assert not torch.equal(_sim(model, x).layer_spikes[0], rec.layer_spikes[0])


@settings(max_examples=25, deadline=None)
@given(
    synaptic=st.booleans(),
    reset=st.sampled_from(["subtract", "zero", "none"]),
    reset_delay=st.booleans(),
    beta=st.floats(0.0, 1.2),
    alpha=st.floats(0.0, 1.0),
    threshold=st.floats(0.1, 2.0),
    seed=st.integers(0, 2**16),
)
def test_single_layer_property_equal_snntorch(
    synaptic, reset, reset_delay, beta, alpha, threshold, seed
):
    torch.manual_seed(seed)
    lin = nn.Linear(6, 4)
    with torch.no_grad():
        lin.weight.mul_(3.0)
    kw = dict(beta=beta, threshold=threshold, init_hidden=True, reset_mechanism=reset)
    neuron = (
        snn.Synaptic(alpha=alpha, **kw) if synaptic else snn.Leaky(reset_delay=reset_delay, **kw)
    )
    model = nn.Sequential(lin, neuron)
    x = random_inputs(seed, 8, 2, (6,), real=bool(seed % 2))
    with torch.no_grad():
        rec = snntorch_loop(model, x)
        _assert_same_run(_sim(model, x), rec)


# ---------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------


def _weighted_loss(layer_spikes) -> torch.Tensor:
    """A fixed random weighting of every layer's spike record (same weights on both sides)."""
    gen = torch.Generator().manual_seed(99)
    loss = 0.0
    for s in layer_spikes:
        w = torch.randn(s.shape, generator=gen).to(s.device, s.dtype)
        loss = loss + (s * w).sum()
    return loss


def _grads(model: nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _assert_grads_close(ours, theirs) -> None:
    assert ours.keys() == theirs.keys()
    assert any(bool(g.abs().sum() > 0) for g in theirs.values()), "reference gradients all zero"
    for name in theirs:
        assert bool(torch.isfinite(theirs[name]).all()), f"reference gradient of {name} not finite"
        torch.testing.assert_close(
            ours[name], theirs[name], rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}"
        )


@pytest.mark.parametrize("seed", range(30))
def test_random_model_gradients_equal_snntorch(seed):
    case = random_model(seed)
    model = case.model
    x = random_inputs(seed, T, B, case.input_shape, real=seed % 3 == 0)
    rec = snntorch_loop(model, x)
    ref = _grads(model, _weighted_loss(rec.layer_spikes))
    res = sa.simulate(model, x, record=sa.Record(layer_spikes=True))
    assert torch.equal(res.spikes, rec.spikes)
    ours = _grads(model, _weighted_loss(res.layer_spikes))
    # Every parameter of the model gets a gradient on both sides (learnable beta/threshold too).
    assert set(ref) == {n for n, p in model.named_parameters() if p.requires_grad}
    _assert_grads_close(ours, ref)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("seed", range(200, 206))
def test_ce_rate_loss_gradients_equal_snntorch(seed, device):
    case = random_model(seed)
    model = case.model.to(device)
    x = random_inputs(seed, T, 4, case.input_shape, device=device)
    rec = snntorch_loop(model, x)
    C = rec.spikes.shape[-1]
    targets = torch.arange(4, device=device) % C
    loss_fn = SF.ce_rate_loss()
    ref = _grads(model, loss_fn(rec.spikes, targets))
    res = sa.simulate(model, x)
    assert torch.equal(res.spikes, rec.spikes)
    _assert_grads_close(_grads(model, loss_fn(res.spikes, targets)), ref)


# ---------------------------------------------------------------------------------------------
# Semantics: zero initial state, snnTorch's hidden state untouched
# ---------------------------------------------------------------------------------------------


def test_every_call_starts_from_zero_state_and_leaves_hidden_state_alone():
    case = random_model(5, kind="mlp")
    model = case.model
    x = random_inputs(5, T, B, case.input_shape)
    neurons = [m for m in model.modules() if isinstance(m, snn.SpikingNeuron)]
    with torch.no_grad():
        model(x[0])  # give snnTorch some hidden state of its own
        before = [m.mem.clone() for m in neurons]
        first = sa.simulate(model, x).spikes
        second = sa.simulate(model, x).spikes
        after = [m.mem for m in neurons]
    assert torch.equal(first, second)
    for b, a in zip(before, after):
        assert torch.equal(b, a)
    # And it equals a fresh snnTorch run, i.e. it ignored the hidden state.
    with torch.no_grad():
        assert torch.equal(first, run_snntorch(model, x))


# ---------------------------------------------------------------------------------------------
# AsyncNetwork: a drop-in nn.Module
# ---------------------------------------------------------------------------------------------


def test_async_network_shares_parameters_and_gradients():
    case = random_model(9)
    model = case.model
    net = sa.AsyncNetwork(model)
    ours = list(net.parameters())
    theirs = list(model.parameters())
    assert len(ours) == len(theirs) and all(a is b for a, b in zip(ours, theirs))
    assert dict(net.named_buffers()).keys() == {f"model.{k}" for k, _ in model.named_buffers()}
    x = random_inputs(9, T, B, case.input_shape)
    out = net(x)
    assert out.shape == (T, B, sa.read_model(model, case.input_shape).output_size)
    with torch.no_grad():
        assert torch.equal(out, run_snntorch(model, x))
    _weighted_loss([out]).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert isinstance(net.run(x), sa.SimulationResult)


@pytest.mark.parametrize("device", DEVICES)
def test_async_network_in_an_optimizer_loop_matches_snntorch_training(device):
    case = random_model(11)
    ours_model = case.model.to(device)
    ref_model = copy.deepcopy(ours_model)
    net = sa.AsyncNetwork(ours_model)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    ref_opt = torch.optim.Adam(ref_model.parameters(), lr=1e-2)
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.2)
    for step in range(4):
        x = random_inputs(step, T, 4, case.input_shape, device=device)
        targets = torch.arange(4, device=device) % 3
        opt.zero_grad()
        loss = loss_fn(net(x), targets)
        loss.backward()
        opt.step()
        ref_opt.zero_grad()
        ref_loss = loss_fn(run_snntorch(ref_model, x), targets)
        ref_loss.backward()
        ref_opt.step()
        torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    changed = False
    for (name, p), q in zip(ours_model.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    for p, p0 in zip(ours_model.parameters(), random_model(11).model.parameters()):
        changed |= not torch.equal(p.detach().cpu(), p0.detach())
    assert changed, "the optimizer did not change any parameter"
