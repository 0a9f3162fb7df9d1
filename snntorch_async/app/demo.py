"""The main job behind ``snntorch-async demo``: sync- vs async-trained, executed both ways, to Lava.

:func:`run_demo` trains the same small snnTorch network on the offline digits data twice (with
``LayerSync``, the paper's "sync-trained" baseline, and with an asynchronous scheduler at a stated
``F``, "async-trained"), evaluates both under ``LayerSync`` and asynchronous execution at several
``F``, exports the async-trained model to Lava (fixed point, emulator, and real Lava when it is
installed), and writes a report with :func:`snntorch_async.app.report.write_report`.

The heavy pieces live elsewhere (``training.fit``, ``metrics.evaluate``, ``lava_bridge``); this
module only wires them together.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data import load_digits_spikes, make_loader
from ..metrics import evaluate
from ..schedulers import LayerSync, MomentumAsync, RandomAsync, Record
from ..simulate import simulate
from ..training import TrainConfig, fit
from .figures import Raster
from .lava import lava_check
from .recipe import take
from .regimes import CONTRAST, REFERENCE, Regime
from .report import DemoResults, EvalRow, check_writable, write_report
from .zoo import build_zoo_model

__all__ = ["DemoConfig", "FULL", "QUICK", "run_demo"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Size of a demo run.

    Attributes:
        steps: Time steps T per sample (rate-coded digits).
        hidden: Hidden layer width of the 64-hidden-10 Leaky MLP.
        epochs: Training epochs per training mode.
        train_samples: Training samples used (``None``: all).
        test_samples: Test samples used (``None``: all).
        batch_size: Mini-batch size.
        lr: Adam learning rate.
        train_forward_group_size: F of the asynchronous training.
        eval_forward_group_sizes: The F values of asynchronous execution.
        momentum: Also train and execute with ``MomentumAsync``.
        lava_samples: Test samples sent through the Lava export and verification.
        seed: Seed of data split, initialisation and schedulers.
        regime: The neuron regime of the main experiment (:data:`~.regimes.REFERENCE`: the
            paper reference's, where the effect of unlayered backprop appears).
        contrast: A second regime trained the same way (sync and RandomAsync only) and shown
            beside the main one in the report's headline (``None``: skipped).
    """

    steps: int = 20
    hidden: int = 64
    epochs: int = 12
    train_samples: int | None = None
    test_samples: int | None = None
    batch_size: int = 64
    lr: float = 5e-3
    train_forward_group_size: int = 8
    eval_forward_group_sizes: tuple[int, ...] = (1, 8, 16, 64)
    momentum: bool = True
    lava_samples: int = 16
    seed: int = 0
    regime: Regime = REFERENCE
    contrast: Regime | None = CONTRAST


#: The full demo (a few minutes on 2 CPU cores).
FULL = DemoConfig()
#: ``--quick``: every stage, tiny sizes (well under 2 minutes on 2 CPU cores).
QUICK = DemoConfig(
    steps=10,
    hidden=32,
    epochs=3,
    train_samples=512,
    test_samples=128,
    batch_size=64,
    lr=1e-2,
    eval_forward_group_sizes=(2, 8),
    momentum=False,
    lava_samples=2,
)


def _async_schedulers(cfg: DemoConfig, F: int) -> list[tuple[str, object]]:
    out = [("RandomAsync", RandomAsync(forward_group_size=F, seed=cfg.seed))]
    if cfg.momentum:
        out.append(("MomentumAsync", MomentumAsync(forward_group_size=F, seed=cfg.seed)))
    return out


def _evaluate(model, dataset, scheduler, *, train_mode, exec_mode, F) -> EvalRow:
    metrics = evaluate(model, make_loader(dataset, batch_size=256), scheduler=scheduler)
    m = metrics.summary()
    return EvalRow(
        train_mode=train_mode,
        exec_mode=exec_mode,
        forward_group_size=F,
        accuracy=m["accuracy"],
        spike_density=m["spike_density"],
        latency_steps=m["decision_step"],
        latency_forward_steps=m["decision_forward_steps"],
        synops=m["synops_effective"],
        spikes_per_layer=metrics.spikes_per_layer,
    )


