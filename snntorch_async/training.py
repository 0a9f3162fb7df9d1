"""Training through any scheduler: :func:`train_step` and :func:`fit`.

``fit(model, data, scheduler=LayerSync(), config=TrainConfig(...))`` trains the user's snnTorch
model with backpropagation through the chosen scheduler's dynamics: ``LayerSync()`` gives the
paper's layer-synchronously trained baseline, an asynchronous scheduler gives unlayered backprop
(gradients flow through every forward step, with the surrogate of each neuron's own
``spike_grad``). Switching between the two is the ``scheduler`` argument only.

Checkpoints (``TrainConfig.checkpoint_path``) are written atomically (temporary file, then
``os.replace``) and hold only tensors and primitive containers, so they load with
``torch.load(..., weights_only=True)``. They contain the model and optimizer state, every random
number generator (torch CPU/CUDA, Python ``random``, NumPy), the position (epoch, batch), the
history and a fingerprint of the architecture. The data order of epoch ``e`` is a function of
``(seed, e)`` (see :func:`_set_epoch`), so ``fit(..., resume=True)`` continues with exactly the
losses an uninterrupted run would have had.

Ctrl-C during ``fit`` finishes the current step, saves a checkpoint (when a path is configured)
and raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt`` carrying the history); a second
Ctrl-C interrupts at once.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np
import snntorch.functional as SF
import torch
from torch import Tensor, nn
from torch.utils.data import RandomSampler

from .checkpoint import (
    FORMAT,
    CheckpointError,
    architecture,
    check_architecture,
    fingerprint,
    load_checkpoint,
    rng_state,
    save_atomic,
    set_rng_state,
)
from .data.loading import unpack_batch
from .errors import ConfigError, InputError, SnnTorchAsyncError
from .metrics import evaluate, is_binary, sample_metrics
from .schedulers.asynchronous import AsyncScheduler
from .schedulers.base import Scheduler
from .simulate import AsyncNetwork, get_graph, simulate

__all__ = [
    "TrainConfig",
    "StepStats",
    "History",
    "train_step",
    "fit",
    "TrainingError",
    "CheckpointError",
    "TrainingInterrupted",
    "load_checkpoint",
]

log = logging.getLogger(__name__)


class TrainingError(SnnTorchAsyncError, RuntimeError):
    """Training cannot make progress (e.g. no gradient reaches the parameters)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Raised by :func:`fit` after Ctrl-C; ``.history`` so far, ``.checkpoint_path`` (or None)."""

    def __init__(self, history: "History", checkpoint_path: str | None) -> None:
        super().__init__(f"training interrupted; checkpoint: {checkpoint_path}")
        self.history = history
        self.checkpoint_path = checkpoint_path


def _positive_or_none(name: str, value, kind=int) -> None:
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) or value <= 0):
        raise ConfigError(f"TrainConfig.{name} must be None or a positive {kind.__name__}; got {value!r}.")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Settings of :func:`fit`.

    Attributes:
        epochs: Total number of epochs (a resumed run trains until this many are done).
        lr: Learning rate passed to ``optimizer``.
        optimizer: Factory ``(params, lr=...) -> torch.optim.Optimizer`` (default Adam; use
            ``functools.partial(torch.optim.SGD, momentum=0.9)`` for other settings).
        loss: ``(spk_rec [T, B, C], targets [B]) -> scalar`` (default
            ``snntorch.functional.ce_rate_loss()``; ``ce_count_loss()``, ``mse_count_loss()`` work).
        seed: Seeds torch, Python and NumPy at the start of a fresh run, and the data order.
        checkpoint_path: Where to save checkpoints (after every epoch, every
            ``checkpoint_every`` steps, and on Ctrl-C). ``None``: no checkpoints.
        checkpoint_every: Also save every this many optimizer steps.
        grad_clip: Clip the gradient norm to this value (``None``: no clipping).
        max_batches: Train on at most this many batches per epoch (quick runs).
        truncate_steps: Truncated BPTT: run ``k`` time steps at a time, back-propagate each
            chunk's loss (weighted by its share of T) and detach the state between chunks, so
            the autograd graph holds at most ``k`` steps (memory O(k) instead of O(T)).
        device: Move the model and batches there (``None``: the model's device).
        metadata: Primitives (str, int, float, bool, None, lists and dicts of them) stored in
            every checkpoint under ``"metadata"`` (the command line stores how to rebuild the
            model there); read them back with :func:`snntorch_async.load_checkpoint`.
    """

    epochs: int = 1
    lr: float = 1e-3
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam
    loss: Callable[[Tensor, Tensor], Tensor] = field(default_factory=SF.ce_rate_loss)
    seed: int = 0
    checkpoint_path: str | os.PathLike | None = None
    checkpoint_every: int | None = None
    grad_clip: float | None = None
    max_batches: int | None = None
    truncate_steps: int | None = None
    device: str | torch.device | None = None
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _positive_or_none("epochs", self.epochs)
        _positive_or_none("checkpoint_every", self.checkpoint_every)
        _positive_or_none("max_batches", self.max_batches)
        _positive_or_none("truncate_steps", self.truncate_steps)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"TrainConfig.lr must be a positive number; got {self.lr!r}.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"TrainConfig.grad_clip must be None or > 0; got {self.grad_clip!r}.")
        if not callable(self.loss) or not callable(self.optimizer):
            raise ConfigError(
                "TrainConfig.loss and TrainConfig.optimizer must be callables, e.g. "
                "loss=snntorch.functional.ce_rate_loss(), optimizer=torch.optim.Adam."
            )


