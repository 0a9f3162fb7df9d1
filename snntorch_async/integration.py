"""Thin integration points used by the command line and the demo.

Each function imports the piece it needs lazily (schedulers, ``training``, ``metrics``, ``data``,
``lava_bridge``), so the command line starts fast and works with whatever is installed. This is
the one place where the command line meets the library's APIs.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)

__all__ = [
    "EvalSummary",
    "build_model",
    "digits_data",
    "loader",
    "evaluate_model",
    "lava_check",
    "progress",
    "scheduler_class",
    "take",
    "train_model",
]


def progress(*, total: int, desc: str, disable: bool | None = None):
    """A tqdm progress bar (drawn on stderr, hidden when not a terminal unless forced)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=disable)


def scheduler_class(name: str):
    """The scheduler class ``name`` exported from ``snntorch_async`` (``None`` if absent)."""
    import snntorch_async

    return getattr(snntorch_async, name, None)


def build_model(name: str, **settings) -> nn.Module:
    """A zoo model (see :mod:`snntorch_async.zoo`)."""
    from .zoo import build_zoo_model

    return build_zoo_model(name, **settings)


def take(dataset, n: int | None):
    """The first ``n`` samples of a dataset (all if ``n`` is ``None``)."""
    if n is None or n >= len(dataset):
        return dataset
    from torch.utils.data import Subset

    return Subset(dataset, range(n))


def digits_data(*, steps: int, seed: int, flatten: bool = True):
    """The offline digits (``data.load_digits_spikes``): ``(train, test)`` datasets."""
    from .data import load_digits_spikes

    digits = load_digits_spikes(num_steps=steps, seed=seed, flatten=flatten)
    return digits.train, digits.test


def loader(dataset, *, batch_size: int, shuffle: bool = False, seed: int = 0):
    """Time-major batches ``([T, B, *features], [B])``; pads recordings of different lengths."""
    from .data import make_loader

    return make_loader(dataset, batch_size=batch_size, shuffle=shuffle, seed=seed)


class EvalSummary(NamedTuple):
    """One evaluation: :class:`snntorch_async.metrics.Metrics` plus spikes per layer.

    Attributes:
        metrics: The metrics over every sample (``metrics.summary()`` for the averages).
        spikes_per_layer: Mean spikes per sample in each layer.
    """

    metrics: object
    spikes_per_layer: tuple[float, ...]


def evaluate_model(
    model: nn.Module,
    dataset,
    *,
    scheduler,
    batch_size: int = 256,
    on_batch: Callable[[], None] | None = None,
) -> EvalSummary:
    """Run ``model`` over ``dataset`` under ``scheduler`` (no gradients) and collect metrics."""
    from . import metrics
    from .simulate import simulate

    batches, per_layer, info = [], None, None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x, y in loader(dataset, batch_size=batch_size):
                res = simulate(model, x, scheduler=scheduler)
                batches.append(metrics.sample_metrics(res, y, binary_inputs=metrics.is_binary(x)))
                counts = res.spike_counts.sum(0).sum(0).to(torch.float64)  # [L]
                per_layer = counts if per_layer is None else per_layer + counts
                info = (res.neurons, x.shape[0], res.output_lag)
                if on_batch is not None:
                    on_batch()
    finally:
        model.train(was_training)
    m = metrics.Metrics.from_batches(
        batches, neurons=info[0], num_steps=info[1], output_lag=info[2], scheduler=repr(scheduler)
    )
    return EvalSummary(m, tuple(float(c) / m.num_samples for c in per_layer))


