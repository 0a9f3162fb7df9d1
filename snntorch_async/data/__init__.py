"""Datasets as time-major spike tensors ``[T, B, *features]``.

* :mod:`~snntorch_async.data.encoding`: spike encodings (rate, latency, current) and
  :func:`encode`;
* :mod:`~snntorch_async.data.loading`: :class:`SpikeDataset`, :func:`collate_time_major`,
  :func:`make_loader` (shuffling order a pure function of ``(seed, epoch)``) and
  :func:`unpack_batch`, the one batch checker;
* :mod:`~snntorch_async.data.digits`: the offline 8×8 digits (:func:`load_digits_spikes`);
* :mod:`~snntorch_async.data.tonic`: tonic event datasets (N-MNIST, SHD, DVSGesture); tonic
  itself is imported on first use.

Every public name is importable from ``snntorch_async.data``. Other datasets plug into the same
pieces: encode to a ``[N, T, *features]`` tensor, wrap it in :class:`SpikeDataset`, load it with
:func:`make_loader`.
"""

from .digits import DigitsData, load_digits_spikes
from .encoding import ENCODERS, CurrentEncoding, LatencyEncoding, RateEncoding, encode
from .loading import (
    EpochShuffleSampler,
    SpikeDataset,
    collate_time_major,
    make_loader,
    unpack_batch,
)
from .tonic import (
    TONIC_DATASETS,
    DatasetNotFoundError,
    EventFrames,
    SyntheticEvents,
    collate_padded,
    events_to_frames,
    load_tonic,
    synthetic_events,
)

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
    "unpack_batch",
    "TONIC_DATASETS",
    "DatasetNotFoundError",
    "EventFrames",
    "SyntheticEvents",
    "collate_padded",
    "events_to_frames",
    "load_tonic",
    "synthetic_events",
]
