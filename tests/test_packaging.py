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
