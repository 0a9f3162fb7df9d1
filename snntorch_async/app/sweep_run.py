"""Running a sweep: one job (:func:`run_job`), the engines that run many (:class:`RayEngine`,
:class:`SerialEngine`), and the table gathered from the job records (:func:`gather_table`).

Every job writes ``<out>/jobs/<key>.json`` (its record) and ``<out>/jobs/<key>.pt`` (its
checkpoint) atomically; a job whose record exists is finished and is skipped by a rerun, one
that was killed resumes from its checkpoint. A job that raises is tried once more
(:data:`RETRIES`), then reported in ``<out>/jobs/<key>.error.json`` while the others go on. A job
runs with ``threads`` torch threads and seeds everything from its seed, so its record is the
same whether it ran alone, serially or on any Ray worker (except ``train_time_s``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import statistics
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from ..errors import ConfigError
from .regimes import adam
from .sweep_spec import Job, SweepSpec, dataset_label

__all__ = [
    "RETRIES",
    "KEYS",
    "Outcome",
    "run_job",
    "SerialEngine",
    "RayEngine",
    "run_sweep",
    "gather_table",
    "mean_std",
    "RAY_MISSING",
    "SYNTHETIC_SIZES",
    "load_job_data",
    "prepare_data",
]

log = logging.getLogger(__name__)

#: How many times a failed job is tried again before it is reported.
RETRIES = 1
#: The metrics of the table (keys of ``EvalResult.summary()``).
KEYS = (
    "accuracy",
    "spike_density",
    "decision_forward_steps",
    "decision_step",
    "first_spike_forward_steps",
    "synops_effective",
)
RECORD_FORMAT = "snntorch-async-sweep-job/1"
#: Recordings of the synthetic stand-in for a tonic dataset (``synthetic = true``): train, test
#: (``limit`` caps both).
SYNTHETIC_SIZES = (2000, 500)
RAY_MISSING = (
    "Ray is not installed; sweeps run their jobs as Ray tasks. Fix: pip install "
    "'snntorch-async[cluster]' (or pip install 'ray[default]'), or use --serial to run "
    "the jobs one after another in this process."
)


def _write_json_atomic(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _scheduler(settings: dict):
    import snntorch_async as sa

    kind = settings["type"]
    kw = {k: v for k, v in settings.items() if k != "type"}
    rule = kw.get("gradient_rule")
    if isinstance(rule, str):  # named by its class in the spec (TOML has no objects)
        cls = getattr(sa, rule, None)
        if not (isinstance(cls, type) and issubclass(cls, sa.GradientRule)):
            raise ConfigError(
                f"Sweep scheduler {kind}: gradient_rule={rule!r} is not a gradient rule; "
                'expected "QueuedCarriers", "LayerCarriers" or "EventGradients".'
            )
        kw["gradient_rule"] = cls()
    try:
        return getattr(sa, kind)(**kw)
    except TypeError as e:
        raise ConfigError(
            f"Sweep scheduler {kind}({', '.join(f'{k}={v!r}' for k, v in kw.items())}): "
            f"{e}. Fix: use the settings of snntorch_async.{kind}."
        ) from None


def job_paths(job: Job, out: Path) -> dict[str, Path]:
    base = Path(out) / "jobs" / job.key
    return {
        "record": base.with_suffix(".json"),
        "checkpoint": base.with_suffix(".pt"),
        "error": base.with_suffix(".error.json"),
        "attempts": base.with_suffix(".attempts"),
    }


def finished(job: Job, out: Path) -> dict | None:
    """The job's record if it already finished (same job settings), else ``None``."""
    p = job_paths(job, out)["record"]
    if not p.is_file():
        return None
    rec = json.loads(p.read_text())
    return rec if rec.get("format") == RECORD_FORMAT and rec.get("job") == job.as_dict() else None


def _draw(dataset, limit: int):
    """``limit`` recordings drawn without replacement (seeded, in index order), or all of them.

    A random draw, not the first ``limit``: tonic lists N-MNIST's files class by class.
    """
    import torch

    if not limit or limit >= len(dataset):
        return dataset
    pick = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:limit]
    return torch.utils.data.Subset(dataset, sorted(pick.tolist()))


