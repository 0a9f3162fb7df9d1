"""The ``snntorch-async`` command line (``python -m snntorch_async`` too).

Subcommands: ``demo``, ``train``, ``evaluate``, ``export``, ``verify`` (in
:mod:`snntorch_async.app.commands`). This module imports nothing heavy: ``--help`` and argument
errors answer without importing torch. Every error ends in one line ``error: <what, where,
fix>`` on stderr and exit status 2 (argument errors are argparse's, after the usage line);
``--debug`` shows the traceback instead. Ctrl-C prints one line and exits 130. See
``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["SCHEDULERS", "build_parser", "main"]

DATASETS = ("digits", "nmnist", "shd", "dvsgesture")  # = recipe.DATASETS (kept import-free)
#: --scheduler name -> class name exported from snntorch_async.
SCHEDULERS = {
    "layersync": "LayerSync",
    "random": "RandomAsync",
    "momentum": "MomentumAsync",
    "layerordered": "LayerOrderedAsync",
    "pipelined": "Pipelined",
}
#: The asynchronous ones (they take -F, --max-forward-steps, --no-prioritize-input).
ASYNC_SCHEDULERS = tuple(k for k, v in SCHEDULERS.items() if v.endswith("Async"))


# ------------------------------------------------------------------------------------------
# Argument types: refuse bad values at parse time, naming the fix.
# ------------------------------------------------------------------------------------------
def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a whole number >= 1, got {value}. Fix: pass "
            "1 or more (leave the option out for its default)"
        )
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected a finite number > 0, got {text}. Fix: e.g. 5e-3"
        )
    return value


def _add_scheduler_args(p: argparse.ArgumentParser, default: str) -> None:
    g = p.add_argument_group("execution mode")
    g.add_argument(
        "--scheduler",
        choices=sorted(SCHEDULERS),
        default=default,
        help=f"how time steps execute (default: {default})",
    )
    g.add_argument(
        "-F",
        "--forward-group-size",
        type=positive_int,
        default=None,
        metavar="F",
        help=f"asynchronous schedulers ({', '.join(ASYNC_SCHEDULERS)}): spikes "
        "delivered per forward step (default: all pending at once)",
    )
    g.add_argument(
        "--no-prioritize-input",
        action="store_true",
        help="asynchronous schedulers: input events join the pending set instead of "
        "arriving together in a first forward step",
    )
    g.add_argument(
        "--max-forward-steps",
        type=positive_int,
        default=None,
        metavar="N",
        help="asynchronous schedulers: bound on forward steps per time step",
    )
    g.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of data, weights and scheduler (default: 0); the same command with "
        "the same seed gives the same checkpoint, bit for bit",
    )


def _add_data_args(p: argparse.ArgumentParser, *, batch_default: int) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help=f"one of {', '.join(DATASETS)} (default: the model's, or the one the "
        "checkpoint was trained on)",
    )
    g.add_argument("--root", default="data", help="folder holding tonic datasets (default: data)")
    g.add_argument(
        "--download",
        action="store_true",
        help="let tonic download missing dataset files (needs internet)",
    )
    g.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        metavar="T",
        help="time steps per sample (default: 20, or the checkpoint's)",
    )
    g.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="use only the first N samples (quick runs)",
    )
    g.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_default,
        metavar="B",
        help=f"samples per batch (default: {batch_default})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="on an error, show the Python traceback instead of one line",
    )
    parser = argparse.ArgumentParser(
        prog="snntorch-async",
        parents=[common],
        description="Run, train and export snnTorch models without layer synchronization.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import launch, sweep  # light: they import torch and Ray only when they run

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="sync- vs async-trained on digits, Lava export, report",
        description="Train a small snnTorch network sync-trained (LayerSync) and "
        "async-trained, evaluate both under LayerSync and asynchronous execution "
        "at several F, export to Lava, and write DIR/report.md with figures. "
        "Offline; the same seed gives the same numbers.",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes, every stage (< 2 min)")
    p.add_argument("--out", default="demo_out", help="report folder (default: demo_out)")
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help="training epochs per mode (default: 12, or 3 with --quick)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed of everything (default: 0)")

    p = sub.add_parser(
        "train",
        parents=[common],
        help="train a model (zoo or your file) under a scheduler",
        description="Train with unlayered backprop under the chosen scheduler "
        "and write one checkpoint (weights, optimizer, random states and how to "
        "rebuild the model). Ctrl-C saves it; rerun with --resume to continue.",
    )
    m = p.add_mutually_exclusive_group()
    m.add_argument(
        "--model",
        default=None,
        help="built-in model (default: digits_mlp; `--model list` lists them)",
    )
    m.add_argument(
        "--model-file",
        default=None,
        metavar="PATH",
        help="Python file defining `model` or `build_model()` (and `input_shape`)",
    )
    p.add_argument(
        "--hidden",
        type=positive_int,
        default=None,
        help="hidden width of a zoo model (default: the model's)",
    )
    _add_data_args(p, batch_default=64)
    _add_scheduler_args(p, default="layersync")
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=5,
        help="total epochs (a resumed run continues up to this many; default: 5)",
    )
    p.add_argument(
        "--lr", type=positive_float, default=5e-3, help="Adam learning rate (default: 5e-3)"
    )
    p.add_argument(
        "--checkpoint", default="checkpoint.pt", help="where to save (default: checkpoint.pt)"
    )
    w = p.add_mutually_exclusive_group()
    w.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    w.add_argument(
        "--overwrite", action="store_true", help="replace an existing --checkpoint with a fresh run"
    )
    launch.add_train_args(p)

    sweep.add_parser(sub)

    p = sub.add_parser(
        "evaluate",
        parents=[common],
        help="evaluate a checkpoint under any scheduler",
        description="Evaluate a trained checkpoint on the test split under any "
        "scheduler and print accuracy, spike density, synaptic ops and latency.",
    )
    p.add_argument("checkpoint", help="checkpoint written by `snntorch-async train`")
    _add_data_args(p, batch_default=64)
    _add_scheduler_args(p, default="layersync")

    p = sub.add_parser(
        "export",
        parents=[common],
        help="export a checkpoint to a spec .npz, netx .h5 and NIR",
        description="Convert a trained checkpoint (zero reset, reset_delay=False) "
        "to the Lava bridge's NetworkSpec (.npz), lava-dl netx HDF5 and NIR.",
    )
    p.add_argument("checkpoint", help="checkpoint written by `snntorch-async train`")
    p.add_argument("--out", default="export", help="output folder (default: export)")
    p.add_argument(
        "--formats",
        nargs="+",
        choices=("spec", "netx", "nir"),
        default=["spec", "netx", "nir"],
        metavar="FORMAT",
        help="which files to write: spec (float NetworkSpec .npz), netx (fixed-point "
        "lava-dl HDF5 .h5), nir (float NIR .nir); default: all three",
    )
    p.add_argument(
        "--approximate-reset",
        action="store_true",
        help="convert subtract/none reset layers anyway (Lava runs zero reset); "
        "measure the mismatch with `verify --approximate-reset`",
    )
    p.add_argument(
        "--bias-timing",
        choices=("synaptic", "lava"),
        default="synaptic",
        help="synaptic (default): reproduces the trained model; lava: Lava's LIF "
        "bias from step 0, which netx files need (see docs/lava.md)",
    )

    p = sub.add_parser(
        "verify",
        parents=[common],
        help="run a checkpoint or spec on real Lava, print mismatches",
        description="Run the network on real Lava twice, in float (against our "
        "Pipelined engine) and in fixed point (against our bit-exact emulator), "
        "and print the spike mismatches of each (zero expected).",
    )
    p.add_argument("source", help="checkpoint (.pt) or spec (.npz)")
    p.add_argument(
        "--samples",
        type=positive_int,
        default=4,
        help="test samples to run (default: 4; at most the test split's size)",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        metavar="T",
        help="time steps per sample (default: the checkpoint's, or 20 for a spec)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the digits encoding for a spec (default: 0; a checkpoint uses its own)",
    )
    p.add_argument(
        "--approximate-reset",
        action="store_true",
        help="convert subtract/none reset layers anyway and report the mismatch",
    )
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    if args.version:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(version("snntorch-async"))
        except PackageNotFoundError:
            print("0.0.0+unknown")
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    from . import commands
    from .errors import CliError

    args.argv = argv
    try:
        return commands.COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ninterrupted (Ctrl-C); nothing half-written was left behind.", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; --debug shows the traceback
        if debug:
            raise
        known = isinstance(exc, CliError) or _is_ours(exc)
        msg = (
            _one_line(exc)
            if known
            else (
                f"unexpected {type(exc).__name__}: {_one_line(exc)}. This is a bug in "
                "snntorch-async: rerun with --debug and report the traceback."
            )
        )
        print(f"snntorch-async {args.command}: error: {msg}", file=sys.stderr)
        return 2


def _is_ours(exc: BaseException) -> bool:
    """Whether ``exc`` is an error the library raises on purpose (its message teaches)."""
    from ..errors import SnnTorchAsyncError

    if isinstance(exc, SnnTorchAsyncError):
        return True
    from .report import OutputFolderError
    from .zoo import ModelFileError

    if isinstance(exc, (ModelFileError, OutputFolderError)):
        return True
    bridge = sys.modules.get("lava_bridge")
    return bridge is not None and isinstance(exc, bridge.LavaBridgeError)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
