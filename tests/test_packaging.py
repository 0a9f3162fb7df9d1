"""Packaging: version from the installed metadata, ``python -m snntorch_async``, console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

import snntorch_async

DIST = "snntorch-async"


def _installed_version() -> str:
    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        pytest.skip(f"the {DIST} distribution is not installed (pip install -e .)")


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd="/")


def test_version_comes_from_the_installed_metadata():
    assert snntorch_async.__version__ == _installed_version()
    assert snntorch_async.__version__ != "0.0.0+unknown"


def test_public_surface_is_exported():
    for name in (
        "simulate",
        "AsyncNetwork",
        "LayerSync",
        "Record",
        "SimulationResult",
        "read_model",
        "NetworkGraph",
        "InputError",
        "UnsupportedModuleError",
        "ModelStructureError",
        "__version__",
    ):
        assert name in snntorch_async.__all__ and hasattr(snntorch_async, name), name


def test_python_dash_m_help():
    res = _run([sys.executable, "-m", "snntorch_async", "--help"])
    assert res.returncode == 0, res.stderr
    assert "usage: snntorch-async" in res.stdout


def _console_script() -> Path | None:
    name = "snntorch-async.exe" if os.name == "nt" else "snntorch-async"
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        if (folder / name).exists():
            return folder / name
    found = shutil.which(name)
    return Path(found) if found else None


def test_console_script_help_and_version():
    version = _installed_version()
    script = _console_script()
    assert script is not None, "the snntorch-async console script is not installed"
    res = _run([str(script), "--help"])
    assert res.returncode == 0, res.stderr
    assert "usage: snntorch-async" in res.stdout
    res = _run([str(script), "--version"])
    assert res.returncode == 0, res.stderr
    assert version in res.stdout


def test_setup_builds_the_kernel_where_the_loader_looks(tmp_path, monkeypatch):
    """``setup.py``'s extension is the file ``native`` loads as its prebuilt library, and current.

    Built from a copy of the files it needs (so nothing is written into the checkout)."""
    setuptools = pytest.importorskip("setuptools")
    if int(setuptools.__version__.split(".")[0]) < 77:  # pyproject.toml's build requirement
        pytest.skip(f"setuptools {setuptools.__version__} here; setup.py needs >= 77")
    from snntorch_async.engine import kernel_build, native

    if native._compiler() is None:
        pytest.skip("no C compiler on this machine")
    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    for rel in (
        "setup.py",
        "pyproject.toml",
        "README.md",
        kernel_build.SOURCE_IN_REPO,
        "snntorch_async/engine/kernel_build.py",
    ):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, src / rel)
    cmd = [
        sys.executable,
        "setup.py",
        "-q",
        "build_ext",
        "--build-lib",
        "lib",
        "--build-temp",
        "tmp",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=src)
    assert res.returncode == 0, res.stderr
    built = src / "lib" / Path(kernel_build.SOURCE_IN_REPO).parent.parent / kernel_build.LIBRARY
    assert built.exists(), (sorted(p.name for p in src.rglob("*.so")), res.stderr[-2000:])
    assert native.PREBUILT.name == built.name and native.PREBUILT.parent.name == "engine"

    for name, value in (("_lib", None), ("_tried", False), ("_origin", None)):
        monkeypatch.setattr(native, name, value)
    monkeypatch.setattr(native, "PREBUILT", built)
    monkeypatch.setattr(native, "_compiler", lambda: None)  # only the built library can serve
    monkeypatch.setenv("SNNTORCH_ASYNC_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SNNTORCH_ASYNC_NATIVE", raising=False)
    origin = native.library_origin()
    assert origin.kind == "prebuilt" and origin.path == str(built), origin
