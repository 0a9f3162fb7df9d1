"""The training loop: :func:`fit` = set up, resume, then one :func:`_train_epoch` after another.

The data order of epoch ``e`` is a function of ``(seed, e)`` (see :func:`_set_epoch`) and the
scheduler of optimizer step ``s`` on rank ``r`` is ``scheduler.reseeded(s, r)``, so
``fit(..., resume=True)`` continues with exactly the losses an uninterrupted run would have had.
Under ``torchrun`` the same loop runs on every rank (see :mod:`.distributed`): the model is
wrapped in ``DistributedDataParallel``, the data sharded, the step statistics and the Ctrl-C
flag are all-reduced after every step, and rank 0 alone checkpoints, shows progress and
evaluates.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import threading
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import RandomSampler

from ..checkpoint import rng_state, set_rng_state
from ..errors import ConfigError, InputError
from ..metrics import evaluate
from ..schedulers.base import Scheduler
from ..simulate import AsyncNetwork
from . import distributed as D
from .checkpointing import Checkpointer, LoopPosition
from .config import History, TrainConfig, TrainingInterrupted
from .step import _check_gradients, _check_surrogates, train_step

__all__ = ["fit"]

log = logging.getLogger(__name__)


def _set_epoch(loader, seed: int, epoch: int) -> None:
    """Make the data order of ``epoch`` a function of ``(seed, epoch)``."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    elif isinstance(sampler, RandomSampler):
        sampler.generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class _SigintFlag:
    """Turn the first Ctrl-C into a flag checked between steps (main thread only).

    A second Ctrl-C stops at once, except under data-parallel training (``repeat_stops=False``):
    there ``torchrun`` forwards the terminal's Ctrl-C to workers that got it already, and a rank
    that stopped alone inside a step would leave the others waiting.
    """

    def __init__(self, *, repeat_stops: bool = True) -> None:
        self.hit, self._prev, self.repeat_stops = False, None, repeat_stops

    def _handler(self, signum, frame) -> None:
        if self.hit and self.repeat_stops:
            raise KeyboardInterrupt
        if not self.hit:
            log.warning(
                "Ctrl-C: finishing the current step, then saving and stopping%s.",
                " (again: stop now)" if self.repeat_stops else "",
            )
        self.hit = True

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


@dataclass(eq=False)
class _Run:
    """What stays fixed during one :func:`fit` call, plus whether the first-step checks ran."""

    model: nn.Module
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    group: "D.Group | None"
    data: Iterable
    scheduler: Scheduler
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    history: History
    checkpointer: Checkpointer
    progress: bool
    checked: bool


def _epoch_length(data, max_batches: int | None) -> int | None:
    total = len(data) if hasattr(data, "__len__") else None
    if max_batches is not None:
        total = max_batches if total is None else min(total, max_batches)
    return total


def _train_epoch(
    run: _Run, pos: LoopPosition, flag: _SigintFlag, resumed_rng
) -> tuple[LoopPosition, dict]:
    """Train the batches of epoch ``pos.epoch`` from batch ``pos.batch`` on.

    ``resumed_rng`` is the generators' state at ``pos`` when resuming mid-epoch (else ``None``).
    Returns the position after the epoch's last batch and the epoch's sums.

    Raises:
        TrainingInterrupted: On Ctrl-C, after saving the position reached (if checkpointing).
    """
    from tqdm.auto import tqdm

    cfg, history, ckpt = run.config, run.history, run.checkpointer
    run.model.train()
    _set_epoch(run.data, cfg.seed, pos.epoch)
    total = _epoch_length(run.data, cfg.max_batches)
    # RNG snapshot matching position (epoch, b): at b = 0 it is taken before the data iterator
    # is created (creating it draws a seed), as a resumed run restores it then.
    snapshot = rng_state() if ckpt.enabled and not pos.batch else None
    it = iter(run.data)
    for _ in range(pos.batch):
        next(it)
    if pos.batch:
        set_rng_state(resumed_rng)
        snapshot = resumed_rng
    sums = history.running if pos.batch else {}
    lead = run.group is None or run.group.lead
    bar = tqdm(
        total=total,
        initial=pos.batch,
        disable=not (run.progress and lead),
        desc=f"epoch {pos.epoch + 1}/{cfg.epochs}",
    )
    b, step, in_step = pos.batch, pos.step, False
    try:
        for batch in it:
            if cfg.max_batches is not None and b >= cfg.max_batches:
                break
            if not run.checked:
                _check_surrogates(run.model, tuple(batch[0].shape[2:]))
            in_step = True
            rank = run.group.rank if run.group is not None else 0
            s = train_step(
                run.net,
                batch,
                scheduler=run.scheduler.reseeded(step, rank),
                optimizer=run.optimizer,
                loss_fn=cfg.loss,
                grad_clip=cfg.grad_clip,
                truncate_steps=cfg.truncate_steps,
            )
            in_step = False
            stop = flag.hit
            if run.group is not None:
                s, stop = D.reduce_step(run.group, s, stop)
            if not run.checked:
                _check_gradients(run.model)
                run.checked = True
            b, step = b + 1, step + 1
            history.step_loss.append(s.loss)
            for key, v in (
                ("loss", s.loss),
                ("correct", s.correct),
                ("samples", s.samples),
                ("density", s.spike_density),
                ("batches", 1),
            ):
                sums[key] = sums.get(key, 0) + v
            history.running = sums
            bar.update(1)
            bar.set_postfix(loss=f"{s.loss:.4f}")
            if ckpt.enabled:
                snapshot = rng_state()
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    ckpt.save(LoopPosition(pos.epoch, b, step), history, snapshot)
            if stop:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        bar.close()
        history.interrupted = True
        if in_step:  # stopped inside a step (second Ctrl-C): the update may be partial
            log.warning(
                "Training stopped inside a step at epoch %d, batch %d; not saving "
                "(last checkpoint: %s).",
                pos.epoch,
                b,
                ckpt.last_saved,
            )
            raise TrainingInterrupted(history, ckpt.last_saved) from None
        ckpt.save(LoopPosition(pos.epoch, b, step), history, snapshot)
        if lead:
            log.warning(
                "Training interrupted at epoch %d, batch %d; checkpoint: %s",
                pos.epoch,
                b,
                ckpt.last_saved,
            )
        raise TrainingInterrupted(history, ckpt.last_saved) from None
    except Exception:
        bar.close()  # end the progress line, so that the error is printed on its own
        raise
    bar.close()
    if b == 0:
        raise InputError(
            f"fit(): train_data yielded no batches in epoch {pos.epoch + 1}; expected at least "
            "one. Fix: pass a re-iterable loader (a DataLoader, not a generator that is used up "
            "after one epoch) over a non-empty dataset."
        )
    return LoopPosition(pos.epoch, b, step), sums


