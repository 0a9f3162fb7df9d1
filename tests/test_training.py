"""fit / train_step: training through a scheduler, exact resume, interrupts, clear errors."""

import functools
import signal

import pytest
import snntorch as snn
import snntorch.functional as SF
import torch
from snntorch import surrogate
from torch import nn
from torch.utils.data import DataLoader

from snntorch_async import AsyncNetwork, LayerSync, simulate
from snntorch_async.data import SpikeDataset, collate_time_major, make_loader
from snntorch_async.errors import ConfigError, InputError
from snntorch_async.training import (
    CheckpointError,
    TrainConfig,
    TrainingError,
    TrainingInterrupted,
    fit,
    load_checkpoint,
    train_step,
)

T, N_IN, N_CLASSES = 8, 12, 3


def _net(seed=0, hidden=16, dropout=0.0, **neuron):
    torch.manual_seed(seed)
    kw = dict(beta=0.8, threshold=0.5, init_hidden=True, spike_grad=surrogate.fast_sigmoid())
    kw.update(neuron)
    return nn.Sequential(
        nn.Linear(N_IN, hidden),
        snn.Leaky(**kw),
        nn.Dropout(dropout),
        nn.Linear(hidden, N_CLASSES),
        snn.Leaky(**kw, output=True),
    )