class StepStats(NamedTuple):
    """What one :func:`train_step` reports (plain Python numbers)."""

    loss: float
    correct: int
    samples: int
    spike_density: float


@dataclass
class History:
    """What :func:`fit` returns: per-epoch averages and every step's loss.

    Attributes:
        loss, accuracy, spike_density: Training averages per completed epoch.
        eval_accuracy, eval_spike_density: Per epoch on ``eval_data`` (empty without it).
        step_loss: The loss of every optimizer step, in order.
        epochs_completed: Completed epochs.
        interrupted: ``True`` if the run stopped on Ctrl-C.
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    spike_density: list[float] = field(default_factory=list)
    eval_accuracy: list[float] = field(default_factory=list)
    eval_spike_density: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    epochs_completed: int = 0
    interrupted: bool = False
    running: dict[str, float] = field(default_factory=dict)  # sums of the epoch in progress

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "History":
        return cls(**d)


# --------------------------------------------------------------------------------------------
# One step.
# --------------------------------------------------------------------------------------------
def _batch(batch, device) -> tuple[Tensor, Tensor]:
    x, y = unpack_batch(batch, targets=True)
    return x.to(device), y.to(device)


def _check_targets(y: Tensor, num_classes: int) -> None:
    """Refuse targets that are not class indices ``0 .. num_classes - 1``."""
    if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise InputError(
            f"The targets must be integer class indices [B]; got dtype {y.dtype} (values "
            f"{y[:4].tolist()}...). Fix: pass labels as torch.long, e.g. targets.long(), not "
            "one-hot or probabilities."
        )
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise InputError(
            f"The targets must lie in 0 .. {num_classes - 1} (the model has {num_classes} output "
            f"neurons); got values from {lo} to {hi}. Fix: relabel the classes, or give the "
            "output layer one neuron per class."
        )


def train_step(
    model: nn.Module,
    batch,
    *,
    scheduler: Scheduler,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    grad_clip: float | None = None,
    truncate_steps: int | None = None,
) -> StepStats:
    """One optimisation step: simulate under ``scheduler``, back-propagate, update.

    Args:
        model: The user's snnTorch ``nn.Sequential``.
        batch: ``(inputs [T, B, *features], targets [B])``.
        scheduler: Execution mode to train through.
        optimizer: Optimizer over ``model.parameters()``.
        loss_fn: ``(spk_rec [T, B, C], targets) -> scalar``.
        grad_clip: Max gradient norm, or ``None``.
        truncate_steps: Back-propagate in chunks of this many time steps (see
            :class:`TrainConfig`); the loss reported is ``Σ_chunks (len_c / T) · loss(chunk)``,
            which equals the full loss for losses that average over time (``ce_rate_loss``).

    Returns:
        :class:`StepStats` of the batch (loss, correct predictions, spike density).
    """
    p = next(model.parameters(), None)
    x, y = _batch(batch, p.device if p is not None else "cpu")
    T = x.shape[0]
    k = T if truncate_steps is None else int(truncate_steps)
    optimizer.zero_grad(set_to_none=True)
    state, results, total = None, [], 0.0
    for s in range(0, T, k):
        res = simulate(model, x[s : s + k], scheduler=scheduler, initial_state=state)
        if s == 0:
            _check_targets(y, res.spikes.shape[-1])
        loss = loss_fn(res.spikes, y)
        if not torch.is_tensor(loss) or loss.numel() != 1:
            raise TrainingError(f"The loss must return a scalar tensor; got {loss!r}.")
        if not loss.requires_grad:
            raise TrainingError(
                "The loss does not depend on any parameter (no gradient): the output spikes carry "
                "no autograd graph. Usually a neuron has surrogate_disable=True or a spike_grad "
                "without a gradient. Fix: give every neuron a surrogate, e.g. "
                "spike_grad=snntorch.surrogate.fast_sigmoid()."
            )
        w = res.spikes.shape[0] / T
        (loss * w if w != 1 else loss).backward()
        total += float(loss.detach()) * w
        state = res.final_state if s + k < T else None  # simulate detaches it (Scheduler.carry)
        results.append(dataclasses.replace(res, spikes=res.spikes.detach(), final_state=None))
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    res = results[0] if len(results) == 1 else dataclasses.replace(
        results[0],
        **{f: torch.cat([getattr(r, f) for r in results])
           for f in ("spikes", "spike_counts", "synops", "forward_steps")},
    )
    m = sample_metrics(res, y, binary_inputs=is_binary(x))
    return StepStats(total, int(m.correct.sum()), int(y.shape[0]), float(m.density.mean()))


# --------------------------------------------------------------------------------------------
# Checks.
# --------------------------------------------------------------------------------------------
def _check_surrogates(model: nn.Module, input_shape: tuple[int, ...]) -> None:
    """Raise if a neuron's ``spike_grad`` passes no gradient (checked before training)."""
    bad = []
    for layer in get_graph(model, input_shape).layers:
        probe = torch.linspace(-1.0, 1.0, 41, requires_grad=True)
        with torch.enable_grad():
            out = layer.neuron.spike_fn(probe)
            g = None
            if torch.is_tensor(out) and out.requires_grad:
                (g,) = torch.autograd.grad(out.sum(), probe, allow_unused=True)
        if g is None or not bool((g != 0).any()) or not bool(torch.isfinite(g).all()):
            m = layer.neuron.module
            how = "surrogate_disable=True" if getattr(m, "surrogate_disable", False) else (
                f"spike_grad={getattr(m.spike_grad, '__name__', type(m.spike_grad).__name__)}")
            bad.append(f"'{layer.path}' ({type(m).__name__}, {how})")
    if bad:
        raise TrainingError(
            f"The firing function of neuron(s) {', '.join(bad)} passes no (finite, non-zero) "
            "gradient near the threshold, so backpropagation cannot train the weights before "
            "them. Fix: construct them with a surrogate gradient, e.g. "
            "snn.Leaky(..., spike_grad=snntorch.surrogate.fast_sigmoid()) and "
            "surrogate_disable=False."
        )


