"""The ``snntorch-async`` command line (``python -m snntorch_async`` too).

Subcommands: ``demo``, ``train``, ``evaluate``, ``export``, ``verify``, ``sweep``. Every heavy import
happens inside the subcommand, so ``snntorch-async --help`` is instant. Bad arguments end with an
argparse error (exit 2) that says what was wrong and how to fix it. See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from .app import launch, sweep

__all__ = ["build_parser", "main"]

DATASETS = ("digits", "nmnist", "shd", "dvsgesture")
#: --scheduler name -> class name exported from snntorch_async.
SCHEDULERS = {
    "layersync": "LayerSync",
    "random": "RandomAsync",
    "momentum": "MomentumAsync",
    "layerordered": "LayerOrderedAsync",
    "pipelined": "Pipelined",
}
META_SUFFIX = ".meta.json"
META_FORMAT = "snntorch-async-cli-checkpoint/1"


class CliError(Exception):
    """A user error reported through the subcommand's argparse ``error`` (exit 2)."""


# ------------------------------------------------------------------------------------------
# Parser
# ------------------------------------------------------------------------------------------
def _add_scheduler_args(p: argparse.ArgumentParser, default: str) -> None:
    g = p.add_argument_group("execution mode")
    g.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=default,
                   help=f"how time steps execute (default: {default})")
    g.add_argument("-F", "--forward-group-size", type=int, default=None, metavar="F",
                   help="asynchronous schedulers: spikes delivered per forward step "
                   "(default: all pending at once)")
    g.add_argument("--no-prioritize-input", action="store_true",
                   help="asynchronous schedulers: input events join the pending set instead of "
                   "arriving together in a first forward step")
    g.add_argument("--max-forward-steps", type=int, default=None,
                   help="asynchronous schedulers: bound on forward steps per time step")
    g.add_argument("--seed", type=int, default=0, help="seed of data, weights and scheduler")


def _add_data_args(p: argparse.ArgumentParser, *, dataset_default: str | None) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=dataset_default, metavar="NAME",
                   help=f"one of {', '.join(DATASETS)} (default: "
                   f"{dataset_default or 'the one the checkpoint was trained on'})")
    g.add_argument("--root", default="data", help="folder holding tonic datasets (default: data)")
    g.add_argument("--download", action="store_true",
                   help="let tonic download missing dataset files (needs internet)")
    g.add_argument("--steps", type=int, default=None, metavar="T",
                   help="time steps per sample (default: 20, or the checkpoint's)")
    g.add_argument("--limit", type=int, default=None, metavar="N",
                   help="use only the first N samples (quick runs)")
    g.add_argument("--batch-size", type=int, default=64)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snntorch-async",
        description="Run, train and export snnTorch models without layer synchronization.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="sync- vs async-trained on digits, Lava export, report",
                       description="Train a small snnTorch network sync-trained (LayerSync) and "
                       "async-trained, evaluate both under LayerSync and asynchronous execution "
                       "at several F, export to Lava, and write DIR/report.md with figures. "
                       "Offline.")
    p.add_argument("--quick", action="store_true", help="tiny sizes, every stage (< 2 min)")
    p.add_argument("--out", default="demo_out", help="report folder (default: demo_out)")
    p.add_argument("--epochs", type=int, default=None, help="override the epochs per mode")
    p.add_argument("--seed", type=int, default=None, help="override the seed (default 0)")

    p = sub.add_parser("train", help="train a model (zoo or your file) under a scheduler",
                       description="Train with unlayered backprop under the chosen scheduler. "
                       "Ctrl-C saves a checkpoint; rerun with --resume to continue.")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--model", default=None, help="built-in model (see `--model list`)")
    m.add_argument("--model-file", default=None, metavar="PATH",
                   help="Python file defining `model` or `build_model()` (and `input_shape`)")
    p.add_argument("--hidden", type=int, default=None, help="hidden width of a zoo model")
    _add_data_args(p, dataset_default=None)
    _add_scheduler_args(p, default="layersync")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--checkpoint", default="checkpoint.pt", help="where to save (default: "
                   "checkpoint.pt; its settings go to <checkpoint>.meta.json)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    launch.add_train_args(p)

    sweep.add_parser(sub)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint under any scheduler",
                       description="Evaluate a trained checkpoint on the test split under any "
                       "scheduler and print accuracy, spike density, synaptic ops and latency.")
    p.add_argument("checkpoint", help="checkpoint written by `snntorch-async train`")
    _add_data_args(p, dataset_default=None)
    _add_scheduler_args(p, default="layersync")

    p = sub.add_parser("export", help="export a checkpoint to a spec .npz, netx .h5 and NIR",
                       description="Convert a trained checkpoint (zero reset, reset_delay=False) "
                       "to the Lava bridge's NetworkSpec (.npz), lava-dl netx HDF5 and NIR.")
    p.add_argument("checkpoint")
    p.add_argument("--out", default="export", help="output folder (default: export)")
    p.add_argument("--formats", nargs="+", choices=("spec", "netx", "nir"),
                   default=["spec", "netx", "nir"])

    p = sub.add_parser("verify", help="run a checkpoint or spec on real Lava, print mismatches",
                       description="Run the network on real Lava (fixed point) and on our "
                       "emulator side by side and print the spike mismatches (zero expected).")
    p.add_argument("source", help="checkpoint (.pt) or spec (.npz)")
    p.add_argument("--samples", type=int, default=4, help="test samples to run (default: 4)")
    p.add_argument("--steps", type=int, default=None, metavar="T")
    p.add_argument("--seed", type=int, default=0)
    return parser


