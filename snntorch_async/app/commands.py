"""The subcommands of ``snntorch-async`` (parsed in :mod:`snntorch_async.app.cli`).

Each ``cmd_*`` takes the parsed arguments and returns the exit status; user errors are raised
as :class:`~snntorch_async.app.errors.CliError` (or the library's own errors) and printed by
``cli.main`` as one line.
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import schedulers as _schedulers
from .cli import ASYNC_SCHEDULERS, SCHEDULERS
from .errors import CliError
from .recipe import (
    RECIPE_FORMAT,
    build_model,
    check_dataset,
    load_data,
    model_from_checkpoint,
    read_recipe,
    take,
)

__all__ = ["COMMANDS", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed torch, Python and NumPy: called before anything random is drawn (model, data)."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def _scheduler(args):
    cls = getattr(_schedulers, SCHEDULERS[args.scheduler])
    if args.scheduler in ASYNC_SCHEDULERS:
        kw = dict(
            forward_group_size=args.forward_group_size,
            seed=args.seed,
            prioritize_input=not args.no_prioritize_input,
            max_forward_steps=args.max_forward_steps,
        )
    else:
        ignored = [
            f
            for f, v in (
                ("-F", args.forward_group_size),
                ("--max-forward-steps", args.max_forward_steps),
                ("--no-prioritize-input", args.no_prioritize_input or None),
            )
            if v is not None
        ]
        if ignored:
            raise CliError(
                f"{' and '.join(ignored)} only apply to the asynchronous schedulers "
                f"({', '.join(ASYNC_SCHEDULERS)}); got --scheduler {args.scheduler}. "
                f"Fix: drop {ignored[0]}, or pick e.g. --scheduler random."
            )
        kw = {}
    try:
        return cls(**kw)
    except ValueError as exc:
        raise CliError(f"--scheduler {args.scheduler}: {exc}") from None


def _clip(n: int | None, dataset_len: int, what: str) -> int | None:
    if n is not None and n > dataset_len:
        print(
            f"note: {what} {n} is more than the {dataset_len} samples of the split; using "
            f"{dataset_len}.",
            file=sys.stderr,
        )
    return n


# ------------------------------------------------------------------------------------------
# demo
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
    command += "".join(
        f" --{k} {v}" for k, v in (("epochs", args.epochs), ("seed", args.seed)) if v is not None
    )
    report = run_demo(cfg, args.out, command=command, echo=print)
    print(f"report written to {report}")
    return 0


# ------------------------------------------------------------------------------------------
# train
# ------------------------------------------------------------------------------------------
def _train_recipe(args) -> dict:
    from .zoo import ZOO

    if args.model_file:
        recipe = dict(
            model=None, model_file=str(Path(args.model_file).resolve()), model_settings={}
        )
        if args.hidden is not None:
            raise CliError(
                "--hidden sets the width of a zoo model; it does not apply to "
                "--model-file. Fix: set the width inside your model file."
            )
        dataset = check_dataset(args.dataset or "digits")
        shape = None
    else:
        name = args.model or "digits_mlp"
        if name not in ZOO:
            raise CliError(
                f"--model: unknown model {name!r}; expected one of {', '.join(ZOO)}, "
                "or --model-file PATH."
            )
        settings = {} if args.hidden is None else {"hidden": args.hidden}
        recipe = dict(model=name, model_file=None, model_settings=settings)
        dataset = check_dataset(args.dataset or ZOO[name].dataset)
        shape = ZOO[name].input_shape
    return dict(
        format=RECIPE_FORMAT,
        **recipe,
        input_shape=list(shape) if shape else None,
        dataset=dataset,
        steps=args.steps or 20,
        seed=args.seed,
        scheduler=args.scheduler,
        forward_group_size=args.forward_group_size,
    )


@contextlib.contextmanager
def _lock(ckpt: Path):
    """Hold ``<checkpoint>.lock`` while training: a second run writing the same path fails."""
    lock = ckpt.with_name(ckpt.name + ".lock")
    try:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            owner = lock.read_text().strip() or "?"
        except OSError:
            owner = "?"
        raise CliError(
            f"--checkpoint {ckpt}: another run (pid {owner}) is writing it: {lock} exists. Fix: "
            "wait for that run, use another --checkpoint, or delete the lock file if no run is "
            "active (e.g. after a crash)."
        ) from None
    except OSError as exc:
        raise CliError(
            f"--checkpoint {ckpt}: cannot write there ({exc.strerror}). Fix: choose "
            "a writable path."
        ) from None
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()


def cmd_train(args) -> int:
    if args.nproc != 1:
        from .launch import train_nproc

        return train_nproc(args.nproc, args.argv)
    from ..data import make_loader
    from ..graph import read_model
    from ..training import TrainConfig, TrainingInterrupted, fit
    from .zoo import ZOO, load_model_file

    if args.model == "list":
        for name, entry in ZOO.items():
            print(f"{name:16s} input {list(entry.input_shape)}  dataset {entry.dataset}")
        return 0
    ckpt = Path(args.checkpoint)
    recipe = _train_recipe(args)
    if args.resume:
        if not ckpt.is_file():
            raise CliError(
                f"--resume: no checkpoint at {str(ckpt)!r}. Fix: pass the "
                "--checkpoint of the interrupted run, or drop --resume to start "
                "afresh."
            )
        _, old = read_recipe(str(ckpt), option="--checkpoint")
        if (old.get("model"), old.get("model_file")) != (recipe["model"], recipe["model_file"]):
            raise CliError(
                f"--resume: {str(ckpt)!r} was trained with "
                f"{old.get('model') or old.get('model_file')!r}, not "
                f"{recipe['model'] or recipe['model_file']!r}. Fix: pass the same "
                "--model."
            )
        recipe["model_settings"] = old.get("model_settings", {})
        recipe["steps"] = old["steps"] if args.steps is None else recipe["steps"]
    elif ckpt.exists() and not args.overwrite:
        raise CliError(
            f"--checkpoint {ckpt} already exists. Fix: --resume to continue it, "
            "--overwrite to replace it, or another --checkpoint."
        )
    scheduler = _scheduler(args)
    seed_everything(args.seed)  # before the model is built: its initial weights are drawn here
    if args.model_file:
        model, shape = load_model_file(args.model_file)
        shape = shape or {"digits": (64,)}.get(recipe["dataset"])
        if shape is None:
            raise CliError(
                f"--model-file {args.model_file} does not define `input_shape`; "
                f"needed for --dataset {recipe['dataset']}. Fix: add e.g. "
                "`input_shape = (2, 34, 34)` to the file."
            )
        recipe["input_shape"] = list(shape)
    else:
        model, _ = build_model(recipe)
    read_model(model, tuple(recipe["input_shape"]))  # an unsupported module fails here, not later
    train = load_data(recipe, train=True, root=args.root, download=args.download, limit=args.limit)
    print(
        f"training {recipe['model'] or recipe['model_file']} on {recipe['dataset']} "
        f"({len(train)} samples) under {scheduler!r} for {args.epochs} epochs"
    )
    config = TrainConfig(
        epochs=args.epochs, lr=args.lr, seed=args.seed, checkpoint_path=str(ckpt), metadata=recipe
    )
    data = make_loader(train, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    # Under torchrun every rank runs this command; only rank 0 writes the checkpoint, so only it
    # holds the lock (the others would find rank 0's lock and stop).
    lead = os.environ.get("RANK", "0") == "0"
    with _lock(ckpt) if lead else contextlib.nullcontext():
        try:
            history = fit(model, data, scheduler=scheduler, config=config, resume=args.resume)
        except TrainingInterrupted as exc:
            saved = "checkpoint saved at" if exc.checkpoint_path else "no checkpoint yet at"
            argv = list(args.argv)
            argv = [a for a in argv if a != "--overwrite"]
            argv = argv if "--resume" in argv else [*argv, "--resume"]
            print(
                f"\ninterrupted: {saved} {ckpt}. Continue with:\n  "
                + shlex.join(["snntorch-async", *argv]),
                file=sys.stderr,
            )
            return 130
    for key in ("loss", "accuracy", "spike_density"):
        values = getattr(history, key)
        if values:
            print(f"{key}: " + " ".join(f"{v:.4g}" for v in values))
    print(f"checkpoint saved at {ckpt}")
    return 0


# ------------------------------------------------------------------------------------------
# evaluate, export, verify
# ------------------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    from ..data import make_loader
    from ..metrics import evaluate

    model, recipe = model_from_checkpoint(args.checkpoint)
    if args.dataset:
        recipe["dataset"] = check_dataset(args.dataset)
    if args.steps is not None:
        recipe["steps"] = args.steps
    scheduler = _scheduler(args)
    test = load_data(recipe, train=False, root=args.root, download=args.download)
    test = take(test, _clip(args.limit, len(test), "--limit"))
    m = evaluate(
        model, make_loader(test, batch_size=args.batch_size), scheduler=scheduler, progress=True
    )
    print(
        f"{args.checkpoint} on {recipe['dataset']} test ({len(test)} samples) under {scheduler!r}"
    )
    print(m.table())
    print("spikes per layer: " + ", ".join(f"{s:.2f}" for s in m.spikes_per_layer))
    return 0


def cmd_export(args) -> int:
    import lava_bridge as lb

    model, recipe = model_from_checkpoint(args.checkpoint)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(
            f"--out {out}: cannot create it ({exc.strerror}). Fix: choose a folder "
            "you can write to."
        ) from None
    spec = lb.convert(
        model,
        input_shape=tuple(recipe["input_shape"]),
        approximate_reset=args.approximate_reset,
        bias_timing=args.bias_timing,
    )
    from lava_bridge.netx import netx_timing_conflicts

    late = netx_timing_conflicts(spec)
    if "netx" in args.formats and late:  # refuse before any file is written
        raise CliError(
            f"--formats netx: layers {late} have biases with --bias-timing "
            f"{args.bias_timing}, but netx files need Lava's timing (bias into v from "
            "step 0). Fix: add --bias-timing lava (see docs/lava.md), or drop netx "
            "from --formats."
        )
    stem = Path(args.checkpoint).stem
    writers = {
        "spec": (".npz", lambda path: spec.save(path)),
        "netx": (".h5", lambda path: lb.export_netx(spec, path)),  # on netx's grid by itself
        "nir": (".nir", lambda path: lb.export_nir(spec, path)),
    }
    for fmt in dict.fromkeys(args.formats):
        suffix, write = writers[fmt]
        try:
            write(out / f"{stem}{suffix}")
        except lb.BiasTimingError as exc:
            raise CliError(
                f"--formats {fmt}: {exc} On the command line: --bias-timing lava."
            ) from None
        print(f"wrote {out / f'{stem}{suffix}'}")
    return 0


def cmd_verify(args) -> int:
    import lava_bridge as lb

    if not lb.lava_available():  # also imports Lava's runtime now, before any progress bar
        print(
            "Lava is not installed in this Python, so nothing can be verified. Enable it with "
            "Python 3.10: pip install 'snntorch-async[lava]' (or `make test`, which builds that "
            "environment).",
            file=sys.stderr,
        )
        return 3
    source = Path(args.source)
    if source.suffix == ".npz":
        try:
            net = lb.load(source)
        except OSError as exc:
            raise CliError(f"SOURCE {source}: {exc}") from None
        shape = tuple(net.input_shape)
        recipe = {
            "dataset": "digits" if shape in ((64,), (1, 8, 8)) else None,
            "steps": args.steps or 20,
            "input_shape": list(shape),
            "seed": args.seed,
        }
    else:
        net, recipe = model_from_checkpoint(str(source), option="SOURCE")
        recipe["steps"] = args.steps or recipe["steps"]
    if recipe["dataset"] is None:
        raise CliError(
            f"SOURCE {source}: cannot tell which dataset feeds input shape "
            f"{recipe['input_shape']}. Fix: verify the checkpoint it came from."
        )
    data = load_data(recipe, train=False)
    n = min(_clip(args.samples, len(data), "--samples"), len(data))
    from ..data import make_loader

    chunk = min(n, 8)
    status = 0
    for what, kw in (("float", {}), ("fixed point", {"fixed_point": True})):
        mismatches = compared = 0
        bad: list[int] = []
        engine = "?"
        with tqdm(total=n, desc=f"Lava ({what})", unit="sample", leave=False) as bar:
            for i, (x, _) in enumerate(make_loader(data, batch_size=chunk)):
                x = x[:, : max(0, n - i * chunk)]
                if x.shape[1] == 0:
                    break
                r = lb.verify(net, x, approximate_reset=args.approximate_reset, **kw)
                mismatches, compared, engine = (
                    mismatches + r.mismatches,
                    compared + r.compared,
                    r.engine,
                )
                bad += [i * chunk + j for j, k in enumerate(r.per_sample.tolist()) if k]
                bar.update(x.shape[1])
        print(
            f"Lava ({what}) vs {engine}: {mismatches} mismatching spikes of {compared} "
            f"compared ({n} sample(s) x {recipe['steps']} steps)"
        )
        if mismatches:
            print(f"  samples with mismatches: {bad}")
            status = 1
    return status


def cmd_sweep(args) -> int:
    from .sweep import run

    return run(args)


COMMANDS = {
    "demo": cmd_demo,
    "train": cmd_train,
    "evaluate": cmd_evaluate,
    "export": cmd_export,
    "verify": cmd_verify,
    "sweep": cmd_sweep,
}
