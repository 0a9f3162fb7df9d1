"""The sweep spec (a TOML file) and the jobs it expands to.

A spec names one model, one dataset, the training schedulers, the evaluation schedulers, the
seeds and the epochs; the sweep is the grid *training scheduler × seed*, and every job trains
one model and then evaluates it under every evaluation scheduler::

    [sweep]
    name = "paper_claim"          # titles the table
    out = "sweep_out"             # job records, checkpoints and the table go here
    seeds = [0, 1, 2]
    threads = 1                   # torch threads per job (results depend on it only here)

    [model]
    zoo = "digits_mlp2"           # a snntorch_async.app.zoo model ...
    hidden = 64                   # ... and its settings

    [data]
    dataset = "digits"            # the offline digits data (rate-coded), or "nmnist" / "shd"
    steps = 20                    # time steps T (tonic: frames per recording)
    batch_size = 32
    test_batch_size = 128
    # root = "data"               # tonic only: the folder with NMNIST/ or SHD/ (tonic's layout)
    # synthetic = false           # tonic only: synthetic events of the sensor's size, no files
    # limit = 0                   # tonic only: at most this many recordings per split (0: all)

    [train]
    epochs = 15
    lr = 2e-3
    weight_decay = 0.0            # optional: Adam's weight decay
    max_batches = 0               # optional: at most this many batches per epoch (0: all)

    [[train.scheduler]]           # one table per training scheduler
    name = "sync-trained (LayerSync)"
    type = "LayerSync"

    [[train.scheduler]]
    name = "async-trained (RandomAsync F=8)"
    type = "RandomAsync"
    forward_group_size = 8        # any other key is a setting of the scheduler class
    gradient_rule = "QueuedCarriers"   # a rule by its class name (snntorch_async.GradientRule)

    [[eval]]                      # one table per evaluation scheduler
    name = "RandomAsync F=1"
    type = "RandomAsync"
    forward_group_size = 1
    seed = 123
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = [
    "SweepSpec",
    "Job",
    "load_spec",
    "parse_spec",
    "dataset_label",
    "SCHEDULER_TYPES",
    "DATASETS",
    "TONIC",
]

#: Scheduler classes a spec may name (``type = ...``), all exported by ``snntorch_async``.
SCHEDULER_TYPES = ("LayerSync", "Pipelined", "RandomAsync", "MomentumAsync", "LayerOrderedAsync")
#: Datasets a sweep job can load by itself: the offline digits, and tonic's N-MNIST and SHD (from
#: ``root``, or synthetic events of their sensor size with ``synthetic = true``).
DATASETS = ("digits", "nmnist", "shd")
#: The tonic datasets among them (their ``[data]`` table also takes ``root``, ``synthetic``,
#: ``limit``).
TONIC = ("nmnist", "shd")


@dataclass(frozen=True, kw_only=True)
class Job:
    """One train-then-evaluate job of a sweep (plain data: it travels to a Ray worker as is).

    Attributes:
        train_name: The training scheduler's row label.
        seed: The seed of the data order, the weights and the training.
        model: ``{"zoo": name, **settings}``.
        data: ``{"dataset", "steps", "batch_size", "test_batch_size"}``, and for the tonic
            datasets also ``"root"``, ``"synthetic"`` and ``"limit"``.
        train: ``{"epochs", "lr", "weight_decay", "max_batches", "scheduler": {"type",
            ...settings}}``.
        evals: ``{row label: {"type", ...settings}}`` of the evaluation schedulers.
        threads: torch threads the job runs with.
    """

    train_name: str
    seed: int
    model: dict
    data: dict
    train: dict
    evals: dict
    threads: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "train_name": self.train_name,
            "seed": self.seed,
            "model": self.model,
            "data": self.data,
            "train": self.train,
            "evals": self.evals,
            "threads": self.threads,
        }

    @property
    def key(self) -> str:
        """A stable file-name-safe id: a hash of everything that determines the result."""
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        safe = "".join(c if c.isalnum() else "-" for c in self.train_name).strip("-")[:40]
        return f"{safe}-seed{self.seed}-{hashlib.sha256(blob).hexdigest()[:10]}"


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    """A parsed spec: its title, output folder, and the jobs in table order."""

    name: str
    out: Path
    description: str
    jobs: tuple[Job, ...]
    train_names: tuple[str, ...]
    eval_names: tuple[str, ...]


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10
        import tomli as tomllib
    return tomllib


def load_spec(path: str | Path) -> SweepSpec:
    """Read and check a sweep spec file.

    Raises:
        ConfigError: The file is missing, not TOML, or a field is wrong (the message says which
            and how to fix it).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"Sweep spec {str(path)!r} does not exist. Fix: pass a TOML file such "
            "as benchmarks/paper_claim.toml."
        )
    try:
        raw = _toml().loads(path.read_text())
    except Exception as e:  # noqa: BLE001 - tomllib.TOMLDecodeError, re-raised with the place
        raise ConfigError(f"Sweep spec {str(path)!r} is not valid TOML: {e}.") from None
    return parse_spec(raw, where=str(path))