# ------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------
def _scheduler(args):
    import snntorch_async as sa

    cls = getattr(sa, SCHEDULERS[args.scheduler], None)
    if cls is None:
        raise CliError(
            f"--scheduler {args.scheduler}: {SCHEDULERS[args.scheduler]} is not available in this "
            "installation. Fix: pick another scheduler (e.g. --scheduler layersync)."
        )
    if SCHEDULERS[args.scheduler].endswith("Async"):
        kw = dict(forward_group_size=args.forward_group_size, seed=args.seed,
                  prioritize_input=not args.no_prioritize_input,
                  max_forward_steps=args.max_forward_steps)
    else:
        ignored = [f for f, v in (("-F", args.forward_group_size),
                                  ("--max-forward-steps", args.max_forward_steps)) if v is not None]
        if ignored:
            raise CliError(f"{' and '.join(ignored)} only apply to the asynchronous schedulers "
                           f"(random, momentum); got --scheduler {args.scheduler}.")
        kw = {}
    try:
        return cls(**kw)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def _meta_path(checkpoint: str | Path) -> Path:
    return Path(str(checkpoint) + META_SUFFIX)


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _build_model(meta: dict):
    """(model, input_shape) from checkpoint metadata."""
    from .zoo import ZOO, build_zoo_model, load_model_file

    if meta.get("model_file"):
        model, shape = load_model_file(meta["model_file"])
        return model, tuple(meta.get("input_shape") or shape or ())
    name = meta["model"]
    return build_zoo_model(name, **meta.get("model_settings", {})), ZOO[name].input_shape


def _load_data(meta: dict, args, *, train: bool):
    """The dataset named in ``meta`` for the model's input shape, as a torch Dataset."""
    from . import integration as ig

    name, steps, shape = meta["dataset"], meta["steps"], tuple(meta["input_shape"] or ())
    if name == "digits":
        if shape not in ((64,), (1, 8, 8)):
            raise CliError(
                f"The model expects per-step inputs of shape {list(shape)}, but the digits are "
                "[64] (or [1, 8, 8]). Fix: set `input_shape = (64,)` in your model file and give "
                "the model 64 inputs, or choose another --dataset."
            )
        tr, te = ig.digits_data(steps=steps, seed=meta.get("seed", 0), flatten=shape == (64,))
        ds = tr if train else te
    else:
        from .tonic_data import DatasetNotFoundError, load_tonic

        try:
            ds = load_tonic(name, args.root, train=train, n_time_bins=steps,
                            download=getattr(args, "download", False))
        except DatasetNotFoundError as exc:
            raise CliError(f"--dataset {name}: {exc}") from None
    return ig.take(ds, getattr(args, "limit", None))


def _check_dataset(name: str) -> str:
    key = name.lower()
    if key not in DATASETS:
        raise CliError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}. "
                       "Fix: e.g. --dataset digits (offline) or --dataset nmnist --root DIR.")
    return key


def _read_meta(checkpoint: str) -> dict:
    path = Path(checkpoint)
    if not path.is_file():
        raise CliError(f"checkpoint {checkpoint!r} does not exist. Fix: train one with "
                       "`snntorch-async train --checkpoint PATH`, or check the path.")
    meta_path = _meta_path(path)
    if not meta_path.is_file():
        raise CliError(f"{meta_path} is missing, so the architecture of {checkpoint!r} is "
                       "unknown. Fix: use a checkpoint written by `snntorch-async train` (it "
                       "writes both files), or keep the .meta.json beside the checkpoint.")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != META_FORMAT:
        raise CliError(f"{meta_path} has format {meta.get('format')!r}; expected {META_FORMAT!r}.")
    return meta


