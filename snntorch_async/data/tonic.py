"""tonic event streams ↔ time-major tensors, and loaders for N-MNIST, SHD and DVSGesture.

tonic represents a recording as a numpy structured array of events with fields ``x, y, t, p``
(vision sensors) or ``t, x, p`` (audio, e.g. SHD). This module turns such streams into the
time-major ``[T, B, *features]`` tensors that :func:`snntorch_async.simulate` takes, using
tonic's own :class:`tonic.transforms.ToFrame` for the binning, and pads a batch of recordings of
different lengths to a common ``T`` with zeros (time-major, like
``tonic.collation.PadTensors(batch_first=False)``).

Datasets are read through ``tonic.datasets`` from a ``root`` folder. Nothing is downloaded unless
``download=True`` is passed: when the files are absent, :class:`DatasetNotFoundError` names the
archive to fetch, where to get it and the exact path to place it at (tonic extracts it on first
use). Everything here imports ``tonic`` lazily, so ``snntorch_async`` works without it.

Example::

    from snntorch_async.data import load_tonic, collate_padded
    train = load_tonic("nmnist", root="data", train=True, n_time_bins=20)
    loader = torch.utils.data.DataLoader(train, batch_size=32, collate_fn=collate_padded)
    for inputs, targets in loader:   # inputs [T, B, 2, 34, 34]
        result = simulate(model, inputs)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DatasetNotFoundError",
    "TONIC_DATASETS",
    "TonicDatasetInfo",
    "EventFrames",
    "SyntheticEvents",
    "collate_padded",
    "events_to_frames",
    "load_tonic",
    "missing_files",
    "require_files",
    "synthetic_events",
]

#: tonic's event dtypes: vision sensors (x, y, t, p) and audio (t, x, p).
VISION_DTYPE = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
AUDIO_DTYPE = np.dtype([("t", np.int64), ("x", np.int64), ("p", np.int64)])


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not in the ``root`` folder and downloading was not requested."""


@dataclass(frozen=True, kw_only=True)
class TonicDatasetInfo:
    """What we need to know about one ``tonic.datasets`` class.

    Attributes:
        tonic_class: Class name in ``tonic.datasets``.
        sensor_size: ``(x, y, p)`` as tonic defines it.
        num_classes: Number of labels.
        train_file: Archive tonic expects for the training split (under ``root/<tonic_class>/``).
        test_file: Archive for the test split.
        url: Where the archives can be downloaded by hand.
    """

    tonic_class: str
    sensor_size: tuple[int, int, int]
    num_classes: int
    train_file: str
    test_file: str
    url: str

    def folder(self, root: str | os.PathLike) -> Path:
        """The folder tonic reads this dataset from: ``root/<tonic_class>``."""
        return Path(os.path.expanduser(str(root))) / self.tonic_class

    def frame_shape(self) -> tuple[int, ...]:
        """Per-time-step feature shape after :func:`events_to_frames`: ``(p, y, x)``."""
        x, y, p = self.sensor_size
        return (p, y, x) if y > 1 else (p, x)


#: The datasets the command line and :func:`load_tonic` know by name (file names as in tonic 1.x).
TONIC_DATASETS: dict[str, TonicDatasetInfo] = {
    "nmnist": TonicDatasetInfo(
        tonic_class="NMNIST",
        sensor_size=(34, 34, 2),
        num_classes=10,
        train_file="train.zip",
        test_file="test.zip",
        url="https://www.garrickorchard.com/datasets/n-mnist (Mendeley data 468j46mzdv)",
    ),
    "shd": TonicDatasetInfo(
        tonic_class="SHD",
        sensor_size=(700, 1, 1),
        num_classes=20,
        train_file="shd_train.h5.zip",
        test_file="shd_test.h5.zip",
        url="https://zenkelab.org/datasets/",
    ),
    "dvsgesture": TonicDatasetInfo(
        tonic_class="DVSGesture",
        sensor_size=(128, 128, 2),
        num_classes=11,
        train_file="ibmGestureTrain.tar.gz",
        test_file="ibmGestureTest.tar.gz",
        url="https://figshare.com/ndownloader/files/38022171 (train), .../38020584 (test)",
    ),
}


def _info(name: str) -> TonicDatasetInfo:
    try:
        return TONIC_DATASETS[name.lower()]
    except KeyError:
        raise ValueError(
            f"Unknown tonic dataset {name!r}; expected one of {sorted(TONIC_DATASETS)}. "
            "Fix: pick one of these names (or use the offline 'digits' data)."
        ) from None


def _import_tonic():
    try:
        import tonic  # noqa: F401
        import tonic.transforms  # noqa: F401
    except ImportError as exc:  # pragma: no cover - tonic is in the [data] extra
        raise ImportError(
            "The tonic package is needed for event datasets. Fix: pip install 'snntorch-async[data]' "
            "(or pip install tonic)."
        ) from exc
    return tonic


def missing_files(name: str, root: str | os.PathLike, *, train: bool = True) -> list[Path]:
    """The archive paths tonic needs for ``name`` that are absent under ``root`` (empty if none)."""
    info = _info(name)
    path = info.folder(root) / (info.train_file if train else info.test_file)
    return [] if path.is_file() else [path]


