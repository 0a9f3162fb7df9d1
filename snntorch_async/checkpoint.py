"""Training checkpoints: atomic saves, ``weights_only`` loads, RNG states, architecture checks.

A checkpoint is a ``dict`` of tensors and primitive containers only (so it loads with
``torch.load(..., weights_only=True)``), written to a temporary file in the same folder and moved
into place with ``os.replace`` (a crash never leaves a half-written checkpoint). The random
number generators (torch CPU and CUDA, Python ``random``, NumPy) are stored as tensors and
primitives; the architecture as a list of strings (module paths and types, tensor names, shapes
and dtypes) plus its SHA-256 fingerprint, so loading into another architecture fails clearly.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

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
    mods = [f"{n or '<root>'}:{type(m).__module__}.{type(m).__qualname__}" for n, m in model.named_modules()]
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
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
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
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_atomic(obj: dict, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, *, map_location=None) -> dict[str, Any]:
    """Load a checkpoint written by :func:`fit` (``weights_only=True``: tensors and primitives)."""
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise CheckpointError(
            f"Could not load the checkpoint {str(path)!r} with torch.load(weights_only=True): "
            f"{str(e).splitlines()[0]}. Fix: point checkpoint_path at a file written by fit()."
        ) from e
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a snntorch_async training checkpoint (format {FORMAT}).")
    return ck


def check_architecture(ck: dict, model: nn.Module, path) -> None:
    """Raise :class:`CheckpointError` naming the differences if ``ck`` is for another model."""
    arch = architecture(model)
    if ck["fingerprint"] == fingerprint(arch):
        return
    old, new = set(ck["architecture"]), set(arch)
    diff = [f"checkpoint has {e}" for e in sorted(old - new)][:4] + [
        f"model has {e}" for e in sorted(new - old)][:4]
    raise CheckpointError(
        f"The checkpoint {str(path)!r} was written for a different architecture than the model "
        f"given to fit(); differences: {'; '.join(diff) or 'module order'}. Fix: build the same "
        "model as the checkpoint's, or use another checkpoint_path (or resume=False)."
    )
