"""The demo report's figures (matplotlib, Agg backend; ``plt`` is passed in by the report).

Each ``plot_*`` draws one PNG from a :class:`~snntorch_async.app.report.DemoResults` and returns
whether it drew anything; :data:`FIGURES` lists them with their file names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["FIGURES"]


def _save(fig, path: Path, plt, title: str | None = None, fontsize: int = 10) -> None:
    """Title (optional), lay out, write ``path`` and free the figure: every figure ends here."""
    if title is not None:
        fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_rasters(res, path: Path, plt) -> bool:
    if not res.rasters:
        return False
    n = len(res.rasters)
    fig, axes = plt.subplots(1, n, figsize=(5.5 * n, 4.2), squeeze=False, sharey=True)
    for ax, (title, (spikes, sizes)) in zip(axes[0], res.rasters.items()):
        spikes = np.asarray(spikes)
        t, idx = np.nonzero(spikes)
        ax.scatter(t, idx, s=40, marker="|", color="black", linewidths=1.5)
        edge = 0
        for s in sizes[:-1]:
            edge += s
            ax.axhline(edge - 0.5, color="tab:red", lw=0.6, ls="--")
        ax.set_title(f"{title}\n{int(spikes.sum())} spikes", fontsize=9)
        ax.set_xlabel("time step")
        steps = spikes.shape[0]
        ax.set_xticks(range(0, steps, max(1, steps // 10)))  # integer steps only
        ax.set_xlim(-0.5, steps - 0.5)
    axes[0][0].set_ylabel("neuron (layers stacked, output on top)")
    _save(
        fig,
        path,
        plt,
        "Spike rasters of one test sample (dashed: layer boundaries); the sample is the "
        "one whose spikes differ most between the two executions",
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