def _get(table: dict, key: str, kind, where: str, default=None):
    if key not in table:
        if default is None:
            raise ConfigError(f"{where}: missing `{key}` (expected {kind.__name__}). Fix: add it.")
        return default
    v = table[key]
    ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v, ok = float(v), True
    if not ok:
        raise ConfigError(f"{where}: `{key}` must be a {kind.__name__}; got {v!r}.")
    return v


def _scheduler(table: Any, where: str) -> tuple[str, dict]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table with `name` and `type`; got {table!r}.")
    name = _get(table, "name", str, where)
    kind = _get(table, "type", str, where)
    if kind not in SCHEDULER_TYPES:
        raise ConfigError(
            f"{where} ({name!r}): unknown type {kind!r}; expected one of "
            f"{', '.join(SCHEDULER_TYPES)}."
        )
    return name, {k: v for k, v in table.items() if k != "name"}


def dataset_label(data: dict) -> str:
    """How tables name a job's data: ``"digits"``, ``"nmnist"``, or ``"nmnist (SYNTHETIC
    events)"`` when the events are synthetic stand-ins, not the recordings."""
    if data.get("synthetic"):
        return f"{data['dataset']} (SYNTHETIC events)"
    return data["dataset"]


def parse_spec(raw: dict, *, where: str = "spec") -> SweepSpec:
    """Check a spec given as a dict (what a TOML file parses to) and expand its jobs."""
    sweep = raw.get("sweep", {})
    name = _get(sweep, "name", str, f"{where} [sweep]", "sweep")
    out = Path(_get(sweep, "out", str, f"{where} [sweep]", "sweep_out"))
    seeds = sweep.get("seeds", [0])
    if not (
        isinstance(seeds, list)
        and seeds
        and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise ConfigError(
            f"{where} [sweep]: `seeds` must be a non-empty list of ints; got {seeds!r}."
        )
    threads = _get(sweep, "threads", int, f"{where} [sweep]", 1)
    model = dict(raw.get("model", {}))
    _get(model, "zoo", str, f"{where} [model]")
    data = dict(raw.get("data", {}))
    dataset = _get(data, "dataset", str, f"{where} [data]", "digits")
    if dataset not in DATASETS:
        raise ConfigError(
            f"{where} [data]: dataset {dataset!r} is not one a sweep job loads by "
            f"itself; expected one of {', '.join(DATASETS)}."
        )
    extra = {"root", "synthetic", "limit"} & set(data)
    if extra and dataset not in TONIC:
        raise ConfigError(
            f"{where} [data]: {', '.join(f'`{k}`' for k in sorted(extra))} only apply to the "
            f"tonic datasets ({', '.join(TONIC)}), not to {dataset!r}. Fix: remove them."
        )
    raw_data = data
    data = {
        "dataset": dataset,
        "steps": _get(raw_data, "steps", int, f"{where} [data]", 20),
        "batch_size": _get(raw_data, "batch_size", int, f"{where} [data]", 32),
        "test_batch_size": _get(raw_data, "test_batch_size", int, f"{where} [data]", 128),
    }
    if dataset in TONIC:  # (the digits' job dicts, and so their keys, stay as they were)
        data["root"] = _get(raw_data, "root", str, f"{where} [data]", "data")
        data["synthetic"] = _get(raw_data, "synthetic", bool, f"{where} [data]", False)
        data["limit"] = _get(raw_data, "limit", int, f"{where} [data]", 0)
        if data["limit"] < 0:
            raise ConfigError(
                f"{where} [data]: `limit` must be >= 0 (0: every recording); got {data['limit']}."
            )
    train = raw.get("train", {})
    scheds = train.get("scheduler", [])
    if not isinstance(scheds, list) or not scheds:
        raise ConfigError(
            f"{where}: no training scheduler. Fix: add at least one "
            "[[train.scheduler]] table with `name` and `type`."
        )
    base = {
        "epochs": _get(train, "epochs", int, f"{where} [train]", 1),
        "lr": _get(train, "lr", float, f"{where} [train]", 2e-3),
        "weight_decay": _get(train, "weight_decay", float, f"{where} [train]", 0.0),
        "max_batches": _get(train, "max_batches", int, f"{where} [train]", 0),
    }
    trains = [_scheduler(t, f"{where} [[train.scheduler]] #{i + 1}") for i, t in enumerate(scheds)]
    evals = [_scheduler(t, f"{where} [[eval]] #{i + 1}") for i, t in enumerate(raw.get("eval", []))]
    if not evals:
        raise ConfigError(
            f"{where}: no evaluation scheduler. Fix: add at least one [[eval]] table."
        )
    for label, items in (("training", trains), ("evaluation", evals)):
        names = [n for n, _ in items]
        if len(set(names)) != len(names):
            raise ConfigError(
                f"{where}: two {label} schedulers share a name in {names}; names label "
                "the table's rows and must differ."
            )
    jobs = tuple(
        Job(
            train_name=tname,
            seed=seed,
            model=model,
            data=data,
            train={**base, "scheduler": tsched},
            evals=dict(evals),
            threads=threads,
        )
        for seed in seeds
        for tname, tsched in trains
    )
    return SweepSpec(
        name=name,
        out=out,
        description=str(sweep.get("description", "")),
        jobs=jobs,
        train_names=tuple(n for n, _ in trains),
        eval_names=tuple(n for n, _ in evals),
    )