def train_model(
    model: nn.Module,
    train,
    *,
    scheduler,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    checkpoint: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> dict:
    """Train with :func:`snntorch_async.training.fit` on a dataset of ``(x [T, *f], y)``.

    Returns:
        The history as ``{"loss": [...], "accuracy": [...], "spike_density": [...]}`` (per epoch).

    Raises:
        snntorch_async.training.TrainingInterrupted: Ctrl-C (after saving ``checkpoint``).
    """
    from .training import TrainConfig, fit

    config = TrainConfig(epochs=epochs, lr=lr, seed=seed, checkpoint_path=checkpoint)
    data = loader(train, batch_size=batch_size, shuffle=True, seed=seed)
    history = fit(model, data, scheduler=scheduler, config=config, resume=resume,
                  progress=progress)
    return history_dict(history)


def history_dict(history) -> dict:
    """The per-epoch lists of a :class:`snntorch_async.training.History`."""
    return {k: list(getattr(history, k)) for k in ("loss", "accuracy", "spike_density")}


def lava_check(model: nn.Module, inputs: Tensor, *, echo: Callable[[str], None]) -> list[str]:
    """Export ``model`` to Lava, run the fixed-point emulator, and verify against real Lava.

    Stages: ``lava_bridge.convert`` (float spec) → ``quantize`` (Loihi fixed point) → ``emulate``
    (bit-exact torch emulator), compared with our ``Pipelined`` engine (Lava's timing, float) to
    measure the quantization's effect; then, when Lava is installed, ``verify`` runs Lava in
    float (against ``Pipelined``) and in fixed point (against the emulator).

    Returns lines for the report: what was done, the agreement, or why a stage was skipped and
    how to enable it. Never raises for a missing piece.
    """
    lines: list[str] = []
    try:
        lb = importlib.import_module("lava_bridge")
        from .schedulers import Pipelined
        from .simulate import simulate

        spec = lb.convert(model, input_shape=tuple(inputs.shape[2:]))
        lines.append(f"converted to a NetworkSpec ({len(spec.layers)} layers, zero reset)")
        fixed = lb.quantize(spec).spec
        emu = lb.emulate(fixed, inputs).spikes
        with torch.no_grad():
            piped = simulate(model, inputs, scheduler=Pipelined()).spikes
        agree = float((emu == piped).to(torch.float64).mean())
        lines.append(
            f"quantized to Loihi fixed point; emulator vs float Pipelined engine: {100 * agree:.2f}% "
            f"of output spike slots agree ({int(emu.sum())} vs {int(piped.sum())} output spikes "
            f"on {inputs.shape[1]} samples x {inputs.shape[0]} steps)"
        )
    except (ImportError, AttributeError) as exc:
        return lines + [f"the Lava export is not available in this installation ({exc})."]
    except Exception as exc:  # report, do not abort the demo
        log.exception("Lava export failed")
        return lines + [f"export to Lava failed: {type(exc).__name__}: {exc}"]
    if not lava_available():
        lines.append(
            "Lava is not installed, so the exported network was not run on Lava. Enable it with "
            "Python 3.10: pip install 'snntorch-async[lava]' (or run `make demo`, which sets this "
            "up)."
        )
        return lines
    for what, source, kw in (("float", model, {}), ("fixed point", fixed, {"fixed_point": True})):
        try:
            echo(f"running {inputs.shape[1]} sample(s) on Lava ({what}) ...")
            r = lb.verify(source, inputs, **kw)
            lines.append(
                f"Lava ({what}) vs {r.engine}: {r.mismatches} mismatching spikes out of "
                f"{r.compared} compared" + (" (spike for spike)" if r.mismatches == 0 else "")
            )
        except Exception as exc:
            log.exception("Lava verification failed")
            lines.append(f"Lava ({what}) verification failed: {type(exc).__name__}: {exc}")
    return lines


def preload_lava() -> None:
    """Import Lava's runtime now, if installed (see ``lava_bridge._build._import_lava_runtime``:
    it tolerates a start method already set by a progress bar)."""
    if not lava_available():
        return
    try:
        importlib.import_module("lava_bridge._build").require_lava()
    except Exception as exc:  # report it where Lava is used
        log.warning("Lava could not be imported: %s", exc)


def lava_available() -> bool:
    """Whether Lava can be imported here (the one definition: ``lava_bridge.lava_available``)."""
    return importlib.import_module("lava_bridge").lava_available()