def _load_weights(model, checkpoint: str, meta: dict) -> None:
    from .training import CheckpointError, load_checkpoint

    try:
        state = load_checkpoint(checkpoint)["model"]
    except CheckpointError as exc:
        raise CliError(str(exc)) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        arch = meta.get("model") or meta.get("model_file")
        first = str(exc).splitlines()
        raise CliError(
            f"checkpoint {checkpoint!r} does not fit the model {arch!r} named in its "
            f"{META_SUFFIX} ({' '.join(first[:3])}). It was saved from another architecture, or "
            "the model file / --hidden changed since. Fix: use the model it was trained with, "
            "or retrain."
        ) from None


def _model_from_checkpoint(checkpoint: str):
    meta = _read_meta(checkpoint)
    model, shape = _build_model(meta)
    _load_weights(model, checkpoint, meta)
    return model.eval(), meta


# ------------------------------------------------------------------------------------------
# Subcommands
# ------------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from .demo import FULL, QUICK, run_demo, with_overrides
    from .report import OutputFolderError, check_writable

    try:
        check_writable(args.out)
    except OutputFolderError as exc:
        raise CliError(f"--out: {exc}") from None
    cfg = with_overrides(QUICK if args.quick else FULL, epochs=args.epochs, seed=args.seed)
    command = "snntorch-async demo" + (" --quick" if args.quick else "") + f" --out {args.out}"
    report = run_demo(cfg, args.out, command=command, echo=print)
    print(f"report written to {report}")
    return 0


def cmd_train(args) -> int:
    from . import integration as ig
    from .zoo import ZOO, load_model_file
    if args.nproc != 1:
        return launch.train_nproc(args.nproc, _ARGV)

    if args.model == "list":
        for name, entry in ZOO.items():
            print(f"{name:16s} input {list(entry.input_shape)}  dataset {entry.dataset}")
        return 0
    if args.resume and not Path(args.checkpoint).is_file():
        raise CliError(f"--resume: no checkpoint at {args.checkpoint!r}. Fix: pass the "
                       "--checkpoint of the interrupted run, or drop --resume to start afresh.")
    if args.model_file:
        model, shape = load_model_file(args.model_file)
        meta_model = dict(model=None, model_file=str(Path(args.model_file).resolve()),
                          model_settings={})
        dataset = _check_dataset(args.dataset or "digits")
        shape = shape or {"digits": (64,)}.get(dataset)
        if shape is None:
            raise CliError(f"{args.model_file} does not define `input_shape`; needed for "
                           f"--dataset {dataset}. Fix: add e.g. `input_shape = (2, 34, 34)`.")
    else:
        name = args.model or "digits_mlp"
        if name not in ZOO:
            raise CliError(f"unknown --model {name!r}; expected one of {', '.join(ZOO)}, or "
                           "--model-file PATH.")
        settings = {"hidden": args.hidden} if args.hidden else {}
        meta_model = dict(model=name, model_file=None, model_settings=settings)
        model, shape = ig.build_model(name, **settings), ZOO[name].input_shape
        dataset = _check_dataset(args.dataset or ZOO[name].dataset)
    meta = dict(format=META_FORMAT, **meta_model, input_shape=list(shape), dataset=dataset,
                steps=args.steps or 20, seed=args.seed, scheduler=args.scheduler,
                forward_group_size=args.forward_group_size)
    if args.resume:
        old = _read_meta(args.checkpoint)
        if (old.get("model"), old.get("model_file")) != (meta["model"], meta["model_file"]):
            raise CliError(f"--resume: {args.checkpoint!r} was trained with "
                           f"{old.get('model') or old.get('model_file')!r}, not "
                           f"{meta['model'] or meta['model_file']!r}. Fix: pass the same --model.")
        meta["steps"] = old["steps"] if args.steps is None else meta["steps"]
    scheduler = _scheduler(args)
    train = _load_data(meta, args, train=True)
    ckpt = Path(args.checkpoint)
    try:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(_meta_path(ckpt), meta)
    except OSError as exc:
        raise CliError(f"--checkpoint {ckpt}: cannot write there ({exc.strerror}). Fix: choose "
                       "a writable path.") from None
    print(f"training {meta['model'] or meta['model_file']} on {dataset} ({len(train)} samples) "
          f"under {scheduler!r} for {args.epochs} epochs")
    torch_seed(args.seed)
    try:
        history = ig.train_model(model, train, scheduler=scheduler, epochs=args.epochs,
                                 lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                                 checkpoint=str(ckpt), resume=args.resume)
    except KeyboardInterrupt:
        saved = "checkpoint saved at" if ckpt.is_file() else "no checkpoint yet at"
        print(f"\ninterrupted: {saved} {ckpt}. Continue with:\n  "
              + shlex.join(["snntorch-async", *_argv_for_resume()]), file=sys.stderr)
        return 130
    for key, values in history.items():
        if values:
            print(f"{key}: " + " ".join(f"{v:.4g}" for v in values))
    print(f"checkpoint saved at {ckpt}")
    return 0


def torch_seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


_ARGV: list[str] = []


