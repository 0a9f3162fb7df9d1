"""``snntorch-async train --nproc N``: the same ``train`` command in ``N`` local worker processes.

The workers are started by torch's own launcher (``torch.distributed.run``'s API, through
:func:`snntorch_async.training.distributed.launch`), so each gets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` and its ``fit`` trains data-parallel. Rank 0 prints and checkpoints; the others
are quiet. For several machines run ``torchrun`` yourself (see README, "More than one machine").
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["add_train_args", "train_nproc"]


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The ``--nproc`` option of ``train``."""
    p.add_argument(
        "--nproc",
        type=_positive_int,
        default=1,
        metavar="N",
        help="train data-parallel in N local processes (torch.distributed, gloo on "
        "CPU; --batch-size is per process). Default 1",
    )


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of processes; got {text!r}")
    return n


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _worker(argv: list[str]) -> int:
    """One worker: the ``train`` command itself (stdout silenced except on rank 0)."""
    if os.environ.get("RANK", "0") != "0":
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the worker
    from . import cli

    return cli.main(argv)


def train_nproc(nproc: int, argv: list[str]) -> int:
    """Run ``snntorch-async <argv without --nproc>`` in ``nproc`` workers; the exit status."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from ..training.distributed import launch

    print(f"launching {nproc} training processes (torch.distributed, gloo on CPU)", flush=True)
    try:
        codes = launch(_worker, _without_nproc(argv), nproc=nproc)
    except ChildFailedError as exc:
        print(f"training failed on a worker:\n{exc}", file=sys.stderr)
        return 1
    except SignalException:  # Ctrl-C: the workers saved (rank 0 wrote the checkpoint) and ended
        return 130
    return max(int(c or 0) for c in codes.values())
