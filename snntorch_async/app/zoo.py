"""Small built-in snnTorch architectures, and loading a user's model from a Python file.

Every zoo model is a plain snnTorch ``nn.Sequential`` with ``snn.Leaky(init_hidden=True,
reset_mechanism="zero", reset_delay=False)`` neurons: zero reset without delay is the rule that
maps exactly onto Lava's LIF, so every feed-forward zoo model exports to Lava. ``shd_rmlp`` is
recurrent: its hidden layer is an ``snn.RLeaky`` with the same reset rule and an all-to-all
``nn.Linear`` recurrence (it runs under every scheduler). The command line refers to
them by name (``--model digits_mlp``) and stores that name and its settings in checkpoints, so a
checkpoint always rebuilds the architecture it was trained with.

A user's own model comes from a Python file (``--model-file my_net.py``) that defines either a
module-level ``model`` (an ``nn.Module``) or a function ``build_model()`` returning one, and
optionally ``input_shape`` (per-sample features of one time step, e.g. ``(64,)``).
"""

from __future__ import annotations

import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import snntorch as snn
from torch import nn
from ..errors import ConfigError

__all__ = ["ModelFileError", "ZooEntry", "ZOO", "build_zoo_model", "load_model_file"]


class ModelFileError(ValueError):
    """A user's model file cannot be loaded or does not define a model."""


def _leaky(beta: float, threshold: float, *, output: bool = False) -> snn.Leaky:
    return snn.Leaky(
        beta=beta,
        threshold=threshold,
        init_hidden=True,
        reset_mechanism="zero",
        reset_delay=False,
        output=output,
    )


#: Weight initialisations a zoo MLP can use (``init=...``): torch's default, or xavier-uniform
#: (the paper reference's regime, with ``bias=False``).
INITS = ("default", "xavier")


def _mlp(
    sizes: tuple[int, ...],
    beta: float,
    threshold: float,
    bias: bool = True,
    init: str = "default",
) -> nn.Sequential:
    if init not in INITS:
        raise ConfigError(
            f"zoo MLP: init={init!r} is not known; expected one of {list(INITS)}. Fix: "
            'init="xavier" (xavier-uniform weights) or leave it out.'
        )
    mods: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(n_in, n_out, bias=bias)
        if init == "xavier":
            nn.init.xavier_uniform_(lin.weight)
        mods += [lin, _leaky(beta, threshold, output=i == len(sizes) - 2)]
    return nn.Sequential(*mods)


def digits_mlp(
    *,
    hidden: int = 64,
    beta: float = 0.9,
    threshold: float = 1.0,
    bias: bool = True,
    init: str = "default",
) -> nn.Sequential:
    """64-``hidden``-10 Leaky MLP for the 8×8 digits (input ``[T, B, 64]``)."""
    return _mlp((64, hidden, 10), beta, threshold, bias, init)


def digits_mlp2(
    *,
    hidden: int = 64,
    beta: float = 0.9,
    threshold: float = 1.0,
    bias: bool = True,
    init: str = "default",
) -> nn.Sequential:
    """64-``hidden``-``hidden``-10 Leaky MLP (two hidden layers) for the digits. The paper
    reference's regime: ``beta=math.exp(-10), threshold=0.3, bias=False, init="xavier"``."""
    return _mlp((64, hidden, hidden, 10), beta, threshold, bias, init)


def digits_conv(*, channels: int = 8, beta: float = 0.9, threshold: float = 1.0) -> nn.Sequential:
    """Conv(1→``channels``, 3×3, pad 1) → Leaky → AvgPool 2 → Flatten → Linear → Leaky.

    Input ``[T, B, 1, 8, 8]`` (the CLI reshapes the flat digits for it).
    """
    return nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1),
        _leaky(beta, threshold),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(channels * 16, 10),
        _leaky(beta, threshold, output=True),
    )


def nmnist_mlp(
    *,
    hidden: int = 128,
    beta: float = 0.9,
    threshold: float = 1.0,
    bias: bool = True,
    init: str = "default",
) -> nn.Sequential:
    """2·34·34-``hidden``-10 Leaky MLP for N-MNIST frames (input ``[T, B, 2, 34, 34]``).
    ``bias``/``init`` as in :func:`digits_mlp2` (the reference's regime: ``bias=False,
    init="xavier"``)."""
    return nn.Sequential(
        nn.Flatten(), *_mlp((2 * 34 * 34, hidden, 10), beta, threshold, bias, init)
    )


def shd_mlp(
    *,
    hidden: int = 128,
    beta: float = 0.9,
    threshold: float = 1.0,
    bias: bool = True,
    init: str = "default",
) -> nn.Sequential:
    """700-``hidden``-20 Leaky MLP for SHD (input ``[T, B, 1, 700]``); ``bias``/``init`` as in
    :func:`digits_mlp2`."""
    return nn.Sequential(nn.Flatten(), *_mlp((700, hidden, 20), beta, threshold, bias, init))