def _layer_spikes(
    model, x, scheduler
) -> tuple[np.ndarray, tuple[int, ...], np.ndarray, np.ndarray]:
    """Every layer's spikes and their forward steps, stacked: ``(spikes [T, B, N], layer sizes,
    spike forward steps [T, B, N], forward steps [T, B])``."""
    record = Record(layer_spikes=True, spike_forward_steps=True)
    with torch.no_grad():
        res = simulate(model, x, scheduler=scheduler, record=record)
    layers = [s.flatten(2).numpy() for s in res.layer_spikes]
    order = np.concatenate([k.flatten(2).numpy() for k in res.spike_forward_steps], axis=2)
    sizes = tuple(a.shape[2] for a in layers)
    return np.concatenate(layers, axis=2), sizes, order, res.forward_steps.numpy()


def _rasters(models: dict, test, cfg: DemoConfig) -> dict:
    """Two panels that show the difference: the first async-trained model executed LayerSync
    and fully asynchronously (RandomAsync at the smallest F), on the test sample (of the first
    64) whose spikes differ most between the two; each spike at its forward step's share of
    its time step (``figures.raster_points``)."""
    mode = list(models)[1]
    F = min(cfg.eval_forward_group_sizes)
    x = next(iter(make_loader(test, batch_size=64)))[0]
    sync, sizes, sync_k, sync_s = _layer_spikes(models[mode], x, LayerSync())
    asyn, _, asyn_k, asyn_s = _layer_spikes(
        models[mode], x, RandomAsync(forward_group_size=F, seed=cfg.seed)
    )
    differ = (sync != asyn).sum((0, 2))
    i = int(np.argmax(differ))  # first of the largest
    note = (
        f"{int(differ[i])} spikes differ"
        if differ[i]
        else f"no sample of the first {len(differ)} differs in its spikes, only in their order"
    )
    return {
        f"trained {mode}, executed LayerSync (test sample {i})": Raster(
            sync[:, i], sizes, sync_k[:, i], sync_s[:, i]
        ),
        f"trained {mode}, executed RandomAsync F={F} (test sample {i}; {note})": Raster(
            asyn[:, i], sizes, asyn_k[:, i], asyn_s[:, i]
        ),
    }


