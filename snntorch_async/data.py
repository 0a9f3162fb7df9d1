"""Datasets as time-major spike tensors.

This module holds the offline handwritten-digits dataset (scikit-learn's bundled ``load_digits``:
1,797 grey-scale 8×8 images, no download) turned into spike trains, and the pieces any dataset
here shares: the spike encodings (frozen settings dataclasses, dispatched through
:data:`ENCODERS`), :class:`SpikeDataset` (pre-encoded samples ``[T, *features]`` + labels),
:func:`collate_time_major` (stacks samples into ``[T, B, *features]``) and :func:`make_loader`
(a ``DataLoader`` whose shuffling order is a pure function of ``(seed, epoch)`` so that training
resumes exactly, see :class:`EpochShuffleSampler`).

Quick start::

    from snntorch_async.data import RateEncoding, load_digits_spikes, make_loader
    digits = load_digits_spikes(encoding=RateEncoding(gain=1.0), num_steps=25, seed=0)
    train = make_loader(digits.train, batch_size=64, shuffle=True, seed=0)
    x, y = next(iter(train))          # x: [25, 64, 64] float 0/1, y: [64] int64

Other datasets (e.g. tonic event datasets) plug into the same pieces: encode to a
``[N, T, *features]`` tensor, wrap in :class:`SpikeDataset`, load with :func:`make_loader`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from .errors import ConfigError

__all__ = [
    "RateEncoding",
    "LatencyEncoding",
    "CurrentEncoding",
    "ENCODERS",
    "encode",
    "SpikeDataset",
    "DigitsData",
    "load_digits_spikes",
    "collate_time_major",
    "EpochShuffleSampler",
    "make_loader",
]


# --------------------------------------------------------------------------------------------
# Encodings: settings as frozen dataclasses, implementations in a dispatch table.
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RateEncoding:
    """Bernoulli rate code: at every time step a feature spikes with probability ``gain · x``.

    ``x`` is the intensity scaled to [0, 1]; the probability is clipped to [0, 1]. Spikes are 0/1,
    so the first layer's synaptic operations count as accumulates (ACs).

    Attributes:
        gain: Spike probability per time step of a feature of intensity 1 (0 < gain ≤ 1 keeps
            the rate proportional to the intensity).
    """

    gain: float = 1.0

    def __post_init__(self) -> None:
        if not (self.gain > 0):
            raise ConfigError(
                f"RateEncoding(gain={self.gain}): expected gain > 0 (spike probability per step "
                "of a feature of intensity 1). Fix: e.g. RateEncoding(gain=1.0)."
            )


@dataclass(frozen=True, kw_only=True)
class LatencyEncoding:
    """Time-to-first-spike code: each feature spikes once, brighter features earlier.

    A feature of intensity ``x`` (in [0, 1]) spikes once, at step
    ``t = round((1 - x) · (T - 1))`` (``x = 1`` at step 0, ``x → threshold`` near the end);
    features with ``x ≤ threshold`` never spike. Deterministic (the seed is not used).

    Attributes:
        threshold: Intensities at or below it produce no spike.
    """

    threshold: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.threshold < 1.0):
            raise ConfigError(
                f"LatencyEncoding(threshold={self.threshold}): expected 0 <= threshold < 1 "
                "(intensities are scaled to [0, 1]). Fix: e.g. LatencyEncoding(threshold=0.1)."
            )


@dataclass(frozen=True, kw_only=True)
class CurrentEncoding:
    """No spike code: the intensity ``x`` in [0, 1] is presented as a real-valued input at every
    time step (``x_t = x``). The first layer's synaptic operations then count as
    multiply-accumulates (MACs) in :mod:`snntorch_async.metrics`."""


def _rate(enc: RateEncoding, x: Tensor, T: int, g: torch.Generator) -> Tensor:
    p = (x * enc.gain).clamp(0.0, 1.0)
    u = torch.rand((x.shape[0], T, *x.shape[1:]), generator=g, dtype=torch.float32)
    return (u < p.unsqueeze(1)).to(torch.uint8)


def _latency(enc: LatencyEncoding, x: Tensor, T: int, g: torch.Generator) -> Tensor:
    t_spike = torch.round((1.0 - x) * (T - 1)).long()
    steps = torch.arange(T).view(1, T, *([1] * (x.dim() - 1)))
    out = (steps == t_spike.unsqueeze(1)) & (x > enc.threshold).unsqueeze(1)
    return out.to(torch.uint8)


def _current(enc: CurrentEncoding, x: Tensor, T: int, g: torch.Generator) -> Tensor:
    return x.unsqueeze(1).expand(x.shape[0], T, *x.shape[1:]).to(torch.float32).contiguous()


#: Encoding settings type -> function ``(settings, x [N, *f] in [0, 1], T, generator) -> [N, T, *f]``.
ENCODERS: dict[type, Callable[..., Tensor]] = {
    RateEncoding: _rate,
    LatencyEncoding: _latency,
    CurrentEncoding: _current,
}

Encoding = RateEncoding | LatencyEncoding | CurrentEncoding


def encode(x: Tensor, *, encoding, num_steps: int, seed: int = 0) -> Tensor:
    """Encode intensities ``x`` ``[N, *features]`` (in [0, 1]) into ``[N, T, *features]``.

    Spike codes return ``torch.uint8`` 0/1 (compact; :class:`SpikeDataset` converts to float);
    :class:`CurrentEncoding` returns float32. The same ``seed`` gives the same spikes.
    """
    fn = ENCODERS.get(type(encoding))
    if fn is None:
        names = ", ".join(t.__name__ for t in ENCODERS)
        raise ConfigError(
            f"encoding must be one of {names} (frozen settings objects); got "
            f"{type(encoding).__name__}. Fix: e.g. encoding=RateEncoding(gain=1.0)."
        )
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ConfigError(
            f"num_steps must be a positive int (time steps per sample); got {num_steps!r}. "
            "Fix: e.g. num_steps=25."
        )
    x = torch.as_tensor(x, dtype=torch.float32)
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ConfigError(
            f"encode() expected intensities in [0, 1]; got values in [{float(x.min())}, "
            f"{float(x.max())}]. Fix: scale the data, e.g. x / x.max()."
        )
    g = torch.Generator().manual_seed(int(seed))
    return fn(encoding, x, num_steps, g)


# --------------------------------------------------------------------------------------------
# Dataset, collate, loaders.
# --------------------------------------------------------------------------------------------
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
    dataset: Dataset, *, batch_size: int, shuffle: bool = False, seed: int = 0, drop_last: bool = False
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


# --------------------------------------------------------------------------------------------
# The offline digits dataset.
# --------------------------------------------------------------------------------------------
class DigitsData(NamedTuple):
    """The digits dataset split into training and test :class:`SpikeDataset` s.

    Attributes:
        train: Training samples (``1 - test_fraction`` of the 1,797 images).
        test: Test samples.
        num_classes: 10.
    """

    train: SpikeDataset
    test: SpikeDataset
    num_classes: int


def _load_digits_arrays() -> tuple[Tensor, Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "load_digits_spikes() needs scikit-learn (it ships the digits images, no download). "
            "Fix: pip install 'snntorch-async[data]' or pip install scikit-learn."
        ) from None
    d = load_digits()
    return torch.as_tensor(d.images, dtype=torch.float32) / 16.0, torch.as_tensor(d.target).long()


def load_digits_spikes(
    *,
    encoding=RateEncoding(),
    num_steps: int = 25,
    seed: int = 0,
    test_fraction: float = 0.25,
    split_seed: int = 0,
    flatten: bool = True,
) -> DigitsData:
    """scikit-learn's 8×8 handwritten digits as spike trains (works offline).

    Intensities (0..16) are scaled to [0, 1] and encoded once, at load time, with ``encoding``
    (seeded by ``seed``: the same arguments give the same tensors). The train/test split is a
    fixed random permutation drawn from ``split_seed`` (independent of ``seed``), so changing the
    encoding seed never moves a sample between the splits.

    Args:
        encoding: :class:`RateEncoding`, :class:`LatencyEncoding` or :class:`CurrentEncoding`.
        num_steps: Time steps T per sample.
        seed: Seed of the encoding's random numbers.
        test_fraction: Fraction of the 1,797 samples held out for testing (0 < f < 1).
        split_seed: Seed of the train/test permutation.
        flatten: ``True``: features ``[64]``; ``False``: ``[1, 8, 8]`` for convolutional models.

    Returns:
        :class:`DigitsData` with ``train``/``test`` datasets whose items are
        ``(x [T, 64] or [T, 1, 8, 8] float32, label)``; batch them with :func:`make_loader`
        to get ``[T, B, 64]`` / ``[T, B, 1, 8, 8]``.
    """
    if not (0.0 < test_fraction < 1.0):
        raise ConfigError(
            f"test_fraction must lie strictly between 0 and 1; got {test_fraction}. "
            "Fix: e.g. test_fraction=0.25."
        )
    images, labels = _load_digits_arrays()  # [N, 8, 8], [N]
    x = images.reshape(len(images), 64) if flatten else images.unsqueeze(1)
    data = encode(x, encoding=encoding, num_steps=num_steps, seed=seed)
    n = len(labels)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(split_seed)))
    n_test = max(1, int(round(n * test_fraction)))
    test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
    return DigitsData(
        train=SpikeDataset(data[train_idx], labels[train_idx]),
        test=SpikeDataset(data[test_idx], labels[test_idx]),
        num_classes=10,
    )


# --------------------------------------------------------------------------------------------
# tonic event datasets (N-MNIST, SHD, DVSGesture): implemented in tonic_data.py (owned by the
# CLI/data work), re-exported here so that `snntorch_async.data` is the one data module.
# tonic itself is imported lazily, on first use.
# --------------------------------------------------------------------------------------------
from .tonic_data import (  # noqa: E402
    TONIC_DATASETS,
    DatasetNotFoundError,
    EventFrames,
    SyntheticEvents,
    collate_padded,
    events_to_frames,
    load_tonic,
    synthetic_events,
)

__all__ += [
    "TONIC_DATASETS",
    "DatasetNotFoundError",
    "EventFrames",
    "SyntheticEvents",
    "collate_padded",
    "events_to_frames",
    "load_tonic",
    "synthetic_events",
]
