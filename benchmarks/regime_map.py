"""Where asynchrony matters: a map over the neuron regime (β × threshold) at F = 8.

For every cell of the grid β ∈ {0, 0.5, 0.8, 0.95} × threshold ∈ {0.3, 0.6, 1.0} the same
64-64-64-10 zero-reset ``snn.Leaky`` (bias-free, xavier-uniform; Adam lr 1e-3, weight decay 1e-5;
rate-coded digits, T = 20) is trained twice, with ``LayerSync`` and with unlayered backprop
(``RandomAsync`` F = 8, the default gradient rule), and both are evaluated under ``LayerSync``
and under ``RandomAsync`` F = 8. Two questions, one heat map row each:

1. *What does a sync-trained model lose under asynchronous execution?* Accuracy (points),
   spike density (×) and decision latency in forward steps (×), random F = 8 against LayerSync.
2. *What does unlayered backprop win back?* Async-trained against sync-trained, both executed at
   random F = 8: accuracy (points), spike density (×), decision latency (×).

The jobs run through the sweep machinery (``snntorch_async.app.sweep_run``: local Ray by
default, ``--serial`` for one process; finished jobs are skipped on a rerun). Writes
``regime_map.png``, ``regime_map.md`` and ``regime_map.json`` to ``--out``.

Run: ``python benchmarks/regime_map.py [--epochs 15] [--seeds 1] [--serial]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from snntorch_async.app.sweep_run import RayEngine, SerialEngine
from snntorch_async.app.sweep_spec import parse_spec

BETAS = (0.0, 0.5, 0.8, 0.95)
THRESHOLDS = (0.3, 0.6, 1.0)
F = 8
SYNC, ASYNC = "sync-trained", f"async-trained (RandomAsync F={F})"
EV_SYNC, EV_ASYNC = "LayerSync", f"RandomAsync F={F}"


def cell_spec(args, beta: float, thr: float) -> dict:
    return {
        "sweep": {
            "name": f"regime beta={beta} thr={thr}",
            "out": str(args.out / "sweep" / "regime_map"),
            "seeds": list(range(args.seeds)),
            "threads": 1,
        },
        "model": {
            "zoo": "digits_mlp2",
            "beta": beta,
            "threshold": thr,
            "bias": False,
            "init": "xavier",
        },
        "data": {"dataset": "digits", "steps": 20, "batch_size": 32, "test_batch_size": 128},
        "train": {
            "epochs": args.epochs,
            "lr": 1e-3,
            "weight_decay": 1e-5,
            "max_batches": args.max_batches,
            "scheduler": [
                {"name": SYNC, "type": "LayerSync"},
                {"name": ASYNC, "type": "RandomAsync", "forward_group_size": F},
            ],
        },
        "eval": [
            {"name": EV_SYNC, "type": "LayerSync"},
            {"name": EV_ASYNC, "type": "RandomAsync", "forward_group_size": F, "seed": 123},
        ],
    }


def _mean(records: list[dict], ev: str, key: str) -> float:
    vals = [float(r["metrics"][ev][key]) for r in records]
    if not vals:
        return math.nan
    vals = [v for v in vals if not math.isnan(v)]
    return statistics.fmean(vals) if vals else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else math.nan


def cell_numbers(records: dict[str, list[dict]]) -> dict[str, float]:
    s, a = records[SYNC], records[ASYNC]

    def m(r, ev, key):
        return _mean(r, ev, key)

    return {
        "sync_loss_accuracy_points": 100 * (m(s, EV_ASYNC, "accuracy") - m(s, EV_SYNC, "accuracy")),
        "sync_loss_density_x": _ratio(
            m(s, EV_ASYNC, "spike_density"), m(s, EV_SYNC, "spike_density")
        ),
        "sync_loss_latency_x": _ratio(
            m(s, EV_ASYNC, "decision_forward_steps"), m(s, EV_SYNC, "decision_forward_steps")
        ),
        "win_accuracy_points": 100 * (m(a, EV_ASYNC, "accuracy") - m(s, EV_ASYNC, "accuracy")),
        "win_density_x": _ratio(m(a, EV_ASYNC, "spike_density"), m(s, EV_ASYNC, "spike_density")),
        "win_latency_x": _ratio(
            m(a, EV_ASYNC, "decision_forward_steps"), m(s, EV_ASYNC, "decision_forward_steps")
        ),
        "sync_accuracy_layersync": m(s, EV_SYNC, "accuracy"),
        "async_accuracy_random": m(a, EV_ASYNC, "accuracy"),
    }


PANELS = [
    (
        "sync_loss_accuracy_points",
        "sync-trained: accuracy change\nunder random F=8 (points)",
        "RdBu",
    ),
    ("sync_loss_density_x", "sync-trained: spike density\nrandom F=8 / LayerSync (x)", "RdBu_r"),
    ("sync_loss_latency_x", "sync-trained: decision latency\nrandom F=8 / LayerSync (x)", "RdBu_r"),
    (
        "win_accuracy_points",
        "async-trained vs sync-trained\nat random F=8: accuracy (points)",
        "RdBu",
    ),
    ("win_density_x", "async- / sync-trained\nat random F=8: spike density (x)", "RdBu_r"),
    ("win_latency_x", "async- / sync-trained\nat random F=8: decision latency (x)", "RdBu_r"),
]


def figure(grid: dict[tuple[float, float], dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm

    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, (key, title, cmap) in zip(axes.flat, PANELS):
        z = np.array([[grid[(b, t)][key] for t in THRESHOLDS] for b in BETAS])
        centre = 0.0 if key.endswith("points") else 1.0
        lo, hi = float(np.nanmin(z)), float(np.nanmax(z))
        norm = TwoSlopeNorm(
            vcenter=centre, vmin=min(lo, centre - 1e-9), vmax=max(hi, centre + 1e-9)
        )
        im = ax.imshow(z, cmap=cmap, norm=norm, aspect="auto")
        for i in range(len(BETAS)):
            for j in range(len(THRESHOLDS)):
                fmt = "{:+.1f}" if key.endswith("points") else "{:.2f}"
                ax.text(j, i, fmt.format(z[i, j]), ha="center", va="center", fontsize=9)
        ax.set_xticks(range(len(THRESHOLDS)), [str(t) for t in THRESHOLDS])
        ax.set_yticks(range(len(BETAS)), [str(b) for b in BETAS])
        ax.set_xlabel("threshold")
        ax.set_ylabel("β")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(
        "Where asynchrony matters (digits, 64-64-64-10 Leaky, F = 8): "
        "top: what a sync-trained model loses; bottom: what unlayered backprop wins back",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(grid: dict[tuple[float, float], dict], command: str) -> str:
    lines = [
        "# Where asynchrony matters: neuron regime map at F = 8",
        "",
        f"`{command}` — see the script's docstring. Per cell (β, threshold):",
        "",
        "| β | threshold | sync-trained acc (LayerSync) | sync-trained under random F=8: acc (points) "
        "| density (x) | latency (x) | async-trained acc (random F=8) | async vs sync at random "
        "F=8: acc (points) | density (x) | latency (x) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for b in BETAS:
        for t in THRESHOLDS:
            c = grid[(b, t)]
            lines.append(
                f"| {b} | {t} | {c['sync_accuracy_layersync']:.3f} | "
                f"{c['sync_loss_accuracy_points']:+.1f} | {c['sync_loss_density_x']:.2f} | "
                f"{c['sync_loss_latency_x']:.2f} | {c['async_accuracy_random']:.3f} | "
                f"{c['win_accuracy_points']:+.1f} | {c['win_density_x']:.2f} | "
                f"{c['win_latency_x']:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--max-batches", type=int, default=0, help="batches per epoch (0: all)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    ap.add_argument("--serial", action="store_true", help="no Ray: the jobs one after another here")
    args = ap.parse_args()
    specs = {
        (b, t): parse_spec(cell_spec(args, b, t), where=f"regime_map.py (beta={b}, thr={t})")
        for b in BETAS
        for t in THRESHOLDS
    }
    out = Path(next(iter(specs.values())).out)
    engine = SerialEngine() if args.serial else RayEngine(address=args.address)
    from snntorch_async.app.sweep_run import finished, job_paths

    jobs = [j for s in specs.values() for j in s.jobs]
    todo = [j for j in jobs if finished(j, out) is None]
    print(f"regime map: {len(jobs)} jobs, {len(jobs) - len(todo)} finished already", flush=True)
    if todo:
        engine.run(todo, out, lambda m: print(m, flush=True))
    grid, failed = {}, []
    for cell, spec in specs.items():
        recs: dict[str, list[dict]] = {SYNC: [], ASYNC: []}
        for j in spec.jobs:
            rec = finished(j, out)
            if rec is None:  # a failed job (its error record says why): the cell shows NaN
                err = job_paths(j, out)["error"]
                why = json.loads(err.read_text())["error"] if err.exists() else "did not finish"
                failed.append(f"β={cell[0]}, threshold={cell[1]}, {j.train_name}: {why}")
                continue
            recs[j.train_name].append(rec)
        grid[cell] = cell_numbers(recs)
    command = f"python benchmarks/regime_map.py --epochs {args.epochs} --seeds {args.seeds}" + (
        f" --max-batches {args.max_batches}" if args.max_batches else ""
    )
    args.out.mkdir(parents=True, exist_ok=True)
    text = table(grid, command)
    if failed:
        text += "\n\nJobs that failed (their cells show nan):\n\n" + "\n".join(
            f"- {f}" for f in failed
        )
    print("\n" + text)
    (args.out / "regime_map.md").write_text(text + "\n")
    (args.out / "regime_map.json").write_text(
        json.dumps({f"beta={b} thr={t}": v for (b, t), v in grid.items()}, indent=1)
    )
    figure(grid, args.out / "regime_map.png")
    print(f"\nsaved {args.out / 'regime_map.png'}, regime_map.md and regime_map.json")


if __name__ == "__main__":
    main()