def _dataset(n=48, seed=0):
    """Class c drives inputs 4c..4c+3 at rate 0.6; the others fire at rate 0.1."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, N_CLASSES, (n,), generator=g)
    rate = torch.full((n, N_IN), 0.1)
    for c in range(N_CLASSES):
        rate[y == c, 4 * c : 4 * c + 4] = 0.6
    x = (torch.rand(n, T, N_IN, generator=g) < rate.unsqueeze(1)).to(torch.uint8)
    return SpikeDataset(x, y)


def _cfg(tmp_path=None, **kw):
    base = dict(epochs=2, lr=5e-3, seed=0)
    if tmp_path is not None:
        base["checkpoint_path"] = str(tmp_path / "ck.pt")
    base.update(kw)
    return TrainConfig(**base)


def test_fit_learns_and_returns_history():
    loader = make_loader(_dataset(96), batch_size=16, shuffle=True, seed=0)
    h = fit(
        _net(),
        loader,
        scheduler=LayerSync(),
        config=_cfg(epochs=4, lr=2e-2),
        eval_data=make_loader(_dataset(48, seed=1), batch_size=24),
        progress=False,
    )
    assert h.epochs_completed == 4 and len(h.loss) == len(h.accuracy) == 4
    assert len(h.step_loss) == 4 * 6 and len(h.eval_accuracy) == 4
    assert h.loss[-1] < h.loss[0]
    assert h.accuracy[-1] > 0.6 and h.eval_accuracy[-1] > 0.6  # chance is 1/3
    assert all(0 < d < 1 for d in h.spike_density) and not h.interrupted


def _two_loaders():
    ds = _dataset(40)
    ours = make_loader(ds, batch_size=8, shuffle=True, seed=5)
    plain = DataLoader(ds, batch_size=8, shuffle=True, collate_fn=collate_time_major)
    return [ours, plain]


@pytest.mark.parametrize("which", [0, 1], ids=["EpochShuffleSampler", "RandomSampler"])
def test_resume_after_an_epoch_reproduces_the_uninterrupted_losses(tmp_path, which):
    # dropout draws from torch's global RNG, so the RNG state must be restored exactly
    straight = fit(
        _net(dropout=0.2),
        _two_loaders()[which],
        scheduler=LayerSync(),
        config=_cfg(),
        progress=False,
    )
    first = fit(
        _net(dropout=0.2),
        _two_loaders()[which],
        scheduler=LayerSync(),
        config=_cfg(tmp_path, epochs=1),
        progress=False,
    )
    torch.manual_seed(123)  # disturb every generator between the runs
    resumed = fit(
        _net(seed=7, dropout=0.2),
        _two_loaders()[which],
        scheduler=LayerSync(),
        config=_cfg(tmp_path, epochs=2),
        resume=True,
        progress=False,
    )
    assert first.step_loss == straight.step_loss[:5]
    assert resumed.step_loss == straight.step_loss
    assert resumed.loss == straight.loss and resumed.accuracy == straight.accuracy


def test_checkpoint_is_weights_only_and_complete(tmp_path):
    fit(
        _net(),
        make_loader(_dataset(16), batch_size=8),
        scheduler=LayerSync(),
        config=_cfg(tmp_path, epochs=1),
        progress=False,
    )
    ck = torch.load(tmp_path / "ck.pt", weights_only=True)
    assert {"model", "optimizer", "rng", "epoch", "batch", "step", "history", "fingerprint"} <= set(
        ck
    )
    assert ck["epoch"] == 1 and ck["batch"] == 0 and ck["step"] == 2
    assert set(ck["rng"]) >= {"torch", "python", "numpy"}
    assert load_checkpoint(tmp_path / "ck.pt")["history"]["epochs_completed"] == 1
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


class _SigintAt:
    """A loss that sends Ctrl-C to this process during its n-th call."""

    def __init__(self, n, hard=False):
        self.n, self.calls, self.hard, self.loss = n, 0, hard, SF.ce_rate_loss()

    def __call__(self, spk, y):
        self.calls += 1
        if self.calls == self.n:
            if self.hard:
                raise KeyboardInterrupt
            signal.raise_signal(signal.SIGINT)
        return self.loss(spk, y)


def test_ctrl_c_saves_mid_epoch_and_resume_is_exact(tmp_path):
    loader = lambda: make_loader(_dataset(40), batch_size=8, shuffle=True, seed=1)  # noqa: E731
    straight = fit(
        _net(dropout=0.1), loader(), scheduler=LayerSync(), config=_cfg(), progress=False
    )
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    with pytest.raises(TrainingInterrupted) as info:
        fit(
            _net(dropout=0.1),
            loader(),
            scheduler=LayerSync(),
            config=_cfg(tmp_path, loss=_SigintAt(3)),
            progress=False,
        )
    assert (
        info.value.history.interrupted and len(info.value.history.step_loss) == 3
    )  # step finished
    assert isinstance(info.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGINT) is before  # whatever handler was there is restored
    ck = load_checkpoint(info.value.checkpoint_path)
    assert (ck["epoch"], ck["batch"]) == (0, 3)
    resumed = fit(
        _net(seed=3, dropout=0.1),
        loader(),
        scheduler=LayerSync(),
        config=_cfg(tmp_path),
        resume=True,
        progress=False,
    )
    assert resumed.step_loss == straight.step_loss and resumed.loss == straight.loss
    assert not resumed.interrupted


def test_interrupt_inside_a_step_keeps_the_last_consistent_checkpoint(tmp_path):
    loader = make_loader(_dataset(40), batch_size=8)
    with pytest.raises(TrainingInterrupted) as info:
        fit(
            _net(),
            loader,
            scheduler=LayerSync(),
            config=_cfg(tmp_path, loss=_SigintAt(4, hard=True), checkpoint_every=2),
            progress=False,
        )
    assert load_checkpoint(info.value.checkpoint_path)["step"] == 2
    straight = fit(_net(), loader, scheduler=LayerSync(), config=_cfg(epochs=1), progress=False)
    resumed = fit(
        _net(seed=9),
        loader,
        scheduler=LayerSync(),
        config=_cfg(tmp_path, epochs=1),
        resume=True,
        progress=False,
    )
    assert resumed.step_loss == straight.step_loss


def test_checkpoint_from_another_architecture_or_seed(tmp_path):
    loader = make_loader(_dataset(16), batch_size=8)
    fit(_net(), loader, scheduler=LayerSync(), config=_cfg(tmp_path, epochs=1), progress=False)
    with pytest.raises(CheckpointError, match=r"different architecture.*0.weight:\[20, 12\]"):
        fit(
            _net(hidden=20),
            loader,
            scheduler=LayerSync(),
            config=_cfg(tmp_path),
            resume=True,
            progress=False,
        )
    with pytest.raises(CheckpointError, match="seed 0, the config has seed 1"):
        fit(
            _net(),
            loader,
            scheduler=LayerSync(),
            config=_cfg(tmp_path, seed=1),
            resume=True,
            progress=False,
        )


class _Code:  # a pickled object whose unpickling would run code
    def __reduce__(self):
        return (print, ("this must never run",))


def test_damaged_checkpoints_are_diagnosed_without_unsafe_advice(tmp_path, capsys):
    good = tmp_path / "ck.pt"
    fit(
        _net(),
        make_loader(_dataset(16), batch_size=8),
        scheduler=LayerSync(),
        config=_cfg(tmp_path, epochs=1),
        progress=False,
    )
    data = good.read_bytes()
    cases = {
        "empty.pt": (b"", "the file is empty \\(0 bytes\\)"),
        "junk.pt": (b"not a checkpoint", "not a PyTorch checkpoint \\(16 bytes"),
        "truncated.pt": (data[: len(data) // 2], "truncated or damaged"),
    }
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=match) as info:
            load_checkpoint(tmp_path / name)
        assert "weights_only=False" not in str(info.value) and "\n" not in str(info.value)
    torch.save({"format": 1, "x": _Code()}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="holds pickled Python objects.*never loaded"):
        load_checkpoint(tmp_path / "code.pt")
    assert "this must never run" not in capsys.readouterr().out
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a snntorch_async training checkpoint"):
        load_checkpoint(tmp_path / "list.pt")


def test_neuron_without_surrogate_gradient_is_named():
    model = _net()
    model[4] = snn.Leaky(beta=0.8, init_hidden=True, output=True, surrogate_disable=True)
    with pytest.raises(TrainingError, match=r"'4' \(Leaky, surrogate_disable=True\).*spike_grad="):
        fit(
            model,
            make_loader(_dataset(16), batch_size=8),
            scheduler=LayerSync(),
            config=_cfg(epochs=1),
            progress=False,
        )


class _BoxSurrogate(torch.autograd.Function):
    """Heaviside forward; gradient 1 only within 0.5 of the threshold, 0 elsewhere."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() < 0.5).to(grad.dtype)


