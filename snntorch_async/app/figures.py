"""The demo report's figures (matplotlib, Agg backend; ``plt`` is passed in by the report).

Each ``plot_*`` draws one PNG from a :class:`~snntorch_async.app.report.DemoResults` and returns
whether it drew anything; :data:`FIGURES` lists them with their file names.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["FIGURES", "Raster", "raster_points"]


class Raster(NamedTuple):
    """One panel of ``rasters.png``: one sample's spikes, every layer stacked (output on top).

    Attributes:
        spikes: ``[T, N]`` 0/1: neuron ``n`` (layers concatenated) fired in time step ``t``.
        sizes: Neurons per layer (their sum is ``N``).
        spike_forward_steps: ``[T, N]`` int: the forward step (1-based within its time step) of
            each spike, 0 where none (``SimulationResult.spike_forward_steps``); ``None``: not
            known, spikes are drawn at the middle of their step.
        forward_steps: ``[T]`` forward steps of each time step (``SimulationResult.forward_steps``
            of the sample); needed with ``spike_forward_steps``.
    """

    spikes: np.ndarray
    sizes: tuple[int, ...]
    spike_forward_steps: np.ndarray | None = None
    forward_steps: np.ndarray | None = None


def _save(fig, path: Path, plt, title: str | None = None, fontsize: int = 10) -> None:
    """Title (optional), lay out, write ``path`` and free the figure: every figure ends here."""
    if title is not None:
        fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def raster_points(raster: Raster) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of every spike of ``raster``: time step plus its forward step's share, neuron.

    Time step ``t`` spans ``[t, t + 1)`` on the x axis, cut into its ``S_t`` forward steps; a
    spike fired in forward step ``k`` (1-based) is drawn at the middle of the ``k``-th slice,

        x = t + (k − ½) / S_t,

    so that spikes of one step appear in the order they were fired. Without forward steps,
    ``x = t + ½``. Raises ``ValueError`` if a spike's forward step is not in ``1..S_t``.
    """
    spikes = np.asarray(raster.spikes)
    t, y = np.nonzero(spikes)
    if raster.spike_forward_steps is None:
        return t + 0.5, y
    k = np.asarray(raster.spike_forward_steps)[t, y].astype(np.float64)
    steps = np.asarray(raster.forward_steps, dtype=np.float64)[t]
    bad = (k < 1) | (k > steps)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"raster spike of neuron {int(y[i])} at time step {int(t[i])} has forward step "
            f"{int(k[i])}, outside 1..{int(steps[i])}; expected the spike_forward_steps and "
            "forward_steps of the same simulation and sample."
        )
    return t + (k - 0.5) / steps, y


