"""Every example runs at its tiny size (subprocess, like a user would run it)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def _run(name: str, *args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--tiny", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_01_run_async(tmp_path):
    out = _run("01_run_async.py", cwd=tmp_path)
    assert "asynchronous output spikes: (10, 4, 10)" in out
    assert "LayerSync equals snnTorch's loop: True" in out


def test_02_train_unlayered(tmp_path):
    out = _run("02_train_unlayered.py", cwd=tmp_path)
    assert "training loss per epoch" in out
    assert "executed LayerSync" in out and "executed RandomAsync F=8" in out


def test_03_export_lava(tmp_path):
    out = _run("03_export_lava.py", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert "saved" in out and (tmp_path / "x" / "net.npz").is_file()
    assert "mismatching spikes" in out or "Lava is not installed" in out
    assert "output spikes (all steps)" in out
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    out = _run("03_export_lava.py", cwd=cwd)
    assert "writing the exported files to" in out and not list(cwd.iterdir())  # not into cwd
    folder = Path(out.split("writing the exported files to ", 1)[1].splitlines()[0])
    assert (folder / "net.npz").is_file()


def test_04_tonic_nmnist_falls_back_to_synthetic_events(tmp_path):
    pytest.importorskip("tonic", reason="tonic is in the [data] extra: pip install tonic")
    out = _run("04_tonic_nmnist.py", "--root", str(tmp_path / "none"), cwd=tmp_path)
    assert "N-MNIST not found" in out and "place it at" in out
    assert "using synthetic N-MNIST-like events instead" in out
    assert "one batch: inputs (5, 8, 2, 34, 34)" in out
    assert "test accuracy" in out


def test_05_shd_recurrent_falls_back_to_synthetic_events(tmp_path):
    pytest.importorskip("tonic", reason="tonic is in the [data] extra: pip install tonic")
    out = _run("05_shd_recurrent.py", "--root", str(tmp_path / "none"), cwd=tmp_path)
    assert "SHD not found" in out and "place it at" in out
    assert "using synthetic SHD-like events instead" in out
    assert "one batch: inputs (8, 8, 1, 700)" in out
    assert "RandomAsync(F=all) equals LayerSync on the recurrent model: True" in out
    assert "executed RandomAsync F=8 immediate: test accuracy" in out