def test_all_zero_gradients_after_first_backward():
    # the surrogate passes the up-front probe (non-zero near threshold), but the network is far
    # below threshold everywhere, so no parameter gets a gradient in the first step
    model = _net(threshold=100.0, spike_grad=_BoxSurrogate.apply)
    with pytest.raises(TrainingError, match="zero or missing gradient"):
        fit(
            model,
            make_loader(_dataset(16), batch_size=8),
            scheduler=LayerSync(),
            config=_cfg(epochs=1),
            progress=False,
        )


def test_truncated_bptt_same_loss_value_bounded_graph():
    ds = _dataset(8)
    batch = collate_time_major([ds[i] for i in range(8)])
    losses, grads = {}, {}
    for k in (None, T, 3):
        model = _net()
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        s = train_step(
            model,
            batch,
            scheduler=LayerSync(),
            optimizer=opt,
            loss_fn=SF.ce_rate_loss(),
            truncate_steps=k,
        )
        losses[k], grads[k] = s.loss, model[0].weight.grad.clone()
    assert losses[T] == losses[None] and torch.equal(grads[T], grads[None])
    # same forward pass (state carried between chunks), ce_rate_loss averages over time
    assert losses[3] == pytest.approx(losses[None], rel=1e-6)
    assert not torch.allclose(grads[3], grads[None])  # the gradient is truncated