def _plot_rasters(res, path: Path, plt) -> bool:
    if not res.rasters:
        return False
    panels = [(title, Raster(*value)) for title, value in res.rasters.items()]
    T = np.asarray(panels[0][1].spikes).shape[0]
    n = len(panels)
    fig, axes = plt.subplots(
        n, 1, figsize=(max(10.0, 0.6 * T), 3.2 * n + 1.0), squeeze=False, sharex=True, sharey=True
    )
    for ax, (title, raster) in zip(axes[:, 0], panels):
        x, y = raster_points(raster)
        ax.scatter(x, y, s=30, marker="|", color="black", linewidths=1.2)
        edge = 0
        for s in raster.sizes[:-1]:
            edge += s
            ax.axhline(edge - 0.5, color="tab:red", lw=0.6, ls="--")
        for t in range(1, T):
            ax.axvline(t, color="0.8", lw=0.5, zorder=0)
        label = f"{title}\n{int(np.asarray(raster.spikes).sum())} spikes"
        if raster.forward_steps is not None:
            label += f", {np.mean(raster.forward_steps):.1f} forward steps per time step (mean)"
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("neuron\n(layers stacked,\noutput on top)", fontsize=8)
        ax.set_xticks(range(0, T + 1, max(1, T // 10)))  # step boundaries: integer steps only
        ax.set_xlim(0, T)
    axes[-1, 0].set_xlabel(
        "time step t; a spike fired in forward step k of the step's S is drawn at t + (k − ½)/S"
    )
    _save(
        fig,
        path,
        plt,
        "Spike rasters of one test sample, in the order the spikes were fired within each step\n"
        "(dashed: layer boundaries; LayerSync computes layer l in forward step l + 1 of L)",
    )
    return True


def _plot_accuracy_latency(res, path: Path, plt) -> bool:
    """Colour: training mode; line style: execution mode; marker: F (all in the legend)."""
    if not res.rows:
        return False
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    modes = list(dict.fromkeys(r.train_mode for r in res.rows))
    execs = list(dict.fromkeys(r.exec_mode for r in res.rows if r.forward_group_size is not None))
    fs = sorted({r.forward_group_size for r in res.rows if r.forward_group_size is not None})
    markers = dict(zip(fs, "os^Dvp<>h"))
    styles = dict(zip(execs, ("-", "--", ":", "-.")))
    for k, mode in enumerate(modes):
        color = colors[k % len(colors)]
        rows = [r for r in res.rows if r.train_mode == mode]
        for r in rows:
            if r.forward_group_size is None:  # LayerSync: one star
                ax.scatter(
                    r.latency_forward_steps,
                    100 * r.accuracy,
                    marker="*",
                    s=200,
                    color=color,
                    edgecolor="black",
                    zorder=3,
                )
        for exec_mode in execs:
            pts = sorted(
                (r for r in rows if r.exec_mode == exec_mode), key=lambda r: r.forward_group_size
            )
            ax.plot(
                [r.latency_forward_steps for r in pts],
                [100 * r.accuracy for r in pts],
                ls=styles[exec_mode],
                color=color,
                lw=1.2,
            )
            for r in pts:
                ax.scatter(
                    r.latency_forward_steps,
                    100 * r.accuracy,
                    marker=markers[r.forward_group_size],
                    s=36,
                    color=color,
                    zorder=3,
                )
    ax.set_xscale("log")
    ax.set_xlabel("latency to decision (forward steps, mean; log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy against latency", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    handles = [
        Line2D([], [], color=colors[k % len(colors)], lw=3, label=f"trained {m}")
        for k, m in enumerate(modes)
    ]
    handles += [Line2D([], [], color="grey", ls=styles[e], label=f"executed {e}") for e in execs]
    handles += [
        Line2D(
            [],
            [],
            color="grey",
            marker="*",
            ls="",
            markersize=12,
            markeredgecolor="black",
            label="executed LayerSync",
        )
    ]
    handles += [
        Line2D([], [], color="grey", marker=markers[f], ls="", label=f"F = {f}") for f in fs
    ]
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    _save(fig, path, plt)
    return True


def _spike_rows(rows) -> list:
    """Per training mode: LayerSync execution and the most asynchronous one (smallest F)."""
    picked = []
    first_async = next((r.exec_mode for r in rows if r.forward_group_size is not None), None)
    for mode in dict.fromkeys(r.train_mode for r in rows):
        mine = [r for r in rows if r.train_mode == mode and r.spikes_per_layer]
        picked += [r for r in mine if r.forward_group_size is None][:1]
        asyn = [r for r in mine if r.exec_mode == first_async]
        if asyn:
            picked.append(min(asyn, key=lambda r: r.forward_group_size))
    return picked


def _short_mode(mode: str) -> str:
    """``"async (RandomAsync F=8)"`` → ``"RandomAsync F=8"``; ``"sync (LayerSync)"`` → ``"sync"``."""
    if mode.startswith("async (") and mode.endswith(")"):
        return mode[len("async (") : -1]
    return mode.split(" ")[0]


def _plot_spikes_per_layer(res, path: Path, plt) -> bool:
    rows = _spike_rows(res.rows)
    if not rows:
        return False
    L = len(rows[0].spikes_per_layer)
    fig, axes = plt.subplots(1, L, figsize=(3.6 * L + 2, 4.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    modes = list(dict.fromkeys(r.train_mode for r in rows))
    labels = [f"{_short_mode(r.train_mode)} → {r.exec_label}" for r in rows]
    for i, ax in enumerate(axes[0]):
        for k, r in enumerate(rows):
            c = colors[modes.index(r.train_mode) % len(colors)]
            hatch = None if r.forward_group_size is None else "//"
            ax.bar(k, r.spikes_per_layer[i], color=c, hatch=hatch, edgecolor="black")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
        ax.set_title(f"layer {i + 1}" + (" (output)" if i == L - 1 else ""), fontsize=9)
        ax.set_ylabel("spikes per sample (mean)")
    _save(
        fig,
        path,
        plt,
        "Spikes per layer: trained → executed (plain: LayerSync execution; hatched: asynchronous)",
    )
    return True


def _plot_training(res, path: Path, plt) -> bool:
    if not res.histories:
        return False
    keys = [
        k
        for k in ("loss", "accuracy", "spike_density")
        if any(k in h for h in res.histories.values())
    ]
    if not keys:
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for mode, hist in res.histories.items():
            ys = hist.get(key)
            if ys:
                ax.plot(range(1, len(ys) + 1), ys, marker="o", label=f"trained {mode}")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path, plt, "Training curves (training set)")
    return True


#: File name → drawing function, in the report's order.
FIGURES = (
    ("rasters.png", _plot_rasters),
    ("accuracy_latency.png", _plot_accuracy_latency),
    ("spikes_per_layer.png", _plot_spikes_per_layer),
    ("training_curves.png", _plot_training),
)