def require_files(name: str, root: str | os.PathLike, *, train: bool = True) -> None:
    """Check that the archive of one split is under ``root`` (without importing tonic).

    Raises:
        DatasetNotFoundError: It is absent; the message names the file, where to get it and the
            exact path to place it at.
    """
    info = _info(name)
    missing = missing_files(name, root, train=train)
    if missing:
        split = "train" if train else "test"
        raise DatasetNotFoundError(
            f"The {info.tonic_class} {split} split is not under {info.folder(root)}: expected "
            f"the file {missing[0]}. Fix: download {missing[0].name} from {info.url} and place it "
            f"at {missing[0]} (tonic extracts it on first use), or allow downloading "
            "(download=True / --download) on a machine with internet access."
        )


def events_to_frames(
    events: np.ndarray,
    sensor_size: Sequence[int],
    *,
    n_time_bins: int | None = None,
    time_window: float | None = None,
    binary: bool = False,
) -> Tensor:
    """Bin one tonic event stream into frames with ``tonic.transforms.ToFrame``.

    Args:
        events: Structured array with fields ``x, y, t, p`` (or ``t, x, p`` for audio), ``t`` in
            the recording's time unit (µs for tonic's datasets).
        sensor_size: ``(x, y, p)`` (tonic's convention, e.g. ``(34, 34, 2)`` or ``(700, 1, 1)``).
        n_time_bins: Number of frames T (fixed-length recordings).
        time_window: Frame length in the events' time unit (T then depends on the recording).
        binary: Clamp counts to 1 (spike/no spike per bin and pixel).

    Returns:
        ``[T, p, y, x]`` float32 frames (``[T, p, x]`` for audio sensors with ``y = 1``): the
        number of events per bin, pixel and polarity.
    """
    if (n_time_bins is None) == (time_window is None):
        raise ValueError(
            f"events_to_frames() needs exactly one of n_time_bins or time_window; got "
            f"n_time_bins={n_time_bins}, time_window={time_window}. Fix: pass one of them."
        )
    names = getattr(events.dtype, "names", None) or ()
    if not {"x", "t", "p"} <= set(names):
        raise ValueError(
            f"events_to_frames() expected a tonic structured array with fields x, y, t, p (or t, "
            f"x, p for audio); got fields {list(names) or events.dtype}. Fix: build events with "
            "numpy.zeros(n, dtype=[('x', int), ('y', int), ('t', int), ('p', int)])."
        )
    tonic = _import_tonic()
    to_frame = tonic.transforms.ToFrame(
        sensor_size=tuple(int(s) for s in sensor_size),
        n_time_bins=n_time_bins,
        time_window=time_window,
    )
    frames = torch.from_numpy(np.asarray(to_frame(events), dtype=np.float32))
    return frames.clamp_(max=1.0) if binary else frames


def collate_padded(batch: Sequence[tuple[Any, Any]]) -> tuple[Tensor, Tensor]:
    """Collate ``(frames [T_i, *f], label)`` pairs into ``([T, B, *f], labels [B])``.

    Shorter recordings are padded with zero frames at the end to ``T = max_i T_i`` (what tonic's
    ``PadTensors(batch_first=False)`` does, but always float32 and time-major).
    """
    if len(batch) == 0:
        raise ValueError("collate_padded() got an empty batch; expected at least one sample.")
    frames = [torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x) for x, _ in batch]
    feat = {tuple(f.shape[1:]) for f in frames}
    if len(feat) != 1:
        raise ValueError(
            f"collate_padded() got samples with different feature shapes {sorted(feat)}; "
            "expected one shape after the time axis. Fix: give ToFrame the dataset's sensor_size."
        )
    T = max(int(f.shape[0]) for f in frames)
    out = torch.zeros((T, len(frames), *frames[0].shape[1:]), dtype=torch.float32)
    for i, f in enumerate(frames):
        out[: f.shape[0], i] = f.to(torch.float32)
    labels = torch.as_tensor([int(y) for _, y in batch], dtype=torch.long)
    return out, labels


class EventFrames(torch.utils.data.Dataset):
    """Wrap a dataset of ``(events, label)`` pairs so it yields ``(frames [T, *f], label)``.

    Args:
        dataset: Any indexable of ``(structured events, label)`` (a ``tonic.datasets`` object,
            :class:`SyntheticEvents`, ...).
        sensor_size: ``(x, y, p)``.
        n_time_bins / time_window / binary: As in :func:`events_to_frames`.
        flatten: Flatten the per-step features (for MLPs): ``[T, p*y*x]``.
    """

    def __init__(
        self,
        dataset,
        sensor_size: Sequence[int],
        *,
        n_time_bins: int | None = None,
        time_window: float | None = None,
        binary: bool = False,
        flatten: bool = False,
    ) -> None:
        self.dataset = dataset
        self.sensor_size = tuple(sensor_size)
        self.n_time_bins = n_time_bins
        self.time_window = time_window
        self.binary = binary
        self.flatten = flatten

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        events, label = self.dataset[index]
        frames = events_to_frames(
            events,
            self.sensor_size,
            n_time_bins=self.n_time_bins,
            time_window=self.time_window,
            binary=self.binary,
        )
        if self.flatten:
            frames = frames.flatten(1)
        return frames, int(label)