def _finish_epoch(
    run: _Run, pos: LoopPosition, sums: dict, eval_data, eval_scheduler
) -> LoopPosition:
    """Record the epoch's means (and evaluation), save, and return the next epoch's start."""
    history, cfg = run.history, run.config
    loss, acc, dens = _epoch_means(sums)
    history.loss.append(loss)
    history.accuracy.append(acc)
    history.spike_density.append(dens)
    history.running = {}
    lead = run.group is None or run.group.lead
    if eval_data is not None and lead:  # the weights are the same on every rank
        m = evaluate(run.model, eval_data, scheduler=eval_scheduler or run.scheduler)
        history.eval_accuracy.append(m.accuracy)
        history.eval_spike_density.append(m.spike_density)
    pos = LoopPosition(pos.epoch + 1, 0, pos.step)
    history.epochs_completed = pos.epoch
    if lead:
        log.info(
            "epoch %d/%d: loss %.4f, accuracy %.4f, spike density %.4f%s",
            pos.epoch,
            cfg.epochs,
            loss,
            acc,
            dens,
            f", eval accuracy {history.eval_accuracy[-1]:.4f}" if eval_data is not None else "",
        )
    if run.checkpointer.enabled:
        run.checkpointer.save(pos, history, rng_state())
    if math.isnan(loss) and lead:
        log.warning("The training loss is NaN in epoch %d.", pos.epoch)
    return pos


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

    Under ``torchrun`` (or with ``config.distributed``) every rank calls ``fit`` with the same
    arguments; the batch size of ``train_data`` is then per rank.

    Returns:
        :class:`History` (also the one stored in the checkpoint). Under data-parallel training
        the step statistics are averaged over the ranks; rank 0's history also has the
        evaluation, the other ranks' have none.

    Raises:
        TrainingError: A neuron's ``spike_grad`` passes no gradient, or no parameter received a
            gradient in the first step.
        CheckpointError: The checkpoint belongs to another architecture, seed or world size.
        TrainingInterrupted: On Ctrl-C, after saving a checkpoint (if a path is configured).
    """
    if isinstance(model, AsyncNetwork):
        model = model.model
    if not isinstance(scheduler, Scheduler):
        raise ConfigError(
            f"scheduler must be a snntorch_async scheduler such as LayerSync(); got {scheduler!r}."
        )
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
    group = D.join(config.distributed, device)
    try:
        return _fit(
            model, train_data, scheduler, config, group, eval_data, eval_scheduler, resume, progress
        )
    finally:
        D.leave(group)


def _fit(
    model, train_data, scheduler, config, group, eval_data, eval_scheduler, resume, progress
) -> History:
    """:func:`fit` once the process group (``group``, ``None`` alone) is joined."""
    rank, world = (group.rank, group.world_size) if group is not None else (0, 1)
    if group is not None:
        model.to(group.device)
    p = next(model.parameters(), None)
    device = p.device if p is not None else torch.device("cpu")
    optimizer = config.optimizer(model.parameters(), lr=config.lr)
    ckpt = Checkpointer(
        config.checkpoint_path,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        seed=config.seed,
        rank=rank,
        world_size=world,
        collectives=D.Collectives() if group is not None else None,
        metadata=config.metadata,
    )
    resumed = ckpt.resume(device) if resume else None
    pos, history, resumed_rng = (
        resumed if resumed is not None else (LoopPosition(), History(), None)
    )
    history.interrupted = False
    if resumed is None:
        seed = D.rank_seed(config.seed, rank)
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
    elif pos.batch == 0:
        set_rng_state(resumed_rng)
    net = D.wrap(model, group)  # copies rank 0's weights to every rank
    data = D.shard(train_data, group, seed=config.seed)
    run = _Run(
        model,
        net,
        group,
        data,
        scheduler,
        optimizer,
        config,
        history,
        ckpt,
        progress,
        checked=resumed is not None,
    )
    with _SigintFlag(repeat_stops=group is None) as flag:
        while pos.epoch < config.epochs:
            pos, sums = _train_epoch(run, pos, flag, resumed_rng if pos.batch else None)
            pos = _finish_epoch(run, pos, sums, eval_data, eval_scheduler)
    return history
