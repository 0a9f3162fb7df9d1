"""The paper's claim, measured honestly: sync-trained vs async-trained under asynchronous execution.

Koopman et al. (arXiv 2408.05098) report that models trained with unlayered backprop under an
asynchronous scheduler, when executed asynchronously, use up to 50 % fewer spikes, reach a decision
up to 2x sooner and are up to ~10 % more accurate than layer-synchronously trained models executed
the same way.

This script trains the same architecture (``zoo.digits_mlp2``: 64-64-64-10 ``snn.Leaky``, zero
reset) on the offline digits data (rate-coded, T steps) three ways — sync-trained (``LayerSync``),
async-trained with ``RandomAsync`` and with ``MomentumAsync`` at ``F`` (default 8) — over several
seeds, then evaluates every model under ``LayerSync`` and under random and momentum execution at
several F. It prints and saves (``--out``, markdown + JSON) a table of accuracy, spike density and
latency to decision (forward steps and time steps) as mean ± std over seeds.

It is a thin front for ``snntorch-async sweep``: the options build a sweep spec (the default one
is ``benchmarks/paper_claim.toml``) whose jobs run as Ray tasks (``--address`` for a cluster), or
one after another with ``--serial``; job records and checkpoints go to ``--out``/sweep, so a rerun
skips the finished jobs.

The paper's datasets (``--dataset nmnist`` / ``shd``) run the same grid through tonic on
``zoo.nmnist_mlp`` (2·34·34-``hidden``-10) / ``zoo.shd_mlp`` (700-``hidden``-20), in the same
regimes, from the recordings under ``--root`` (tonic's layout: ``ROOT/NMNIST/train.zip`` and
``test.zip``, ``ROOT/SHD/shd_train.h5.zip`` and ``shd_test.h5.zip``; nothing is downloaded).
``--synthetic`` replaces the recordings with synthetic events of the dataset's sensor size
(``snntorch_async.data.SyntheticEvents``), labelled as such in every table: an offline check of
the pipeline, not a measurement of the dataset.

Run: ``python benchmarks/paper_claim.py [--seeds 3] [--epochs 15] [--quick] [--serial]``
     ``python benchmarks/paper_claim.py --dataset nmnist --root data [--synthetic] [--limit N]``
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from snntorch_async.app.regimes import REGIMES
from snntorch_async.app.sweep_run import (
    SYNTHETIC_SIZES,
    RayEngine,
    SerialEngine,
    gather_table,
    run_sweep,
)
from snntorch_async.app.sweep_spec import TONIC, parse_spec
from snntorch_async.data.tonic import TONIC_DATASETS, DatasetNotFoundError, require_files

#: The model of each dataset (``--dataset``) and its default hidden width.
MODELS = {"digits": ("digits_mlp2", 64), "nmnist": ("nmnist_mlp", 128), "shd": ("shd_mlp", 128)}
#: Recordings per split of ``--quick`` on a tonic dataset (unless ``--limit``).
QUICK_LIMIT = 64


def data_tag(args) -> str:
    """The dataset's part of file names: ``""`` for digits (names as before), ``"nmnist_"``,
    ``"nmnist-synthetic_"``."""
    if args.dataset == "digits":
        return ""
    return f"{args.dataset}{'-synthetic' if args.synthetic else ''}_"


def data_dict(args) -> dict:
    data = {
        "dataset": args.dataset,
        "steps": args.steps,
        "batch_size": 32,
        "test_batch_size": 128,
    }
    if args.dataset in TONIC:  # (the digits' job dicts, and so their keys, stay as they were)
        data["root"] = str(Path(args.root).expanduser().resolve())
        data["synthetic"] = bool(args.synthetic)
        data["limit"] = args.limit
    return data


def spec_dict(args, regime: str) -> dict:
    F, r = args.forward_group_size, REGIMES[regime]
    train_kw = {"forward_group_size": F}
    if args.gradient_rule:
        train_kw["gradient_rule"] = args.gradient_rule
    evals = [
        {"name": "LayerSync", "type": "LayerSync"},
        {"name": f"RandomAsync F={F}", "type": "RandomAsync", "forward_group_size": F, "seed": 123},
        {
            "name": f"MomentumAsync F={F}",
            "type": "MomentumAsync",
            "forward_group_size": F,
            "seed": 123,
        },
        {"name": "RandomAsync F=1", "type": "RandomAsync", "forward_group_size": 1, "seed": 123},
        {
            "name": f"RandomAsync F={F}, stop_on_output=0",
            "type": "RandomAsync",
            "forward_group_size": F,
            "stop_on_output": 0,
            "seed": 123,
        },
    ]
    tag = data_tag(args)
    return {
        "sweep": {
            "name": f"paper_claim_{tag}{regime}",
            "out": str(args.out / "sweep" / f"{tag.replace('_', '-')}{regime}"),
            "seeds": list(range(args.seeds)),
            "threads": 1,
        },
        "model": {"zoo": MODELS[args.dataset][0], "hidden": args.hidden, **r.model_settings()},
        "data": data_dict(args),
        "train": {
            "epochs": args.epochs,
            "lr": r.lr,
            "weight_decay": r.weight_decay,
            "max_batches": args.max_batches,
            "scheduler": [
                {"name": "sync-trained (LayerSync)", "type": "LayerSync"},
                {
                    "name": f"async-trained (RandomAsync F={F})",
                    "type": "RandomAsync",
                    **train_kw,
                },
                {
                    "name": f"async-trained (MomentumAsync F={F})",
                    "type": "MomentumAsync",
                    **train_kw,
                },
            ],
        },
        "eval": evals,
    }


def _mean(table: dict, train: str, ev: str, key: str) -> float:
    vals = [v for v in table[f"{train} | {ev}"][key] if not math.isnan(v)]
    return statistics.fmean(vals) if vals else math.nan


def targets(table: dict, F: int) -> str:
    """The issue's targets, measured: async-trained (RandomAsync F) vs sync-trained."""
    sync, rand, mom = (
        "sync-trained (LayerSync)",
        f"async-trained (RandomAsync F={F})",
        f"async-trained (MomentumAsync F={F})",
    )
    er, em = f"RandomAsync F={F}", f"MomentumAsync F={F}"
    m = lambda t, e, k: _mean(table, t, e, k)  # noqa: E731
    div = lambda a, b: a / b if b else math.nan  # noqa: E731  (a silent model: no ratio)
    dens = div(m(rand, er, "spike_density"), m(sync, er, "spike_density"))
    sooner = div(m(sync, er, "decision_forward_steps"), m(rand, er, "decision_forward_steps"))
    acc_r = 100 * (m(rand, er, "accuracy") - m(sync, er, "accuracy"))
    acc_m = 100 * (m(rand, em, "accuracy") - m(sync, em, "accuracy"))
    mom_vs = 100 * (m(mom, em, "accuracy") - m(rand, em, "accuracy"))

    def row(target: str, value: float, unit: str, met: bool) -> str:
        if math.isnan(value):  # a failed job or a silent model (see the table above)
            return f"| {target} | n/a | not measured |"
        shown = f"{value:.2f}x" if unit == "x" else f"{value:+.1f} points"
        return f"| {target} | {shown} | {'met' if met else 'NOT met'} |"

    return "\n".join(
        [
            f"| target (async-trained RandomAsync F={F} vs sync-trained) | measured | |",
            "|---|---|---|",
            row(f"spike density at random F={F} <= 0.5x", dens, "x", dens <= 0.5),
            row(f"decision >= 2x sooner (forward steps, random F={F})", sooner, "x", sooner >= 2),
            row(f"accuracy at random F={F} >= sync - 0.5 points", acc_r, "points", acc_r >= -0.5),
            row(f"accuracy at momentum F={F} >= sync + 1 point", acc_m, "points", acc_m >= 1),
            row(
                f"MomentumAsync-trained >= RandomAsync-trained at momentum F={F}",
                mom_vs,
                "points",
                mom_vs >= 0,
            ),
        ]
    )