def _check_gradients(model: nn.Module) -> None:
    """After the first backward pass: raise if no parameter received a non-zero gradient."""
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    if not any(g is not None and bool((g != 0).any()) for g in grads):
        raise TrainingError(
            f"After the first backward pass all {len(grads)} trainable parameters have a zero or "
            "missing gradient, so training cannot progress. Likely causes: a surrogate that is "
            "zero away from the threshold with a silent network, or a loss that ignores the "
            "output spikes. Fix: use a surrogate with wide support (snntorch.surrogate."
            "fast_sigmoid()), lower the thresholds or scale the inputs up."
        )


# --------------------------------------------------------------------------------------------
# fit.
# --------------------------------------------------------------------------------------------
def _set_epoch(loader, seed: int, epoch: int) -> None:
    """Make the data order of ``epoch`` a function of ``(seed, epoch)``."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler):
        sampler.generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class _SigintFlag:
    """Turn the first Ctrl-C into a flag checked between steps (main thread only)."""

    def __init__(self) -> None:
        self.hit, self._prev = False, None

    def _handler(self, signum, frame) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True
        log.warning("Ctrl-C: finishing the current step, then saving and stopping (again: stop now).")

    def __enter__(self) -> "_SigintFlag":
        # Whatever handler was there (default, SIG_IGN in a background job, the caller's own) is
        # put back on exit. A handler installed outside Python (getsignal() is None) cannot be
        # put back, so it is left alone and Ctrl-C keeps its behaviour there.
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is not None:
                self._prev = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._prev is not None:
            signal.signal(signal.SIGINT, self._prev)
            self._prev = None


def _epoch_means(run: dict[str, float]) -> tuple[float, float, float]:
    b, n = max(run.get("batches", 0), 1), max(run.get("samples", 0), 1)
    return run.get("loss", 0.0) / b, run.get("correct", 0) / n, run.get("density", 0.0) / b


def _step_scheduler(scheduler: Scheduler, step: int) -> Scheduler:
    """The scheduler for optimizer step ``step``: an asynchronous scheduler gets a seed derived
    from (its seed, step), so spike orders and dropout masks differ from batch to batch (its
    generator restarts at every ``simulate`` call) yet stay reproducible, resumes included."""
    if isinstance(scheduler, AsyncScheduler):
        return dataclasses.replace(scheduler, seed=(scheduler.seed * 1_000_003 + step) % 2**31)
    return scheduler


def fit(
    model: nn.Module,
    train_data: Iterable,
    *,
    scheduler: Scheduler,
    config: TrainConfig = TrainConfig(),
    eval_data: Iterable | None = None,
    eval_scheduler: Scheduler | None = None,
    resume: bool = False,
    progress: bool = True,
) -> History:
    """Train ``model`` on ``train_data`` through ``scheduler``.

    Args:
        model: The user's snnTorch ``nn.Sequential`` (or an :class:`AsyncNetwork`, unwrapped).
        train_data: Re-iterable batches ``(inputs [T, B, *features], targets [B])``, e.g. from
            :func:`snntorch_async.data.make_loader`.
        scheduler: ``LayerSync()`` (sync-trained baseline) or an asynchronous scheduler.
        config: :class:`TrainConfig`.
        eval_data: Evaluated after every epoch with :func:`snntorch_async.metrics.evaluate`.
        eval_scheduler: Scheduler for the evaluation (default: ``scheduler``).
        resume: Continue from ``config.checkpoint_path`` if it exists (else start fresh).
        progress: Show a tqdm progress bar.

    Returns:
        :class:`History` (also the one stored in the checkpoint).

    Raises:
        TrainingError: A neuron's ``spike_grad`` passes no gradient, or no parameter received a
            gradient in the first step.
        CheckpointError: The checkpoint belongs to another architecture or seed.
        TrainingInterrupted: On Ctrl-C, after saving a checkpoint (if a path is configured).
    """
    from tqdm.auto import tqdm

    if isinstance(model, AsyncNetwork):
        model = model.model
    if not isinstance(scheduler, Scheduler):
        raise ConfigError(f"scheduler must be a snntorch_async scheduler such as LayerSync(); got {scheduler!r}.")
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig; got {type(config).__name__}.")
    if hasattr(train_data, "__len__") and len(train_data) == 0:
        raise InputError(
            "fit() got train_data with no batches; expected at least one batch (inputs "
            "[T, B, *features], targets [B]). Fix: check the dataset is not empty (and that "
            "drop_last did not drop its only batch)."
        )
    if config.device is not None:
        model.to(config.device)
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    optimizer = config.optimizer(model.parameters(), lr=config.lr)
    path = Path(config.checkpoint_path) if config.checkpoint_path is not None else None
    history, epoch, skip, step = History(), 0, 0, 0
    ck = None
    if resume:
        if path is None:
            raise ConfigError("fit(resume=True) needs TrainConfig.checkpoint_path.")
        if path.exists():
            ck = load_checkpoint(path, map_location=device)
            check_architecture(ck, model, path)
            if ck["seed"] != config.seed:
                raise CheckpointError(
                    f"The checkpoint {str(path)!r} was trained with seed {ck['seed']}, the config "
                    f"has seed {config.seed}; resuming would not reproduce the run. Fix: "
                    f"TrainConfig(seed={ck['seed']}, ...) or resume=False."
                )
            if ck["scheduler"] != repr(scheduler):
                log.warning("Resuming with %r; the checkpoint was trained with %s.", scheduler, ck["scheduler"])
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            history = History.from_dict(ck["history"])
            epoch, skip, step = ck["epoch"], ck["batch"], ck["step"]
            log.info("Resuming from %s at epoch %d, batch %d.", path, epoch, skip)
        else:
            log.warning("resume=True but %s does not exist: starting a fresh run.", path)
    history.interrupted = False
    if ck is None:
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        np.random.seed(config.seed)
    elif skip == 0:
        set_rng_state(ck["rng"])
    arch = architecture(model)

    def save(ep: int, batch: int, rng) -> None:
        if path is None:
            return
        save_atomic({
            "format": FORMAT, "fingerprint": fingerprint(arch), "architecture": arch,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": rng,
            "epoch": ep, "batch": batch, "step": step, "seed": config.seed,
            "scheduler": repr(scheduler), "history": history.to_dict(),
            "metadata": config.metadata,
        }, path)
        log.debug("Checkpoint saved to %s (epoch %d, batch %d).", path, ep, batch)

    checked = ck is not None
    in_step, last_saved = False, (str(path) if ck is not None else None)
    with _SigintFlag() as flag:
        while epoch < config.epochs:
            model.train()
            _set_epoch(train_data, config.seed, epoch)
            total = len(train_data) if hasattr(train_data, "__len__") else None
            if config.max_batches is not None:
                total = config.max_batches if total is None else min(total, config.max_batches)
            # RNG snapshot matching position (epoch, b): at b = 0 it is taken before the data
            # iterator is created (creating it draws a seed), as a resumed run restores it then.
            snapshot = rng_state() if path is not None and not skip else None
            it = iter(train_data)
            for _ in range(skip):
                next(it)
            if skip:
                set_rng_state(ck["rng"])
                snapshot = ck["rng"]
            run = history.running if skip else {}
            bar = tqdm(total=total, initial=skip, disable=not progress, desc=f"epoch {epoch + 1}/{config.epochs}")
            b = skip
            try:
                for batch in it:
                    if config.max_batches is not None and b >= config.max_batches:
                        break
                    if not checked:
                        _check_surrogates(model, tuple(batch[0].shape[2:]))
                    in_step = True
                    s = train_step(model, batch, scheduler=_step_scheduler(scheduler, step),
                                   optimizer=optimizer,
                                   loss_fn=config.loss, grad_clip=config.grad_clip,
                                   truncate_steps=config.truncate_steps)
                    in_step = False
                    if not checked:
                        _check_gradients(model)
                        checked = True
                    b, step = b + 1, step + 1
                    history.step_loss.append(s.loss)
                    for key, v in (("loss", s.loss), ("correct", s.correct), ("samples", s.samples),
                                   ("density", s.spike_density), ("batches", 1)):
                        run[key] = run.get(key, 0) + v
                    history.running = run
                    bar.update(1)
                    bar.set_postfix(loss=f"{s.loss:.4f}")
                    if path is not None:
                        snapshot = rng_state()
                        if config.checkpoint_every and step % config.checkpoint_every == 0:
                            save(epoch, b, snapshot)
                            last_saved = str(path)
                    if flag.hit:
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                bar.close()
                history.interrupted = True
                if in_step:  # stopped inside a step (second Ctrl-C): the update may be partial
                    log.warning("Training stopped inside a step at epoch %d, batch %d; not saving "
                                "(last checkpoint: %s).", epoch, b, last_saved)
                    raise TrainingInterrupted(history, last_saved) from None
                save(epoch, b, snapshot)
                last_saved = str(path) if path is not None else None
                log.warning("Training interrupted at epoch %d, batch %d; checkpoint: %s", epoch, b, last_saved)
                raise TrainingInterrupted(history, last_saved) from None
            except Exception:
                bar.close()  # end the progress line, so that the error is printed on its own
                raise
            bar.close()
            if b == 0:
                raise InputError(
                    f"fit(): train_data yielded no batches in epoch {epoch + 1}; expected at least "
                    "one. Fix: pass a re-iterable loader (a DataLoader, not a generator that is "
                    "used up after one epoch) over a non-empty dataset."
                )
            loss, acc, dens = _epoch_means(run)
            history.loss.append(loss)
            history.accuracy.append(acc)
            history.spike_density.append(dens)
            history.running, skip = {}, 0
            if eval_data is not None:
                m = evaluate(model, eval_data, scheduler=eval_scheduler or scheduler)
                history.eval_accuracy.append(m.accuracy)
                history.eval_spike_density.append(m.spike_density)
            epoch += 1
            history.epochs_completed = epoch
            log.info("epoch %d/%d: loss %.4f, accuracy %.4f, spike density %.4f%s", epoch,
                     config.epochs, loss, acc, dens,
                     f", eval accuracy {history.eval_accuracy[-1]:.4f}" if eval_data is not None else "")
            if path is not None:
                save(epoch, 0, rng_state())
                last_saved = str(path)
            if math.isnan(loss):
                log.warning("The training loss is NaN in epoch %d.", epoch)
    return history
