"""How a command-line checkpoint rebuilds its model and its data.

``snntorch-async train`` stores a *recipe* inside the checkpoint (``TrainConfig.metadata``, one
file, no sidecar): the zoo model and its settings or the model file, the per-step input shape,
the dataset, the time steps and the seed. ``evaluate``, ``export`` and ``verify`` rebuild the
model and the data from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import CliError

__all__ = [
    "DATASETS",
    "RECIPE_FORMAT",
    "build_model",
    "check_dataset",
    "load_data",
    "model_from_checkpoint",
    "read_recipe",
    "take",
]

DATASETS = ("digits", "nmnist", "shd", "dvsgesture")
#: Version of the recipe stored in a checkpoint's ``"metadata"``.
RECIPE_FORMAT = "snntorch-async-cli-recipe/2"
#: Where checkpoints of snntorch-async 0.1 kept their recipe (no longer read).
OLD_SIDECAR_SUFFIX = ".meta.json"


def check_dataset(name: str) -> str:
    """The canonical (lower-case) dataset name, or a :class:`CliError` listing the choices."""
    key = name.lower()
    if key not in DATASETS:
        raise CliError(
            f"--dataset: unknown dataset {name!r}; expected one of "
            f"{', '.join(DATASETS)}. Fix: e.g. --dataset digits (offline) or "
            "--dataset nmnist --root DIR."
        )
    return key


def take(dataset, n: int | None):
    """The first ``n`` samples of a dataset (all of them if ``n`` is ``None``)."""
    if n is None or n >= len(dataset):
        return dataset
    from torch.utils.data import Subset

    return Subset(dataset, range(n))


def build_model(recipe: dict[str, Any]):
    """``(model, input_shape)`` from a recipe."""
    from .zoo import ZOO, build_zoo_model, load_model_file

    if recipe.get("model_file"):
        model, shape = load_model_file(recipe["model_file"])
        return model, tuple(recipe.get("input_shape") or shape or ())
    name = recipe["model"]
    return build_zoo_model(name, **recipe.get("model_settings", {})), ZOO[name].input_shape


def load_data(
    recipe: dict[str, Any],
    *,
    train: bool,
    root: str = "data",
    download: bool = False,
    limit: int | None = None,
):
    """The dataset named in ``recipe`` for the model's input shape, as a torch Dataset."""
    name, steps, shape = recipe["dataset"], recipe["steps"], tuple(recipe["input_shape"] or ())
    if name == "digits":
        from ..data import load_digits_spikes

        if shape not in ((64,), (1, 8, 8)):
            raise CliError(
                f"The model expects per-step inputs of shape {list(shape)}, but the digits are "
                "[64] (or [1, 8, 8]). Fix: set `input_shape = (64,)` in your model file and give "
                "the model 64 inputs, or choose another --dataset."
            )
        digits = load_digits_spikes(
            num_steps=steps, seed=recipe.get("seed", 0), flatten=shape == (64,)
        )
        ds = digits.train if train else digits.test
    else:
        from ..data import DatasetNotFoundError, load_tonic

        try:
            ds = load_tonic(name, root, train=train, n_time_bins=steps, download=download)
        except DatasetNotFoundError as exc:
            raise CliError(f"--dataset {name}: {exc}") from None
    return take(ds, limit)


def read_recipe(checkpoint: str, *, option: str = "CHECKPOINT") -> tuple[dict, dict]:
    """``(checkpoint dict, recipe)`` of a checkpoint written by ``snntorch-async train``.

    Args:
        checkpoint: Its path.
        option: The command-line argument that named it (for the error messages).
    """
    from ..checkpoint import CheckpointError, load_checkpoint

    try:
        ck = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise CliError(f"{option} {checkpoint}: {exc}") from None
    recipe = ck["metadata"]
    if not isinstance(recipe, dict) or recipe.get("format") != RECIPE_FORMAT:
        old = Path(str(checkpoint) + OLD_SIDECAR_SUFFIX)
        why = (
            f"it was written by an older snntorch-async, which kept the model recipe in "
            f"{old.name}, a format no longer read"
            if old.is_file()
            else "it holds no command-line model recipe (it was written by fit() from Python)"
        )
        raise CliError(
            f"{option} {checkpoint}: cannot rebuild its model: {why}. Fix: retrain "
            "with `snntorch-async train`, or evaluate it from Python with "
            "snntorch_async.evaluate."
        )
    return ck, recipe


def model_from_checkpoint(checkpoint: str, *, option: str = "CHECKPOINT"):
    """``(model in eval mode, recipe)`` of a checkpoint written by ``snntorch-async train``."""
    ck, recipe = read_recipe(checkpoint, option=option)
    model, _ = build_model(recipe)
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as exc:
        arch = recipe.get("model") or recipe.get("model_file")
        first = " ".join(str(exc).splitlines()[:3])
        raise CliError(
            f"{option} {checkpoint}: its weights do not fit the model {arch!r} named in its "
            f"recipe ({first}). The model file changed since training, or the checkpoint was "
            "edited. Fix: use the model it was trained with, or retrain."
        ) from None
    return model.eval(), recipe