def describe(args, regime: str, command: str) -> tuple[str, str]:
    """``(title, preamble)`` of one regime's table; synthetic events are said to be synthetic."""
    T, h, label = args.steps, args.hidden, REGIMES[regime].label
    latency = (
        f"mean ± std over {args.seeds} seed(s). Decision latency: forward steps (and time steps) "
        "after which the output arg-max no longer changes; first output spike: forward steps "
        "until the first output spike; synops: effective synaptic operations per sample."
    )
    if args.dataset == "digits":
        title = f"Sync-trained vs async-trained, {regime} regime (digits, T={T})"
        return title, (
            f"`{command}` — zoo.digits_mlp2 (64-{h}-{h}-10 Leaky, zero reset) in {label}; "
            f"rate-coded digits, batch 32; {latency}"
        )
    info = TONIC_DATASETS[args.dataset]
    n_in = math.prod(info.frame_shape())
    model = f"zoo.{MODELS[args.dataset][0]} ({n_in}-{h}-{info.num_classes} Leaky, zero reset)"
    cap = f", at most {args.limit} recordings per split" if args.limit else ""
    if args.synthetic:
        n_train, n_test = (min(n, args.limit) if args.limit else n for n in SYNTHETIC_SIZES)
        what = f"{args.dataset}, SYNTHETIC events"
        source = (
            f"**SYNTHETIC events, not the {info.tonic_class} recordings**: "
            f"snntorch_async.data.SyntheticEvents of the {info.tonic_class} sensor size "
            f"{info.sensor_size} and its {info.num_classes} classes (each class fires around its "
            f"own place on the sensor; {n_train} train / {n_test} test recordings), binned into "
            f"T={T} binary frames. These numbers check the pipeline; they are not a measurement "
            f"of {info.tonic_class}"
        )
    else:
        what = args.dataset
        source = (
            f"the {info.tonic_class} recordings under {args.root} read by tonic, binned into "
            f"T={T} binary frames{cap}"
        )
    title = f"Sync-trained vs async-trained, {regime} regime ({what}, T={T})"
    return title, f"`{command}` — {model} in {label}; {source}; batch 32; {latency}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument(
        "-F", "--forward-group-size", type=int, default=8, help="F used for async training"
    )
    ap.add_argument(
        "--regime", choices=["both", *REGIMES], default="both", help="neuron regime(s) to run"
    )
    ap.add_argument(
        "--gradient-rule",
        choices=["QueuedCarriers", "LayerCarriers", "EventGradients"],
        default=None,
        help="gradient rule of the async training (default: the library's default)",
    )
    ap.add_argument(
        "--dataset",
        choices=list(MODELS),
        default="digits",
        help="the offline digits, or N-MNIST / SHD through tonic (from --root)",
    )
    ap.add_argument(
        "--root", default="data", help="tonic's data folder (ROOT/NMNIST/..., ROOT/SHD/...)"
    )
    ap.add_argument(
        "--synthetic",
        action="store_true",
        help="nmnist/shd: synthetic events of the sensor's size instead of the recordings "
        "(offline; labelled SYNTHETIC in the tables)",
    )
    ap.add_argument(
        "--limit",
        type=int,
        default=0,
        help=f"nmnist/shd: at most N recordings per split (0: all; --quick: {QUICK_LIMIT})",
    )
    ap.add_argument("--steps", type=int, default=20, help="time steps T")
    ap.add_argument(
        "--hidden", type=int, default=None, help="hidden width (default: digits 64, others 128)"
    )
    ap.add_argument("--max-batches", type=int, default=0, help="batches per epoch (0: all)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--quick", action="store_true", help="1 seed, 1 epoch, 4 batches: a smoke run")
    ap.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    ap.add_argument("--serial", action="store_true", help="no Ray: the jobs one after another here")
    args = ap.parse_args(argv)
    tonic = args.dataset in TONIC
    if not tonic and (args.synthetic or args.limit):
        ap.error("--synthetic and --limit apply to --dataset nmnist or shd, not to the digits")
    if args.limit < 0:
        ap.error(f"--limit must be >= 0 (0: every recording); got {args.limit}")
    if args.hidden is None:
        args.hidden = MODELS[args.dataset][1]
    if args.quick:
        args.seeds, args.epochs, args.max_batches = 1, 1, 4
        if tonic and not args.limit:
            args.limit = QUICK_LIMIT
    if tonic and not args.synthetic:  # before any job runs: where the files go
        try:
            for train in (True, False):
                require_files(args.dataset, args.root, train=train)
        except DatasetNotFoundError as exc:
            raise SystemExit(
                f"paper_claim.py --dataset {args.dataset}: {exc} Or run offline with "
                "--synthetic (synthetic events of the sensor's size, not the dataset)."
            ) from None
    F, T = args.forward_group_size, args.steps
    engine = SerialEngine() if args.serial else RayEngine(address=args.address)
    regimes = list(REGIMES) if args.regime == "both" else [args.regime]
    args.out.mkdir(parents=True, exist_ok=True)
    tag = data_tag(args)
    if args.synthetic:
        print(
            f"--synthetic: SYNTHETIC {args.dataset}-like events (no recordings are read); the "
            "tables check the pipeline, they are not a measurement of the dataset.",
            flush=True,
        )
    for regime in regimes:
        spec = parse_spec(spec_dict(args, regime), where=f"paper_claim.py ({regime})")
        outcomes = run_sweep(spec, engine, echo=lambda m: print(m, flush=True))
        command = (
            "python benchmarks/paper_claim.py "
            + (
                f"--dataset {args.dataset} --root {args.root} "
                + ("--synthetic " if args.synthetic else "")
                + (f"--limit {args.limit} " if args.limit else "")
                if tonic
                else ""
            )
            + f"--regime {regime} --seeds {args.seeds} "
            f"--epochs {args.epochs} -F {F} --steps {T} --hidden {args.hidden}"
            + (f" --max-batches {args.max_batches}" if args.max_batches else "")
            + (f" --gradient-rule {args.gradient_rule}" if args.gradient_rule else "")
        )
        title, preamble = describe(args, regime, command)
        text, table = gather_table(spec, outcomes, title=title, preamble=preamble)
        text += "\n\n" + targets(table, F)
        print("\n" + text)
        stem = f"paper_claim_{tag}{regime}"
        (args.out / f"{stem}.md").write_text(text + "\n")
        (args.out / f"{stem}.json").write_text(json.dumps(table, indent=1))
        print(f"\nsaved {args.out / f'{stem}.md'} and .json")


if __name__ == "__main__":
    main()
