"""Training checkpoints: atomic saves, ``weights_only`` loads, RNG states, architecture checks.

A checkpoint is a ``dict`` of tensors and primitive containers only (so it loads with
``torch.load(..., weights_only=True)``), written to a temporary file in the same folder and moved
into place with ``os.replace`` (a crash never leaves a half-written checkpoint). Its
``"metadata"`` entry holds the caller's primitives (``TrainConfig.metadata``; the command line
stores there how to rebuild the model), so one file is the whole checkpoint. The random
number generators (torch CPU and CUDA, Python ``random``, NumPy) are stored as tensors and
primitives; the architecture as a list of strings (module paths and types, tensor names, shapes
and dtypes) plus its SHA-256 fingerprint, so loading into another architecture fails clearly.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._io import atomic_path
from .errors import SnnTorchAsyncError

__all__ = [
    "FORMAT",
    "CheckpointError",
    "architecture",
    "fingerprint",
    "rng_state",
    "set_rng_state",
    "save_atomic",
    "load_checkpoint",
    "check_architecture",
]

#: Version of the checkpoint layout.
FORMAT = 1


class CheckpointError(SnnTorchAsyncError, ValueError):
    """A checkpoint does not fit the model or the configuration it is resumed with."""


def architecture(model: nn.Module) -> list[str]:
    """Module paths and types, then state-dict names, shapes and dtypes, as strings."""
    mods = [
        f"{n or '<root>'}:{type(m).__module__}.{type(m).__qualname__}"
        for n, m in model.named_modules()
    ]
    tensors = [f"{k}:{list(v.shape)}:{v.dtype}" for k, v in model.state_dict().items()]
    return mods + tensors


def fingerprint(arch: list[str]) -> str:
    """SHA-256 of :func:`architecture`."""
    return hashlib.sha256("\n".join(arch).encode()).hexdigest()


def rng_state() -> dict[str, Any]:
    """Every global random number generator's state, as tensors and primitives."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    st: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(st["torch"])
    v, keys, gauss = st["python"]
    random.setstate((v, tuple(keys), gauss))
    n = st["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_atomic(obj: dict, path: Path) -> None:
    """``torch.save`` through :func:`snntorch_async._io.atomic_path` (temporary file, fsync,
    ``os.replace``): a failed save leaves neither a partial checkpoint nor a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, what="checkpoint") as tmp:
        torch.save(obj, tmp)


def _diagnose(path: Path, exc: Exception) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in a few words."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes), so it is not a checkpoint"
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":  # torch.save writes a zip archive
        return f"it is not a PyTorch checkpoint ({size} bytes that do not start like one)"
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc).lower():
        return (
            "it holds pickled Python objects besides tensors and plain containers, which are "
            "never loaded (they can run code); fit() never writes such objects"
        )
    return f"it is truncated or damaged ({size} bytes of an incomplete PyTorch archive)"


def load_checkpoint(path: str | os.PathLike, *, map_location=None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`fit` (``weights_only=True``: tensors and primitives).

    Raises:
        CheckpointError: The file is missing, empty, truncated, not a checkpoint, holds pickled
            code, or was written by something other than :func:`fit`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"The checkpoint {str(path)!r} does not exist. Fix: check the path, "
            "or train first (fit with TrainConfig(checkpoint_path=...))."
        )
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - diagnosed and re-raised
        raise CheckpointError(
            f"Cannot load the checkpoint {str(path)!r}: {_diagnose(path, e)}. Fix: point at a "
            "complete file written by fit() or `snntorch-async train` (retrain if it was lost)."
        ) from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CheckpointError(
            f"{str(path)!r} is a PyTorch file but not a snntorch_async training checkpoint "
            f"(format {FORMAT}). Fix: point at a file written by fit() or `snntorch-async train`."
        )
    ck.setdefault("metadata", None)
    return ck


def check_architecture(ck: dict, model: nn.Module, path) -> None:
    """Raise :class:`CheckpointError` naming the differences if ``ck`` is for another model."""
    arch = architecture(model)
    if ck["fingerprint"] == fingerprint(arch):
        return
    old, new = set(ck["architecture"]), set(arch)
    diff = [f"checkpoint has {e}" for e in sorted(old - new)][:4] + [
        f"model has {e}" for e in sorted(new - old)
    ][:4]
    raise CheckpointError(
        f"The checkpoint {str(path)!r} was written for a different architecture than the model "
        f"given to fit(); differences: {'; '.join(diff) or 'module order'}. Fix: build the same "
        "model as the checkpoint's, or use another checkpoint_path (or resume=False)."
    )