def run_demo(
    cfg: DemoConfig,
    out: str | Path,
    *,
    command: str = "snntorch-async demo",
    echo: Callable[[str], None] = lambda s: None,
) -> Path:
    """Run the demo and write ``out/report.md`` (atomically); return the report's path.

    The numbers are a function of ``cfg`` (its seed included): everything random is seeded, and
    torch runs on one thread for the demo's duration, so that machines with more cores add float
    sums in the same order (a sum added in another order can make a neuron near its threshold
    fire a step earlier or later). See the README for what can still differ across platforms.

    Args:
        cfg: Sizes (:data:`QUICK` or :data:`FULL`, or your own).
        out: Report folder (replaced only once the new report is complete).
        command: The command line shown in the report.
        echo: Where progress messages go (the CLI passes ``print``; the library stays silent).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run_demo(cfg, out, command=command, echo=echo)
    finally:
        torch.set_num_threads(threads)


def _run_demo(cfg: DemoConfig, out: str | Path, *, command: str, echo) -> Path:
    import lava_bridge

    out = check_writable(out)
    lava_bridge.lava_available()  # imports Lava's runtime now, before the first progress bar
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    digits = load_digits_spikes(num_steps=cfg.steps, seed=cfg.seed)
    train, test = take(digits.train, cfg.train_samples), take(digits.test, cfg.test_samples)
    echo(f"digits: {len(train)} training / {len(test)} test samples, T = {cfg.steps}")

    F = cfg.train_forward_group_size
    modes: list[tuple[str, object]] = [("sync (LayerSync)", LayerSync())]
    asyncs = _async_schedulers(cfg, F)
    modes += [(f"async ({name} F={F})", sch) for name, sch in asyncs]

    models, histories = _train_all(cfg, cfg.regime, modes, train, echo)
    execs: list[tuple[str, object, int | None]] = [("LayerSync", LayerSync(), None)]
    for f in cfg.eval_forward_group_sizes:
        execs += [(name, sch, f) for name, sch in _async_schedulers(cfg, f)]
    rows = []
    progress = tqdm(total=len(models) * len(execs), desc="evaluating", leave=False)
    for mode, model in models.items():
        for name, sch, f in execs:
            rows.append(_evaluate(model, test, sch, train_mode=mode, exec_mode=name, F=f))
            progress.update(1)
    progress.close()

    rasters = _rasters(models, test, cfg)

    contrast_rows: list[EvalRow] = []
    if cfg.contrast is not None:  # the same experiment in the other regime, RandomAsync only
        c_modes = modes[:2]
        c_models, _ = _train_all(cfg, cfg.contrast, c_modes, train, echo)
        c_execs = [
            ("LayerSync", LayerSync(), None),
            ("RandomAsync", RandomAsync(forward_group_size=F, seed=cfg.seed), F),
        ]
        for mode, model in c_models.items():
            for name, sch, f in c_execs:
                contrast_rows.append(
                    _evaluate(model, test, sch, train_mode=mode, exec_mode=name, F=f)
                )

    lava_model = models[list(models)[-1]]
    echo("exporting to Lava ...")
    x_lava = next(iter(make_loader(test, batch_size=cfg.lava_samples)))[0]
    lava_lines = lava_check(lava_model, x_lava, echo=echo)

    config = {
        "data": "scikit-learn digits (8x8), rate-coded, "
        f"{len(train)} train / {len(test)} test samples, T = {cfg.steps}",
        "network": f"64-{cfg.hidden}-10 snn.Leaky MLP (zero reset, reset_delay=False) in "
        f"{cfg.regime.label}",
        "training": f"{cfg.epochs} epochs, Adam lr {cfg.lr}, batch {cfg.batch_size}, "
        f"seed {cfg.seed}; async training at F = {F} (gradient rule: the default, "
        "QueuedCarriers)",
        "contrast": "not run" if cfg.contrast is None else f"the same in {cfg.contrast.label}",
        "asynchronous execution at F": ", ".join(map(str, cfg.eval_forward_group_sizes)),
        "run time": f"{time.perf_counter() - t0:.0f} s",
    }
    results = DemoResults(
        config=config,
        rows=tuple(rows),
        contrast_rows=tuple(contrast_rows),
        regime_names=(cfg.regime.name, cfg.contrast.name if cfg.contrast else None),
        headline_forward_group_size=F,
        histories=histories,
        rasters=rasters,
        lava=tuple(lava_lines),
        command=command,
    )
    return write_report(results, out)


def _train_all(cfg: DemoConfig, regime: Regime, modes, train, echo) -> tuple[dict, dict]:
    """Train one model per training mode in ``regime``; return ``(models, histories)``."""
    models, histories = {}, {}
    for mode, scheduler in modes:
        echo(f"training {mode} ({regime.name} regime) for {cfg.epochs} epochs ...")
        torch.manual_seed(cfg.seed)
        model = build_zoo_model("digits_mlp", hidden=cfg.hidden, **regime.model_settings())
        config = TrainConfig(
            epochs=cfg.epochs, lr=cfg.lr, seed=cfg.seed, optimizer=regime.optimizer()
        )
        data = make_loader(train, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed)
        history = fit(model, data, scheduler=scheduler, config=config)
        histories[mode] = {
            k: list(getattr(history, k)) for k in ("loss", "accuracy", "spike_density")
        }
        models[mode] = model.eval()
    return models, histories


def config_dict(cfg: DemoConfig) -> dict:
    """The settings as a plain dict (for logs)."""
    return asdict(cfg)


def with_overrides(cfg: DemoConfig, **overrides) -> DemoConfig:
    """``cfg`` with the non-``None`` overrides applied."""
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
