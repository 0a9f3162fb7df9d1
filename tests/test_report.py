"""The demo report: Markdown + figures, written atomically."""

import os

import numpy as np
import pytest

from snntorch_async.app import report as rp
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