def test_step_stats_match_simulate():
    ds = _dataset(8)
    x, y = collate_time_major([ds[i] for i in range(8)])
    model = _net()
    with torch.no_grad():
        res = simulate(model, x)
        expected = float(SF.ce_rate_loss()(res.spikes, y))
        correct = int((res.spikes.sum(0).argmax(-1) == y).sum())
    s = train_step(
        model,
        (x, y),
        scheduler=LayerSync(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
        loss_fn=SF.ce_rate_loss(),
    )
    assert s.loss == pytest.approx(expected) and s.correct == correct and s.samples == 8


def test_async_network_and_optimizer_factory():
    net = AsyncNetwork(_net(), scheduler=LayerSync())
    h = fit(
        net,
        make_loader(_dataset(16), batch_size=8),
        scheduler=LayerSync(),
        config=_cfg(
            epochs=1,
            optimizer=functools.partial(torch.optim.SGD, momentum=0.9),
            max_batches=1,
            loss=SF.mse_count_loss(),
        ),
        progress=False,
    )
    assert len(h.step_loss) == 1


def test_bad_config_and_batches():
    with pytest.raises(ConfigError, match="epochs must be None or a positive int"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="lr must be a positive number"):
        TrainConfig(lr=-1)
    bad = [(torch.zeros(4, T, N_IN), torch.zeros(4, dtype=torch.long))]  # batch-first
    with pytest.raises(ConfigError, match="resume=True\\) needs TrainConfig.checkpoint_path"):
        fit(_net(), bad, scheduler=LayerSync(), config=_cfg(), resume=True)
    with pytest.raises(InputError, match=r"time-major.*x.transpose\(0, 1\)"):
        fit(_net(), bad, scheduler=LayerSync(), config=_cfg(epochs=1), progress=False)
    with pytest.raises(ConfigError, match="snntorch_async scheduler"):
        fit(_net(), [], scheduler="sync", config=_cfg())


def test_reading_a_model_does_not_draw_from_the_global_rng():
    # graph reading probes the ops; with nn.Dropout in training mode that must not consume the
    # user's RNG, or results would depend on graph-cache hits (and resume would not be exact)
    from snntorch_async.graph import read_model

    model = _net(dropout=0.5)
    state = torch.get_rng_state()
    read_model(model, (N_IN,))
    assert torch.equal(torch.get_rng_state(), state)


# ------------------------------------------------------------------------------------------
# The same fit through the asynchronous schedulers.
# ------------------------------------------------------------------------------------------
from snntorch_async.schedulers.asynchronous import (  # noqa: E402
    LayerOrderedAsync,
    MomentumAsync,
    RandomAsync,
)


@pytest.mark.parametrize(
    "sched",
    [
        RandomAsync(forward_group_size=4, seed=1),
        MomentumAsync(forward_group_size=4, spike_dropout=0.1),
    ],
    ids=["random", "momentum"],
)
def test_async_training_resumes_exactly(tmp_path, sched):
    loader = lambda: make_loader(_dataset(24), batch_size=8, shuffle=True, seed=2)  # noqa: E731
    straight = fit(_net(), loader(), scheduler=sched, config=_cfg(), progress=False)
    fit(_net(), loader(), scheduler=sched, config=_cfg(tmp_path, epochs=1), progress=False)
    resumed = fit(
        _net(seed=4), loader(), scheduler=sched, config=_cfg(tmp_path), resume=True, progress=False
    )
    assert resumed.step_loss == straight.step_loss and len(straight.step_loss) == 6
    assert all(0 < d < 1 for d in straight.spike_density)


def test_one_flag_sync_vs_async_at_full_parallelism():
    # F = all pending at once, layer order, silent-gradient carriers and full-layer evaluation:
    # the asynchronous engine reproduces LayerSync's spikes and gradients, so fit gives the same
    # losses (to rounding); with F = 2 the dynamics (and losses) differ
    loader = make_loader(_dataset(24), batch_size=8)
    sync = fit(_net(), loader, scheduler=LayerSync(), config=_cfg(), progress=False)
    anchor = LayerOrderedAsync(forward_group_size=None, silent_gradients=True)
    asyn = fit(_net(), loader, scheduler=anchor, config=_cfg(), progress=False)
    assert asyn.step_loss == pytest.approx(sync.step_loss, rel=1e-5, abs=1e-6)
    serial = fit(
        _net(), loader, scheduler=RandomAsync(forward_group_size=2), config=_cfg(), progress=False
    )
    assert serial.step_loss != pytest.approx(sync.step_loss, rel=1e-5, abs=1e-6)


def test_truncated_bptt_through_an_async_scheduler():
    ds = _dataset(8)
    batch = collate_time_major([ds[i] for i in range(8)])
    sched = RandomAsync(forward_group_size=3, seed=5)
    out = {}
    for k in (None, 3):
        model = _net()
        s = train_step(
            model,
            batch,
            scheduler=sched,
            loss_fn=SF.ce_rate_loss(),
            optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
            truncate_steps=k,
        )
        out[k] = (s.loss, model[0].bias.grad.clone(), model[3].bias.grad.clone())
    # the carried state keeps the scheduler's generator: same spikes, same ce_rate_loss value
    assert out[3][0] == pytest.approx(out[None][0], rel=1e-6)
    # the bias currents are rebuilt for every chunk (Scheduler.carry), so biases keep learning
    assert out[3][2].abs().sum() > 0 and out[3][1].abs().sum() > 0


@pytest.mark.parametrize("handler", [signal.SIG_IGN, "custom"])
def test_ctrl_c_handler_of_the_caller_is_restored(handler):
    custom = lambda signum, frame: None  # noqa: E731
    handler = custom if handler == "custom" else handler
    old = signal.signal(signal.SIGINT, handler)
    try:
        with pytest.raises(TrainingInterrupted):
            fit(
                _net(),
                make_loader(_dataset(16), batch_size=8),
                scheduler=LayerSync(),
                config=_cfg(epochs=1, loss=_SigintAt(1)),
                progress=False,
            )
        assert signal.getsignal(signal.SIGINT) is handler
        fit(
            _net(),
            make_loader(_dataset(16), batch_size=8),
            scheduler=LayerSync(),
            config=_cfg(epochs=1),
            progress=False,
        )
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, old)