def load_job_data(data: dict, seed: int):
    """The ``(train, test)`` datasets of a job's ``[data]`` (items ``(x [T, *features], y)``).

    ``digits``: the offline digits, rate-coded, split by ``seed``. ``nmnist`` / ``shd``: the
    recordings under ``data["root"]`` through tonic (binned into ``steps`` binary frames, see
    :func:`snntorch_async.data.load_tonic`), or with ``data["synthetic"]``
    :class:`~snntorch_async.data.SyntheticEvents` of the dataset's sensor size and classes
    (:data:`SYNTHETIC_SIZES` recordings; a stand-in that checks the pipeline, not the dataset).
    ``data["limit"]`` caps each split.

    Raises:
        DatasetNotFoundError: The recordings are not under ``root`` (the message names the file,
            where to get it and where to put it).
    """
    name, steps = data["dataset"], data["steps"]
    if name == "digits":
        from ..data import RateEncoding, load_digits_spikes

        digits = load_digits_spikes(encoding=RateEncoding(), num_steps=steps, seed=seed)
        return digits.train, digits.test
    from ..data.tonic import TONIC_DATASETS, EventFrames, SyntheticEvents, load_tonic

    info, limit = TONIC_DATASETS[name], data.get("limit", 0)
    if data.get("synthetic"):
        train, test = (
            EventFrames(
                SyntheticEvents(
                    min(size, limit) if limit else size,
                    info.sensor_size,
                    num_classes=info.num_classes,
                    seed=split_seed,
                ),
                info.sensor_size,
                n_time_bins=steps,
                binary=True,
            )
            for size, split_seed in zip(SYNTHETIC_SIZES, (0, 1))
        )
        return train, test
    root = data.get("root", "data")
    train = load_tonic(name, root, train=True, n_time_bins=steps, binary=True)
    test = load_tonic(name, root, train=False, n_time_bins=steps, binary=True)
    return _draw(train, limit), _draw(test, limit)


def prepare_data(jobs: Iterable[Job], echo: Callable[[str], None] = log.info) -> None:
    """Open the tonic recordings of ``jobs`` once here, before they run in parallel.

    tonic extracts an archive the first time a dataset is opened; jobs starting together on Ray
    would each extract it into the same folder at once. Opened here, it is extracted once and the
    jobs find it ready. Missing archives are left to the jobs (each reports
    :class:`~snntorch_async.data.DatasetNotFoundError`); synthetic data needs nothing.
    """
    from ..data.tonic import load_tonic, missing_files

    seen = set()
    for job in jobs:
        d = job.data
        where = (d["dataset"], d.get("root", "data"))
        if d["dataset"] == "digits" or d.get("synthetic") or where in seen:
            continue
        seen.add(where)
        for train in (True, False):
            if not missing_files(*where, train=train):
                echo(f"opening {where[0]} ({'train' if train else 'test'}) under {where[1]}")
                load_tonic(*where, train=train, n_time_bins=d["steps"])


def _check_model_fits(job: Job) -> None:
    """A zoo model whose per-step input does not match the job's data: say which model does."""
    from ..data.tonic import TONIC_DATASETS
    from .zoo import ZOO

    name = job.data["dataset"]
    want = (64,) if name == "digits" else TONIC_DATASETS[name].frame_shape()
    entry = ZOO.get(job.model["zoo"])
    if entry is not None and tuple(entry.input_shape) != tuple(want):
        fits = sorted(k for k, e in ZOO.items() if tuple(e.input_shape) == tuple(want))
        raise ConfigError(
            f"Sweep [model] zoo = {job.model['zoo']!r} takes per-step inputs "
            f"{list(entry.input_shape)}, but dataset {name!r} gives {list(want)}. Fix: zoo = "
            f"{fits[0]!r} (or one of {fits})."
        )