def load_tonic(
    name: str,
    root: str | os.PathLike,
    *,
    train: bool = True,
    n_time_bins: int = 20,
    binary: bool = True,
    flatten: bool = False,
    download: bool = False,
) -> EventFrames:
    """A ``tonic.datasets`` dataset binned into frames, ready for :func:`collate_padded`.

    Args:
        name: ``"nmnist"``, ``"shd"`` or ``"dvsgesture"``.
        root: Folder holding ``<TonicClass>/<archive>`` (tonic's layout).
        train: Training split (else test split).
        n_time_bins: Frames per recording T.
        binary: Clamp event counts per bin to 1.
        flatten: Flatten per-step features (for MLPs).
        download: Let tonic download missing archives (needs internet).

    Raises:
        DatasetNotFoundError: The archive is absent and ``download`` is False; the message names
            the file, where to get it and where to put it.
    """
    info = _info(name)
    if not download:
        require_files(name, root, train=train)
    tonic = _import_tonic()
    cls: Callable = getattr(tonic.datasets, info.tonic_class)
    dataset = cls(save_to=os.path.expanduser(str(root)), train=train)
    return EventFrames(
        dataset, info.sensor_size, n_time_bins=n_time_bins, binary=binary, flatten=flatten
    )


def synthetic_events(
    num_events: int,
    sensor_size: Sequence[int],
    *,
    duration: int = 100_000,
    rng: np.random.Generator | None = None,
    center: tuple[float, float] | None = None,
    spread: float = 3.0,
) -> np.ndarray:
    """One synthetic event stream in tonic's format (for tests and offline examples).

    Args:
        num_events: Number of events.
        sensor_size: ``(x, y, p)``; ``y == 1`` gives an audio stream with fields ``t, x, p``.
        duration: Time span of the stream (µs), timestamps sorted in ``[0, duration)``.
        rng: Generator (default: a fresh seeded one).
        center: Mean pixel ``(x, y)`` of the events (default: uniform over the sensor).
        spread: Standard deviation (pixels) around ``center``.

    Returns:
        Structured array with fields ``x, y, t, p`` (vision) or ``t, x, p`` (audio).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    sx, sy, sp = (int(s) for s in sensor_size)
    t = np.sort(rng.integers(0, duration, num_events))
    if center is None:
        x = rng.integers(0, sx, num_events)
        y = rng.integers(0, sy, num_events)
    else:
        x = np.clip(np.rint(rng.normal(center[0], spread, num_events)), 0, sx - 1)
        y = np.clip(np.rint(rng.normal(center[1], spread, num_events)), 0, sy - 1)
    p = rng.integers(0, sp, num_events)
    if sy == 1:
        events = np.zeros(num_events, dtype=AUDIO_DTYPE)
    else:
        events = np.zeros(num_events, dtype=VISION_DTYPE)
        events["y"] = y
    events["x"], events["t"], events["p"] = x, t, p
    return events


class SyntheticEvents(torch.utils.data.Dataset):
    """A learnable stand-in for a tonic dataset: each class fires around its own sensor location.

    Yields ``(events, label)`` like ``tonic.datasets`` classes (events in tonic's structured
    format), so it can be wrapped in :class:`EventFrames` exactly like N-MNIST.

    Args:
        num_samples: Number of recordings.
        sensor_size: ``(x, y, p)``, e.g. ``(34, 34, 2)``.
        num_classes: Number of labels; class ``c`` centres its events at the ``c``-th point of a
            ring around the sensor's middle.
        events_per_sample: Mean number of events per recording (varies ±50%).
        seed: Seed of the stream generator (the dataset is deterministic per seed).
    """

    def __init__(
        self,
        num_samples: int,
        sensor_size: Sequence[int] = (34, 34, 2),
        *,
        num_classes: int = 10,
        events_per_sample: int = 1500,
        seed: int = 0,
    ) -> None:
        self.num_samples = int(num_samples)
        self.sensor_size = tuple(int(s) for s in sensor_size)
        self.num_classes = int(num_classes)
        self.events_per_sample = int(events_per_sample)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        rng = np.random.default_rng([self.seed, index])
        label = int(index % self.num_classes)
        sx, sy, _ = self.sensor_size
        angle = 2 * np.pi * label / self.num_classes
        radius = 0.3 * min(sx, sy) if sy > 1 else 0.3 * sx
        cx = sx / 2 + radius * np.cos(angle) if sy > 1 else (label + 0.5) * sx / self.num_classes
        cy = sy / 2 + radius * np.sin(angle) if sy > 1 else 0.0
        n = int(rng.integers(self.events_per_sample // 2, self.events_per_sample * 3 // 2 + 1))
        spread = max(1.0, min(sx, sy) / 8) if sy > 1 else max(1.0, sx / (4 * self.num_classes))
        return synthetic_events(n, self.sensor_size, rng=rng, center=(cx, cy), spread=spread), label