def test_no_batches_and_bad_targets_are_refused():
    with pytest.raises(InputError, match=r"fit\(\) got train_data with no batches"):
        fit(_net(), [], scheduler=LayerSync(), config=_cfg(epochs=1), progress=False)
    with pytest.raises(InputError, match="yielded no batches in epoch 1.*re-iterable"):
        fit(_net(), iter([]), scheduler=LayerSync(), config=_cfg(epochs=1), progress=False)
    x = torch.zeros(T, 4, N_IN)
    out_of_range = [(x, torch.tensor([0, 1, 2, 3]))]
    with pytest.raises(
        InputError,
        match=r"targets must lie in 0 .. 2 \(the model has 3 output "
        r"neurons\); got values from 0 to 3. Fix",
    ):
        fit(_net(), out_of_range, scheduler=LayerSync(), config=_cfg(epochs=1), progress=False)
    negative = [(x, torch.tensor([0, -1, 2, 1]))]
    with pytest.raises(InputError, match="got values from -1 to 2"):
        fit(_net(), negative, scheduler=LayerSync(), config=_cfg(epochs=1), progress=False)
    floats = [(x, torch.tensor([0.0, 1.0, 2.0, 1.0]))]
    with pytest.raises(
        InputError,
        match=r"integer class indices \[B\]; got dtype torch.float32.*"
        r"targets.long\(\)",
    ):
        fit(_net(), floats, scheduler=LayerSync(), config=_cfg(epochs=1), progress=False)


def test_checkpoint_metadata_is_stored_inside(tmp_path):
    fit(
        _net(),
        make_loader(_dataset(16), batch_size=8),
        scheduler=LayerSync(),
        config=_cfg(tmp_path, epochs=1, metadata={"recipe": [1, "a", None]}),
        progress=False,
    )
    assert load_checkpoint(tmp_path / "ck.pt")["metadata"] == {"recipe": [1, "a", None]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