def run_job(job: Job, out: str | os.PathLike) -> dict:
    """Train and evaluate one job, write its record atomically, and return it.

    Returns:
        ``{"format", "key", "job", "metrics": {eval name: summary}, "train_time_s"}``.
    """
    import torch

    from ..data import make_loader
    from ..metrics import evaluate
    from ..training import TrainConfig, fit
    from .zoo import build_zoo_model

    paths = job_paths(job, Path(out))
    paths["attempts"].parent.mkdir(parents=True, exist_ok=True)
    with open(paths["attempts"], "a") as f:  # one line per attempt (the retry is visible)
        f.write(f"{os.getpid()}\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(job.threads)
    try:
        d, t = job.data, job.train
        _check_model_fits(job)
        train_ds, test_ds = load_job_data(d, job.seed)
        train = make_loader(train_ds, batch_size=d["batch_size"], shuffle=True, seed=job.seed)
        test = make_loader(test_ds, batch_size=d["test_batch_size"], shuffle=False, seed=job.seed)
        torch.manual_seed(job.seed)
        settings = {k: v for k, v in job.model.items() if k != "zoo"}
        model = build_zoo_model(job.model["zoo"], **settings)
        config = TrainConfig(
            epochs=t["epochs"],
            lr=t["lr"],
            optimizer=adam(t.get("weight_decay", 0.0)),
            seed=job.seed,
            max_batches=t["max_batches"] or None,
            checkpoint_path=str(paths["checkpoint"]),
        )
        t0 = time.perf_counter()
        fit(
            model,
            train,
            scheduler=_scheduler(t["scheduler"]),
            config=config,
            resume=True,
            progress=False,
        )
        train_s = time.perf_counter() - t0
        metrics = {
            name: {
                k: float(v)
                for k, v in evaluate(model, test, scheduler=_scheduler(s)).summary().items()
            }
            for name, s in job.evals.items()
        }
    finally:
        torch.set_num_threads(threads)
    record = {
        "format": RECORD_FORMAT,
        "key": job.key,
        "job": job.as_dict(),
        "metrics": metrics,
        "train_time_s": train_s,
    }
    _write_json_atomic(paths["record"], record)
    paths["error"].unlink(missing_ok=True)
    return record


def _failure(job: Job, out: Path, exc: BaseException, tb: str | None = None) -> str:
    """Write the job's error record (``tb``: the traceback text, default ``exc``'s); the
    one-line message."""
    msg = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    tb = tb or "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    _write_json_atomic(
        job_paths(job, out)["error"],
        {"key": job.key, "job": job.as_dict(), "error": msg, "traceback": tb},
    )
    return msg


@dataclass(frozen=True)
class Outcome:
    """What became of one job: its record, or the error it ended with."""

    job: Job
    record: dict | None
    error: str | None = None
    skipped: bool = False


class SerialEngine:
    """Runs the jobs one after another in this process (no Ray needed; same records)."""

    def run(self, jobs: Iterable[Job], out: Path, echo: Callable[[str], None]) -> list[Outcome]:
        outcomes = []
        for job in jobs:
            for attempt in range(RETRIES + 1):
                try:
                    outcomes.append(Outcome(job, run_job(job, out)))
                    echo(f"done: {job.train_name}, seed {job.seed}")
                    break
                except Exception as exc:  # noqa: BLE001 - reported, the sweep goes on
                    if attempt == RETRIES:
                        outcomes.append(Outcome(job, None, _failure(job, out, exc)))
                        echo(f"FAILED: {job.train_name}, seed {job.seed}: {outcomes[-1].error}")
        return outcomes