def shd_rmlp(
    *, hidden: int = 128, beta: float = 0.9, threshold: float = 1.0, all_to_all: bool = True
) -> nn.Sequential:
    """700-``hidden``-20 for SHD (input ``[T, B, 1, 700]``) whose hidden layer is recurrent:
    ``snn.RLeaky`` with an all-to-all ``nn.Linear(hidden, hidden)`` recurrence (bias included;
    ``all_to_all=False``: one-to-one ``V = 1``), feeding a Leaky output layer::

        mem[t] = β·mem[t-1] + W·x[t] + b + (W_rec·spk[t-1] + b_rec)
    """
    rec = dict(linear_features=hidden) if all_to_all else dict(all_to_all=False, V=1.0)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(700, hidden),
        snn.RLeaky(
            beta=beta,
            threshold=threshold,
            init_hidden=True,
            reset_mechanism="zero",
            reset_delay=False,
            **rec,
        ),
        nn.Linear(hidden, 20),
        _leaky(beta, threshold, output=True),
    )


def dvsgesture_mlp(
    *, hidden: int = 128, beta: float = 0.9, threshold: float = 1.0
) -> nn.Sequential:
    """Pool 4 → 2·32·32-``hidden``-11 Leaky MLP for DVSGesture (input ``[T, B, 2, 128, 128]``)."""
    return nn.Sequential(
        nn.AvgPool2d(4), nn.Flatten(), *_mlp((2 * 32 * 32, hidden, 11), beta, threshold)
    )


@dataclass(frozen=True, kw_only=True)
class ZooEntry:
    """One built-in architecture.

    Attributes:
        build: Factory taking keyword settings (``hidden``, ``beta``, ``threshold`` ...).
        input_shape: Per-sample features of one time step.
        dataset: The dataset it is made for (the CLI's default dataset for it).
        defaults: Default keyword settings (what a checkpoint records when none are given).
    """

    build: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    dataset: str
    defaults: dict = field(default_factory=dict)


#: Built-in architectures by name.
ZOO: dict[str, ZooEntry] = {
    "digits_mlp": ZooEntry(build=digits_mlp, input_shape=(64,), dataset="digits"),
    "digits_mlp2": ZooEntry(build=digits_mlp2, input_shape=(64,), dataset="digits"),
    "digits_conv": ZooEntry(build=digits_conv, input_shape=(1, 8, 8), dataset="digits"),
    "nmnist_mlp": ZooEntry(build=nmnist_mlp, input_shape=(2, 34, 34), dataset="nmnist"),
    "shd_mlp": ZooEntry(build=shd_mlp, input_shape=(1, 700), dataset="shd"),
    "shd_rmlp": ZooEntry(build=shd_rmlp, input_shape=(1, 700), dataset="shd"),
    "dvsgesture_mlp": ZooEntry(
        build=dvsgesture_mlp, input_shape=(2, 128, 128), dataset="dvsgesture"
    ),
}


def build_zoo_model(name: str, **settings) -> nn.Module:
    """Build the zoo architecture ``name`` with keyword ``settings`` (e.g. ``hidden=32``)."""
    try:
        entry = ZOO[name]
    except KeyError:
        raise ValueError(
            f"Unknown model {name!r}; expected one of {sorted(ZOO)}. Fix: pick a built-in model "
            "or pass your own with --model-file path.py."
        ) from None
    try:
        return entry.build(**settings)
    except TypeError as exc:
        raise ValueError(f"Model {name!r} does not take the settings {settings}: {exc}") from None


def load_model_file(path: str | Path) -> tuple[nn.Module, tuple[int, ...] | None]:
    """Run a user's Python file and take the model it defines.

    The file defines ``model`` (an ``nn.Module``) or ``build_model()`` returning one; an optional
    ``input_shape`` gives the per-sample features of one time step.

    Returns:
        ``(model, input_shape or None)``.

    Raises:
        ModelFileError: The file is missing, fails to run, or defines no model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(
            f"Model file {str(path)!r} does not exist. Fix: pass the path of a Python file that "
            "defines `model = nn.Sequential(...)` or `def build_model(): ...`."
        )
    try:
        namespace = runpy.run_path(str(path), run_name="snntorch_async_model_file")
    except Exception as exc:
        raise ModelFileError(
            f"Running model file {str(path)!r} raised {type(exc).__name__}: {exc}. Fix: the file "
            "must run on its own (python path.py) and define `model` or `build_model()`."
        ) from exc
    model = namespace.get("model")
    if model is None and callable(namespace.get("build_model")):
        model = namespace["build_model"]()
    if not isinstance(model, nn.Module):
        got = type(model).__name__ if model is not None else "neither `model` nor `build_model`"
        raise ModelFileError(
            f"Model file {str(path)!r} defines {got}; expected a module-level `model` that is a "
            "torch.nn.Module, or a function `build_model()` returning one. Fix: add e.g. "
            "`model = nn.Sequential(nn.Linear(64, 10), snn.Leaky(beta=0.9, init_hidden=True, "
            "output=True))`."
        )
    shape = namespace.get("input_shape")
    return model, (tuple(int(s) for s in shape) if shape is not None else None)
