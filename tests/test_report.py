"""The demo report: Markdown + figures, written atomically."""

import os

import numpy as np
import pytest

from snntorch_async.app import report as rp
from snntorch_async.app.figures import Raster, raster_points
from snntorch_async.app.report import DemoResults, EvalRow, OutputFolderError, write_report


def _row(train, exec_mode, F, acc, density, fw):
    return EvalRow(
        train_mode=train,
        exec_mode=exec_mode,
        forward_group_size=F,
        accuracy=acc,
        spike_density=density,
        latency_steps=3.0,
        latency_forward_steps=fw,
        synops=1234.0,
        spikes_per_layer=(10.0, 2.0),
    )


def _results():
    rows = (
        _row("sync", "LayerSync", None, 0.9, 0.10, 6.0),
        _row("sync", "RandomAsync", 4, 0.7, 0.20, 12.0),
        _row("async", "LayerSync", None, 0.85, 0.08, 6.0),
        _row("async", "RandomAsync", 4, 0.8, 0.10, 6.0),
    )
    raster = (np.eye(5, 12), (10, 2))
    return DemoResults(
        config={"data": "digits"},
        rows=rows,
        histories={
            "sync": {"loss": [2.0, 1.0], "accuracy": [0.5, 0.8]},
            "async": {"loss": [2.1, 1.2], "accuracy": [0.4, 0.7]},
        },
        rasters={"sync / LayerSync": raster, "async / RandomAsync F=4": raster},
        lava=("converted",),
        command="snntorch-async demo --quick",
    )


def test_report_has_table_claim_comparison_and_figures(tmp_path):
    path = write_report(_results(), tmp_path / "out")
    text = path.read_text()
    assert "| async | RandomAsync F=4 | 80.0% | 0.1 |" in text
    assert rp.PAPER_CLAIM in text
    # async-trained vs sync-trained, both at RandomAsync F=4: worked out by hand from the rows.
    assert "| async | RandomAsync F=4 | 50.0% fewer | 2.00x sooner | +10.0 points |" in text
    for name in (
        "rasters.png",
        "accuracy_latency.png",
        "spikes_per_layer.png",
        "training_curves.png",
    ):
        assert (tmp_path / "out" / name).stat().st_size > 1000
        assert f"]({name})" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folders left


def test_failure_leaves_previous_report_untouched_and_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "out"
    write_report(_results(), out)
    before = (out / "report.md").read_text()

    def boom(*a, **k):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(rp, "FIGURES", rp.FIGURES + (("x.png", boom),))
    with pytest.raises(RuntimeError, match="plot failed"):
        write_report(_results(), out)
    assert (out / "report.md").read_text() == before
    assert not (out / "x.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unwritable_output_folder(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputFolderError, match="exists and is a file"):
        write_report(_results(), f)
    with pytest.raises(OutputFolderError, match="Cannot write the report folder"):
        write_report(_results(), f / "sub")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_parent(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputFolderError, match="Fix: pass --out"):
            write_report(_results(), ro / "out")
    finally:
        ro.chmod(0o700)


def test_raster_points_put_each_spike_at_its_forward_steps_share():
    """x = t + (k - 1/2) / S: worked out by hand for three spikes."""
    spikes = np.zeros((2, 3))
    order = np.zeros((2, 3), dtype=np.int64)
    spikes[0, 2], order[0, 2] = 1, 1  # step 0 of 4 forward steps, first: 0 + 0.5 / 4
    spikes[0, 0], order[0, 0] = 1, 4  # step 0, last:                     0 + 3.5 / 4
    spikes[1, 1], order[1, 1] = 1, 2  # step 1 of 2, second:               1 + 1.5 / 2
    x, y = raster_points(Raster(spikes, (2, 1), order, np.array([4, 2])))
    assert dict(zip(y.tolist(), x.tolist())) == {2: 0.125, 0: 0.875, 1: 1.75}
    x, _ = raster_points(Raster(spikes, (2, 1)))  # no forward steps known: the middle
    assert sorted(x.tolist()) == [0.5, 0.5, 1.5]
    order[1, 1] = 3  # beyond the step's 2 forward steps
    with pytest.raises(ValueError, match=r"forward step 3, outside 1..2"):
        raster_points(Raster(spikes, (2, 1), order, np.array([4, 2])))


def test_raster_points_of_an_asynchronous_run_are_fractional():
    """From a real simulation: LayerSync at l + 1/2 of L per step; RandomAsync at F = 1 spreads a
    step's spikes over its forward steps."""
    import torch

    import snntorch_async as sa
    from random_models import mlp

    net = mlp((12, 16, 4))
    x = (torch.rand((5, 1, 12), generator=torch.Generator().manual_seed(0)) < 0.5).float()
    order = sa.Record(layer_spikes=True, spike_forward_steps=True)
    shares = {}
    for name, sched in (("sync", sa.LayerSync()), ("async", sa.RandomAsync(forward_group_size=1))):
        with torch.no_grad():
            r = sa.simulate(net, x, scheduler=sched, record=order)
        spikes = np.concatenate([s[:, 0].flatten(1).numpy() for s in r.layer_spikes], 1)
        k = np.concatenate([s[:, 0].flatten(1).numpy() for s in r.spike_forward_steps], 1)
        xs, ys = raster_points(Raster(spikes, (16, 4), k, r.forward_steps[:, 0].numpy()))
        assert len(xs) == spikes.sum() > 0
        shares[name] = xs - np.floor(xs)
        if name == "sync":  # hidden layer at 1/4 of each step, output at 3/4
            assert set(shares[name][ys < 16].tolist()) == {0.25}
            assert set(shares[name][ys >= 16].tolist()) <= {0.75}
    assert len(set(shares["async"].round(6).tolist())) > 2  # more than the two layer positions


def test_rasters_png_with_forward_steps(tmp_path):
    spikes = np.eye(5, 12)
    order = spikes.astype(np.int64) * 2
    res = DemoResults(
        config={},
        rows=(),
        rasters={
            "sync": Raster(spikes, (10, 2), order, np.full(5, 2)),
            "async": Raster(spikes, (10, 2), order * 3, np.full(5, 7)),
        },
    )
    write_report(res, tmp_path / "out")
    assert (tmp_path / "out" / "rasters.png").stat().st_size > 1000
    bad = DemoResults(config={}, rows=(), rasters={"x": Raster(spikes, (10, 2), order, np.ones(5))})
    with pytest.raises(ValueError, match="outside 1..1"):
        write_report(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