@dataclass(frozen=True, kw_only=True)
class RayEngine:
    """Runs every job as a Ray task (one CPU each).

    Attributes:
        address: An existing Ray cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``);
            ``None`` starts a local Ray on this machine for the sweep (unless one is running
            in this process already).
        num_cpus: CPUs of the local Ray (``None``: all).
    """

    address: str | None = None
    num_cpus: int | None = None

    def run(self, jobs: Iterable[Job], out: Path, echo: Callable[[str], None]) -> list[Outcome]:
        try:
            import ray
        except ImportError:
            raise ConfigError(RAY_MISSING) from None
        started = not ray.is_initialized()
        if started:
            ray.init(
                address=self.address,
                num_cpus=self.num_cpus if self.address is None else None,
                include_dashboard=False,
                log_to_driver=False,
            )
        try:
            task = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=True)(run_job)
            refs = {task.remote(job, str(Path(out).resolve())): job for job in jobs}
            pending, outcomes = list(refs), []
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                job = refs[done[0]]
                try:
                    outcomes.append(Outcome(job, ray.get(done[0])))
                    echo(f"done: {job.train_name}, seed {job.seed}")
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    outcomes.append(
                        Outcome(
                            job,
                            None,
                            _failure(job, out, cause, re.sub(r"\x1b\[[0-9;]*m", "", str(exc))),
                        )
                    )
                    echo(f"FAILED: {job.train_name}, seed {job.seed}: {outcomes[-1].error}")
            return outcomes
        finally:
            if started:
                ray.shutdown()


def run_sweep(spec: SweepSpec, engine, *, echo: Callable[[str], None] = log.info) -> list[Outcome]:
    """Run the spec's unfinished jobs on ``engine``; return every job's outcome in spec order."""
    out = Path(spec.out)
    done = {job.key: finished(job, out) for job in spec.jobs}
    todo = [job for job in spec.jobs if done[job.key] is None]
    echo(
        f"sweep {spec.name}: {len(spec.jobs)} jobs, {len(spec.jobs) - len(todo)} finished "
        f"already, {len(todo)} to run"
    )
    prepare_data(todo, echo)
    ran = {o.job.key: o for o in (engine.run(todo, out, echo) if todo else [])}
    return [
        ran[j.key] if j.key in ran else Outcome(j, done[j.key], skipped=True) for j in spec.jobs
    ]


def mean_std(values: list[float]) -> str:
    """``mean ± std`` over seeds (NaN, an undecided latency, left out; ``n/a`` if none)."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "n/a"
    m = statistics.fmean(vals)
    s = statistics.stdev(vals) if len(vals) > 1 else 0.0
    if abs(m) >= 1000:  # (synaptic operations)
        return f"{m:.0f} ± {s:.0f}"
    return f"{m:.3f} ± {s:.3f}"


def gather_table(
    spec: SweepSpec, outcomes: list[Outcome], *, title: str, preamble: str
) -> tuple[str, dict]:
    """The markdown table (mean ± std over seeds) and its JSON (``"train | eval": {key: [..]}``)."""
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    times: dict[str, list[float]] = {}
    for t in spec.train_names:
        for e in spec.eval_names:
            rows[(t, e)] = {k: [] for k in KEYS}
    for o in outcomes:
        if o.record is None:
            continue
        times.setdefault(o.job.train_name, []).append(o.record["train_time_s"])
        for e, m in o.record["metrics"].items():
            for k in KEYS:
                rows[(o.job.train_name, e)][k].append(float(m.get(k, math.nan)))
    # a tonic dataset gets a first column naming it (and saying when its events are synthetic)
    labels = sorted({dataset_label(j.data) for j in spec.jobs})
    data_col = labels != ["digits"]
    lines = [
        f"# {title}",
        "",
        preamble,
        "",
        ("| data " if data_col else "")
        + "| trained | executed | accuracy | spike density | decision (forward steps) "
        "| decision (time steps) | first output spike (forward steps) | synops |",
        ("|---" if data_col else "") + "|---|---|---|---|---|---|---|---|",
    ]
    first = f"| {', '.join(labels)} " if data_col else ""
    for (t, e), cell in rows.items():
        lines.append(f"{first}| {t} | {e} | " + " | ".join(mean_std(cell[k]) for k in KEYS) + " |")
    lines += [
        "",
        "Training time per model (s): "
        + ", ".join(f"{k}: {mean_std(v)}" for k, v in times.items()),
    ]
    failed = [o for o in outcomes if o.error is not None]
    if failed:
        lines += ["", f"Failed jobs ({len(failed)}, left out of the table):", ""]
        lines += [f"- {o.job.train_name}, seed {o.job.seed}: {o.error}" for o in failed]
    return "\n".join(lines), {f"{t} | {e}": v for (t, e), v in rows.items()}
