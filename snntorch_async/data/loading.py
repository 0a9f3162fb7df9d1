"""Pre-encoded datasets, time-major collation, seeded loaders, and the one batch unpacker.

:class:`SpikeDataset` holds pre-encoded samples ``[T, *features]`` and labels,
:func:`collate_time_major` stacks samples into ``[T, B, *features]``, :func:`make_loader` gives a
``DataLoader`` whose shuffling order is a pure function of ``(seed, epoch)`` (so training resumes
exactly, see :class:`EpochShuffleSampler`), and :func:`unpack_batch` is the one place where a
batch is checked and split into inputs and targets (``fit``, ``train_step`` and ``evaluate`` all
use it).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..errors import ConfigError, InputError

__all__ = [
    "SpikeDataset",
    "collate_time_major",
    "EpochShuffleSampler",
    "make_loader",
    "unpack_batch",
]


class SpikeDataset(Dataset):
    """Pre-encoded samples: item ``i`` is ``(x [T, *features] float32, label int64 scalar)``.

    Args:
        data: ``[N, T, *features]`` spikes (uint8/bool/float) or real-valued inputs.
        labels: ``[N]`` integer class labels.
    """

    def __init__(self, data: Tensor, labels: Tensor) -> None:
        if data.shape[0] != labels.shape[0]:
            raise ConfigError(
                f"SpikeDataset got {data.shape[0]} samples but {labels.shape[0]} labels; "
                "expected one label per sample."
            )
        self.data = data
        self.labels = labels.long()

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.data[i].to(torch.float32), self.labels[i]

    @property
    def num_steps(self) -> int:
        return int(self.data.shape[1])

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape[2:])


def collate_time_major(batch: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack samples ``(x [T, *f], y)`` into time-major ``([T, B, *f] float, [B] int64)``."""
    xs, ys = zip(*batch)
    return torch.stack(xs, dim=1), torch.stack([torch.as_tensor(y) for y in ys]).long()


class EpochShuffleSampler(Sampler[int]):
    """Random order that is a pure function of ``(seed, epoch)``.

    ``fit`` calls :meth:`set_epoch` at the start of every epoch (the ``DistributedSampler``
    convention), so an interrupted run resumed from a checkpoint sees exactly the same batches.
    """

    def __init__(self, n: int, *, seed: int = 0) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A ``DataLoader`` yielding time-major batches ``([T, B, *features], [B])``.

    With ``shuffle=True`` the order of epoch ``e`` depends only on ``(seed, e)``
    (:class:`EpochShuffleSampler`); without, samples come in dataset order.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int; got {batch_size!r}.")
    sampler = EpochShuffleSampler(len(dataset), seed=seed) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        drop_last=drop_last,
        collate_fn=collate_time_major,
    )


def unpack_batch(batch, *, targets: bool = True) -> tuple[Tensor, Tensor | None]:
    """Split one batch into ``(inputs [T, B, *features], targets [B] or None)``, checked.

    Args:
        batch: ``(inputs, targets)`` (a tuple or list, e.g. from :func:`make_loader`), or, when
            ``targets`` is ``False``, also a bare inputs tensor.
        targets: Whether targets are required (training) or optional (evaluation).

    Raises:
        InputError: The batch is not such a pair, the inputs are not time-major
            ``[T, B, *features]``, or the targets do not hold one class index per sample.
    """
    if torch.is_tensor(batch) and not targets:
        x, y = batch, None
    elif isinstance(batch, (tuple, list)) and len(batch) >= (2 if targets else 1):
        x, y = batch[0], (batch[1] if len(batch) > 1 else None)
    else:
        raise InputError(
            f"Expected each batch to be (inputs [T, B, *features], targets [B]); got "
            f"{type(batch).__name__}. Fix: use snntorch_async.data.make_loader, or a DataLoader "
            "with collate_fn=snntorch_async.data.collate_time_major."
        )
    if (
        not torch.is_tensor(x)
        or x.dim() < 3
        or (y is not None and (not torch.is_tensor(y) or y.dim() != 1 or y.shape[0] != x.shape[1]))
    ):
        shape = lambda v: list(v.shape) if torch.is_tensor(v) else type(v).__name__  # noqa: E731
        raise InputError(
            f"Expected time-major inputs [T, B, *features] with targets [B]; got inputs "
            f"{shape(x)} and targets {shape(y) if y is not None else None}. Fix: for batch-first "
            "data [B, T, ...] use x.transpose(0, 1), or collate with "
            "snntorch_async.data.collate_time_major; targets are class indices, not one-hot."
        )
    return x, y
