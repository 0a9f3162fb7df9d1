"""``snntorch-async sweep SPEC.toml``: a grid of train-then-evaluate jobs as Ray tasks.

See :mod:`.sweep_spec` for the spec and :mod:`.sweep_run` for what a sweep guarantees (atomic
per-job records and checkpoints, finished jobs skipped on a rerun, one retry, then a report).
The table (mean ± std over seeds) goes to ``<out>/<name>.md`` and ``<out>/<name>.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``sweep`` subcommand to the CLI's subparsers."""
    p = sub.add_parser(
        "sweep",
        help="run a grid of train-then-evaluate jobs on Ray",
        description="Run the jobs of a sweep spec (TOML: model, data, training and "
        "evaluation schedulers, seeds, epochs) as Ray tasks, each writing its own "
        "record and checkpoint; a rerun skips finished jobs. Writes a markdown + "
        "JSON table of mean ± std over seeds. Needs the [cluster] extra (Ray).",
    )
    p.add_argument("spec", help="sweep spec (TOML), e.g. benchmarks/paper_claim.toml")
    p.add_argument(
        "--address",
        default=None,
        help="an existing Ray cluster (e.g. 'auto' or "
        "'ray://head:10001'); default: start a local Ray on this machine",
    )
    p.add_argument(
        "--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)"
    )
    p.add_argument("--out", default=None, help="override the spec's [sweep] out folder")
    p.add_argument(
        "--serial",
        action="store_true",
        help="run the jobs one after another in this process instead of on Ray (same results)",
    )
    return p


def run(args) -> int:
    """Run the sweep the parsed ``args`` describe; the exit status (1 if a job failed)."""
    import dataclasses

    from ..errors import ConfigError
    from .sweep_run import RayEngine, SerialEngine, gather_table, run_sweep, _write_json_atomic
    from .sweep_spec import load_spec

    try:
        spec = load_spec(args.spec)
        if args.out is not None:
            spec = dataclasses.replace(spec, out=Path(args.out))
        if not args.serial:
            try:
                import ray  # noqa: F401
            except ImportError:
                from .sweep_run import RAY_MISSING

                print(f"snntorch-async sweep: {RAY_MISSING}", file=sys.stderr)
                return 2
        engine = (
            SerialEngine()
            if args.serial
            else RayEngine(address=args.address, num_cpus=args.num_cpus)
        )
        outcomes = run_sweep(spec, engine, echo=lambda m: print(m, flush=True))
    except ConfigError as exc:
        print(f"snntorch-async sweep: {exc}", file=sys.stderr)
        return 2
    title = spec.name
    preamble = spec.description or f"`snntorch-async sweep {args.spec}` — mean ± std over seeds."
    text, table = gather_table(spec, outcomes, title=title, preamble=preamble)
    md, js = spec.out / f"{spec.name}.md", spec.out / f"{spec.name}.json"
    spec.out.mkdir(parents=True, exist_ok=True)
    tmp = md.with_name(f".{md.name}.tmp")
    tmp.write_text(text + "\n")
    tmp.replace(md)
    _write_json_atomic(js, table)
    print("\n" + text + f"\n\nsaved {md} and {js}")
    return 1 if any(o.error for o in outcomes) else 0