def _argv_for_resume() -> list[str]:
    argv = list(_ARGV)
    return argv if "--resume" in argv else [*argv, "--resume"]


def cmd_evaluate(args) -> int:
    from . import integration as ig

    model, meta = _model_from_checkpoint(args.checkpoint)
    if args.dataset:
        meta["dataset"] = _check_dataset(args.dataset)
    if args.steps:
        meta["steps"] = args.steps
    scheduler = _scheduler(args)
    test = _load_data(meta, args, train=False)
    bar = ig.progress(total=-(-len(test) // args.batch_size), desc="evaluating")
    ev = ig.evaluate_model(model, test, scheduler=scheduler, batch_size=args.batch_size,
                           on_batch=lambda: bar.update(1))
    bar.close()
    print(f"{args.checkpoint} on {meta['dataset']} test ({len(test)} samples) under {scheduler!r}")
    print(ev.metrics.table())
    print("spikes per layer: " + ", ".join(f"{s:.2f}" for s in ev.spikes_per_layer))
    return 0


def cmd_export(args) -> int:
    import lava_bridge as lb
    from lava_bridge.quantize import QuantizeSettings

    model, meta = _model_from_checkpoint(args.checkpoint)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"--out {out}: cannot create it ({exc.strerror}).") from None
    try:
        spec = lb.convert(model, input_shape=tuple(meta["input_shape"]))
    except lb.ConversionError as exc:
        raise CliError(str(exc)) from None
    stem = Path(args.checkpoint).stem
    writers = {
        "spec": (".npz", lambda path: spec.save(path)),
        # netx has no weight exponent: quantize with exponent 0 for it
        "netx": (".h5", lambda path: lb.export_netx(
            lb.quantize(spec, QuantizeSettings(weight_exp=0)).spec, path)),
        "nir": (".nir", lambda path: lb.export_nir(spec, path)),
    }
    written = []
    for fmt in args.formats:
        suffix, write = writers[fmt]
        try:
            write(out / f"{stem}{suffix}")
        except (ImportError, AttributeError) as exc:
            raise CliError(f"--formats {fmt}: this installation of lava_bridge cannot write it "
                           f"({exc}). Fix: --formats spec, or update snntorch-async.") from None
        written.append(out / f"{stem}{suffix}")
    for path in written:
        print(f"wrote {path}")
    return 0


def cmd_verify(args) -> int:
    import lava_bridge as lb

    from . import integration as ig

    ig.preload_lava()
    if not ig.lava_available():
        print("Lava is not installed in this Python, so nothing can be verified. Enable it with "
              "Python 3.10: pip install 'snntorch-async[lava]' (or `make test`, which builds that "
              "environment).", file=sys.stderr)
        return 3
    source = Path(args.source)
    if source.suffix == ".npz":
        try:
            net = lb.load(source)
        except (OSError, lb.SpecFormatError, lb.SpecVersionError) as exc:
            raise CliError(f"{source}: {exc}") from None
        shape = tuple(net.input_shape)
        meta = {"dataset": "digits" if shape in ((64,), (1, 8, 8)) else None,
                "steps": args.steps or 20, "input_shape": list(shape), "seed": args.seed}
    else:
        net, meta = _model_from_checkpoint(str(source))
        meta["steps"] = args.steps or meta["steps"]
    if meta["dataset"] is None:
        raise CliError(f"{source}: cannot tell which dataset feeds input shape "
                       f"{meta['input_shape']}; verify a checkpoint instead.")
    args.limit, args.root = args.samples, "data"
    data = _load_data(meta, args, train=False)
    x = next(iter(ig.loader(data, batch_size=args.samples)))[0]
    status = 0
    for what, kw in (("float", {}), ("fixed point", {"fixed_point": True})):
        try:
            r = lb.verify(net, x, **kw)
        except lb.LavaBridgeError as exc:
            raise CliError(str(exc)) from None
        print(f"Lava ({what}) vs {r.engine}: {r.mismatches} mismatching spikes of {r.compared} "
              f"compared ({x.shape[1]} sample(s) x {x.shape[0]} steps)")
        if r.mismatches:
            bad = [i for i, n in enumerate(r.per_sample.tolist()) if n]
            print(f"  samples with mismatches: {bad}")
            status = 1
    return status


COMMANDS = {"demo": cmd_demo, "train": cmd_train, "evaluate": cmd_evaluate,
            "export": cmd_export, "verify": cmd_verify, "sweep": sweep.run}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _ARGV[:] = argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    subparser = parser._subparsers._group_actions[0].choices[args.command]  # noqa: SLF001
    from .report import OutputFolderError
    from .zoo import ModelFileError

    try:
        return COMMANDS[args.command](args)
    except (CliError, ModelFileError, OutputFolderError) as exc:
        subparser.error(str(exc))  # exits 2 with the usage line
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
