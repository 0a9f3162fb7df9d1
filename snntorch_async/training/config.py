"""The settings and records of training: :class:`TrainConfig`, :class:`StepStats`, :class:`History`
and the errors :func:`~snntorch_async.training.fit` raises."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import snntorch.functional as SF
import torch
from torch import Tensor

from ..errors import ConfigError, SnnTorchAsyncError

__all__ = [
    "TrainConfig",
    "Distributed",
    "StepStats",
    "History",
    "TrainingError",
    "TrainingInterrupted",
]


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
        raise ConfigError(
            f"TrainConfig.{name} must be None or a positive {kind.__name__}; got {value!r}."
        )


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
        distributed: Data-parallel settings (:class:`Distributed`); ``None``: read them from
            ``torchrun``'s environment, or train in one process outside ``torchrun``.
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
    metadata: "dict[str, Any] | None" = None
    distributed: "Distributed | None" = None

    def __post_init__(self) -> None:
        _positive_or_none("epochs", self.epochs)
        _positive_or_none("checkpoint_every", self.checkpoint_every)
        _positive_or_none("max_batches", self.max_batches)
        _positive_or_none("truncate_steps", self.truncate_steps)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"TrainConfig.lr must be a positive number; got {self.lr!r}.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"TrainConfig.grad_clip must be None or > 0; got {self.grad_clip!r}.")
        if self.distributed is not None and not isinstance(self.distributed, Distributed):
            raise ConfigError(
                f"TrainConfig.distributed must be None or a Distributed(world_size=..., rank=...); "
                f"got {type(self.distributed).__name__}."
            )
        if not callable(self.loss) or not callable(self.optimizer):
            raise ConfigError(
                "TrainConfig.loss and TrainConfig.optimizer must be callables, e.g. "
                "loss=snntorch.functional.ce_rate_loss(), optimizer=torch.optim.Adam."
            )


@dataclass(frozen=True, kw_only=True)
class Distributed:
    """How this process takes part in data-parallel training (``TrainConfig.distributed``).

    Leave ``TrainConfig.distributed=None`` under ``torchrun``: :meth:`from_env` reads the same
    settings from ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``.

    Attributes:
        world_size: Number of training processes.
        rank: This process's rank, ``0 <= rank < world_size`` (rank 0 checkpoints and reports).
        local_rank: Its index on this machine (selects the GPU); ``None``: same as ``rank``.
        init_method: Rendezvous URL of ``torch.distributed.init_process_group`` (``"env://"``
            reads ``MASTER_ADDR``/``MASTER_PORT``; or e.g. ``"tcp://10.0.0.1:29500"``).
        timeout_s: Seconds a collective waits for the other ranks before failing.
    """

    world_size: int
    rank: int
    local_rank: int | None = None
    init_method: str = "env://"
    timeout_s: float = 300.0

    def __post_init__(self) -> None:
        ok = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        if not (ok(self.world_size) and self.world_size >= 1):
            raise ConfigError(
                f"Distributed.world_size must be an int >= 1; got {self.world_size!r}."
            )
        if not (ok(self.rank) and 0 <= self.rank < self.world_size):
            raise ConfigError(
                f"Distributed.rank must be an int in [0, {self.world_size}); got {self.rank!r}."
            )
        if self.local_rank is not None and not (ok(self.local_rank) and self.local_rank >= 0):
            raise ConfigError(
                f"Distributed.local_rank must be None or an int >= 0; got {self.local_rank!r}."
            )
        if not (isinstance(self.timeout_s, (int, float)) and self.timeout_s > 0):
            raise ConfigError(
                f"Distributed.timeout_s must be a positive number; got {self.timeout_s!r}."
            )

    @classmethod
    def from_env(cls) -> "Distributed | None":
        """The settings ``torchrun`` exports, or ``None`` outside a distributed launch."""
        if "WORLD_SIZE" not in os.environ:
            return None
        values = {}
        for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
            raw = os.environ.get(name, "0")
            try:
                values[name] = int(raw)
            except ValueError:
                raise ConfigError(
                    f"The environment variable {name}={raw!r} is not an integer; torchrun sets "
                    f"WORLD_SIZE, RANK and LOCAL_RANK to integers. Fix: launch with torchrun, or "
                    "unset them for a single process."
                ) from None
        return cls(
            world_size=values["WORLD_SIZE"], rank=values["RANK"], local_rank=values["LOCAL_RANK"]
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
