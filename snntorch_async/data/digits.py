"""The offline handwritten-digits dataset as spike trains.

scikit-learn's bundled ``load_digits`` (1,797 grey-scale 8×8 images, no download), encoded once
at load time with one of the encodings of :mod:`snntorch_async.data.encoding`.

Quick start::

    from snntorch_async.data import RateEncoding, load_digits_spikes, make_loader
    digits = load_digits_spikes(encoding=RateEncoding(gain=1.0), num_steps=25, seed=0)
    train = make_loader(digits.train, batch_size=64, shuffle=True, seed=0)
    x, y = next(iter(train))          # x: [25, 64, 64] float 0/1, y: [64] int64
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import ConfigError
from .encoding import RateEncoding, encode
from .loading import SpikeDataset

__all__ = ["DigitsData", "load_digits_spikes"]


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
