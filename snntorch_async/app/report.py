"""The demo's report: a Markdown file with a results table and PNG figures, written atomically.

:func:`write_report` renders a :class:`DemoResults` into ``out/report.md`` plus figures
(``rasters.png``, ``accuracy_latency.png``, ``spikes_per_layer.png``, ``training_curves.png``).
Everything is first written into a temporary folder beside ``out`` and then renamed into place,
so an interrupted or failing run never leaves a half-written report; an existing report folder is
replaced only once the new one is complete. Figures use matplotlib's Agg backend (no display).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .figures import FIGURES

__all__ = [
    "DemoResults",
    "EvalRow",
    "OutputFolderError",
    "PAPER_CLAIM",
    "check_writable",
    "write_report",
]

#: What Koopman et al. (arXiv 2408.05098) report for asynchronously trained networks.
PAPER_CLAIM = (
    "Koopman et al. (arXiv 2408.05098) report that networks trained with unlayered backprop "
    "(async-trained), when executed asynchronously, use up to 50% fewer spikes, reach their "
    "decision up to 2x sooner, and are more accurate than sync-trained networks executed the "
    "same way."
)


class OutputFolderError(OSError):
    """The report folder cannot be written."""


@dataclass(frozen=True, kw_only=True)
class EvalRow:
    """One evaluation: a trained model executed under one scheduler.

    Attributes:
        train_mode: How the model was trained (e.g. ``"sync (LayerSync)"``).
        exec_mode: How it was executed (e.g. ``"LayerSync"``, ``"RandomAsync"``).
        forward_group_size: F of the asynchronous execution (``None`` for LayerSync).
        accuracy: Test accuracy in [0, 1].
        spike_density: Spikes / (neurons × T), mean over samples.
        latency_steps: Time steps until the output decision no longer changes (mean).
        latency_forward_steps: Forward steps until the decision no longer changes (mean).
        synops: Effective synaptic operations per sample (mean).
        spikes_per_layer: Mean spikes per sample in each layer.
    """

    train_mode: str
    exec_mode: str
    forward_group_size: int | None
    accuracy: float
    spike_density: float
    latency_steps: float
    latency_forward_steps: float
    synops: float
    spikes_per_layer: tuple[float, ...]

    @property
    def exec_label(self) -> str:
        """``"LayerSync"`` or ``"RandomAsync F=8"``."""
        f = self.forward_group_size
        return self.exec_mode if f is None else f"{self.exec_mode} F={f}"


@dataclass(frozen=True, kw_only=True)
class DemoResults:
    """Everything the report shows.

    Attributes:
        config: Settings of the run, shown in the report (name → value).
        rows: Every evaluation.
        contrast_rows: The evaluations of the contrast regime (sync- and async-trained, under
            LayerSync and RandomAsync at the training F), or empty.
        regime_names: The names of the main and the contrast regime (``None``: none).
        headline_forward_group_size: The headline compares the training modes executed under
            RandomAsync at this F (the async training's F; ``None``: the first F run).
        histories: Training mode → per-epoch metrics (``{"loss": [...], "accuracy": [...]}``).
        rasters: Title → :class:`~snntorch_async.app.figures.Raster` of one test sample (its
            spikes ``[T, N]``, layer sizes and, optionally, each spike's forward step and the
            forward steps per time step; a plain ``(spikes, sizes)`` pair works too).
        lava: Lines describing the Lava export and verification (status, agreement).
        notes: Extra lines (what was skipped and why).
        command: The command line that produced the results.
    """

    config: dict
    rows: tuple[EvalRow, ...]
    contrast_rows: tuple[EvalRow, ...] = ()
    regime_names: tuple[str | None, str | None] = (None, None)
    headline_forward_group_size: int | None = None
    histories: dict = field(default_factory=dict)
    rasters: dict = field(default_factory=dict)
    lava: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    command: str = "snntorch-async demo"


def check_writable(out: str | os.PathLike) -> Path:
    """Fail early, with the fix, if the report folder ``out`` cannot be created or replaced."""
    out = Path(out).expanduser().resolve()
    parent = out.parent
    if out.exists() and not out.is_dir():
        raise OutputFolderError(
            f"The output path {out} exists and is a file; expected a folder for the report. "
            "Fix: pass another --out, or remove the file."
        )
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".snntorch-async-probe-", dir=parent)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputFolderError(
            f"Cannot write the report folder {out}: {exc.strerror or exc}. Fix: pass --out with a "
            "folder you can write to (e.g. --out ./demo_out)."
        ) from None
    return out


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}" if abs(x) < 1 else f"{x:.{digits}f}".rstrip("0").rstrip(".")


def _table(rows: tuple[EvalRow, ...]) -> list[str]:
    lines = [
        "| trained | executed | accuracy | spike density | decision (time steps) | "
        "decision (forward steps) | synaptic ops / sample |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.train_mode} | {r.exec_label} | {100 * r.accuracy:.1f}% | "
            f"{_fmt(r.spike_density)} | {_fmt(r.latency_steps)} | "
            f"{_fmt(r.latency_forward_steps)} | {_fmt(r.synops)} |"
        )
    return lines


def _comparison(rows: tuple[EvalRow, ...]) -> list[str]:
    """Each async-trained model against the sync-trained one, executed the same asynchronous way.

    Spikes: relative change of the spike density; decision: ratio of the forward steps to
    decision (sync / async, > 1 means the async-trained model decides sooner); accuracy:
    difference in percentage points.
    """
    by = {(r.train_mode, r.exec_label): r for r in rows if r.forward_group_size is not None}
    modes = list(dict.fromkeys(r.train_mode for r in rows))
    if len(modes) < 2 or not by:
        return ["Only one training mode was run, so the claim could not be tested here."]
    base = modes[0]
    lines = [
        f"Each async-trained model against {base}, both executed the same asynchronous way "
        "(paper's claim in brackets):",
        "",
        "| trained | executed | spikes (claim: up to 50% fewer) | decision (claim: up to 2x "
        "sooner) | accuracy (claim: higher) |",
        "|---|---|---:|---:|---:|",
    ]
    for other in modes[1:]:
        for label in dict.fromkeys(k[1] for k in by):
            a, b = by.get((base, label)), by.get((other, label))
            if a is None or b is None:
                continue
            spikes = 100 * (1 - b.spike_density / a.spike_density) if a.spike_density else math.nan
            sooner = (
                a.latency_forward_steps / b.latency_forward_steps
                if b.latency_forward_steps
                else math.nan
            )
            if math.isnan(sooner):
                when = "–"
            elif sooner >= 1:
                when = f"{sooner:.2f}x sooner"
            else:
                when = f"{1 / sooner:.2f}x later"
            what = (
                "–"
                if math.isnan(spikes)
                else (f"{abs(spikes):.1f}% {'fewer' if spikes >= 0 else 'more'}")
            )
            lines.append(
                f"| {other} | {label} | {what} | {when} | "
                f"{100 * (b.accuracy - a.accuracy):+.1f} points |"
            )
    return lines


def _effect(rows: tuple[EvalRow, ...], F: int | None) -> dict | None:
    """The headline numbers of one regime: the first async-trained model (RandomAsync) against
    the sync-trained one, both executed under RandomAsync at ``F`` (else the first F run)."""
    modes = list(dict.fromkeys(r.train_mode for r in rows))
    if len(modes) < 2:
        return None
    by = {(r.train_mode, r.exec_label): r for r in rows}
    first = sorted(rows, key=lambda r: r.forward_group_size != F)  # F's rows first
    for r in first:
        if r.train_mode == modes[0] and r.exec_mode == "RandomAsync":
            a, b = r, by.get((modes[1], r.exec_label))
            if b is not None:
                break
    else:
        return None
    return {
        "executed": a.exec_label,
        "async_trained": modes[1],
        "density": b.spike_density / a.spike_density if a.spike_density else math.nan,
        "sooner": a.latency_forward_steps / b.latency_forward_steps
        if b.latency_forward_steps
        else math.nan,
        "accuracy": 100 * (b.accuracy - a.accuracy),
        "acc_sync": a.accuracy,
        "acc_async": b.accuracy,
    }


def _headline(res: DemoResults) -> list[str]:
    F = res.headline_forward_group_size
    effects = [(res.regime_names[0], _effect(res.rows, F))]
    if res.contrast_rows:
        effects.append((res.regime_names[1], _effect(res.contrast_rows, F)))
    effects = [(n, e) for n, e in effects if e is not None]
    if not effects:
        return []
    lines = [
        "## Headline: what unlayered backprop changed",
        "",
        "Async-trained against sync-trained, both executed asynchronously "
        f"({effects[0][1]['executed']}):",
        "",
        "| regime | spike density (async / sync-trained) | decision (forward steps) "
        "| accuracy (async-trained − sync-trained) |",
        "|---|---:|---:|---:|",
    ]
    for name, e in effects:
        s = e["sooner"]
        when = "–" if math.isnan(s) else (f"{s:.2f}x sooner" if s >= 1 else f"{1 / s:.2f}x later")
        lines.append(
            f"| {name or 'this run'} | {e['density']:.2f}x | {when} | "
            f"{e['accuracy']:+.1f} points ({_fmt(e['acc_async'])} vs {_fmt(e['acc_sync'])}) |"
        )
    lines += [
        "",
        "The reference regime (β = e⁻¹⁰, threshold 0.3) is where the order of spikes within a "
        "step decides what fires; in the β = 0.9 contrast the membrane integrates over many steps "
        'and the two training modes behave alike (docs/async.md, README "Measured results").',
        "",
    ]
    return lines


def _render_markdown(res: DemoResults, figures: list[str]) -> str:
    md = ["# snntorch-async demo report", ""]
    md += [f"Reproduce with: `{res.command}`", ""]
    md += _headline(res)
    md += ["## Setup", ""]
    md += [f"- {k}: {v}" for k, v in res.config.items()] + [""]
    md += ["## Results", ""] + _table(res.rows) + [""]
    if res.contrast_rows:
        md += [f"Contrast regime ({res.regime_names[1]}):", ""] + _table(res.contrast_rows) + [""]
    md += [
        "Spike density = spikes / (neurons × time steps); decision = the time step (and the "
        "forward step) after which the output's running spike-count argmax no longer changes; "
        "synaptic ops = spikes × their non-zero fan-out (input events included).",
        "",
        "The synaptic operations are the same in every execution mode of one model; that is "
        "expected, not a bug. Input events are delivered first (prioritize_input=True), so the "
        "hidden layer receives all of a step's input events at once in every mode and fires the "
        "same spikes; only the output layer's spikes depend on the execution order, and output "
        "spikes have no targets, so they add no synaptic operations. With two or more hidden "
        "layers the counts would differ between modes; between training modes they differ here "
        "(other weights, other hidden spikes).",
        "",
    ]
    md += ["## The paper's claim and what we measured", "", PAPER_CLAIM, "", "Measured here:", ""]
    md += _comparison(res.rows) + [""]
    md += [
        "These numbers come from one small run (small network, few epochs, one seed); they are "
        "what this run measured, not a statistical test of the claim.",
        "",
    ]
    md += ["## Lava", ""] + [f"- {line}" for line in res.lava or ("not run",)] + [""]
    if res.notes:
        md += ["## Notes", ""] + [f"- {n}" for n in res.notes] + [""]
    if figures:
        md += ["## Figures", ""]
        md += [f"![{Path(f).stem.replace('_', ' ')}]({f})" for f in figures] + [""]
    return "\n".join(md)


def write_report(res: DemoResults, out: str | os.PathLike) -> Path:
    """Write ``out/report.md`` and its figures atomically; return the path of ``report.md``.

    The report is built in a temporary folder beside ``out`` and renamed into place only when
    complete; on any error the temporary folder is removed and an existing ``out`` is untouched.

    Raises:
        OutputFolderError: ``out`` cannot be written.
    """
    out = check_writable(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; a report folder is not
    old = None
    try:
        figures = []
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            plt = None
            res = DemoResults(
                **{
                    **res.__dict__,
                    "notes": res.notes
                    + (
                        "matplotlib is not installed, so no figures were drawn (pip install "
                        "'snntorch-async[plot]').",
                    ),
                }
            )
        if plt is not None:
            for name, draw in FIGURES:
                if draw(res, tmp / name, plt):
                    figures.append(name)
        (tmp / "report.md").write_text(_render_markdown(res, figures), encoding="utf-8")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out / "report.md"
