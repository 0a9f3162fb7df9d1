"""The native forward-step loop of the asynchronous engine (optional, CPU inference only).

The asynchronous engine's inner loop (select, deliver, integrate, fire — once per forward step,
about one hundred times per time step at ``F = 1``) is bound by per-operation overhead when written
with torch tensors. For the common case — every spiking layer one ``nn.Linear`` feeding
``snn.Leaky`` neurons, float32 on the CPU, no gradient needed — a small C kernel
(``_native/async_kernel.c``, part of this package) runs that loop per sample instead. It computes
exactly what the torch code computes, bit for bit (tested in ``tests/test_native.py``).

The kernel is compiled on first use with the system C compiler (``$CC``, else ``cc``/``gcc``) into
a per-user cache (``$SNNTORCH_ASYNC_CACHE``, default ``~/.cache/snntorch_async``), in well under a
second. Without a compiler everything still works through the torch code, only slower; one warning
says so. Set ``SNNTORCH_ASYNC_NATIVE=0`` to switch the kernel off (or use :func:`use_native`).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path

SOURCE = Path(__file__).with_name("_native") / "async_kernel.c"
FLAGS = ["-O3", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math"]

_lib = None
_tried = False
_enabled: bool | None = None  # None: follow the environment variable


def _env_enabled() -> bool:
    value = os.environ.get("SNNTORCH_ASYNC_NATIVE", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def enabled() -> bool:
    """Whether the engine may use the native kernel (``use_native`` or the environment)."""
    return _env_enabled() if _enabled is None else _enabled


@contextmanager
def use_native(flag: bool):
    """Context manager: run the asynchronous engine with (``True``) or without the kernel.

    Example: compare both paths, or time the torch path::

        with snntorch_async.native.use_native(False):
            r = sa.simulate(net, x, scheduler=sa.RandomAsync(forward_group_size=1))
    """
    global _enabled
    old = _enabled
    _enabled = bool(flag)
    try:
        yield
    finally:
        _enabled = old


def _cache_dir() -> Path:
    env = os.environ.get("SNNTORCH_ASYNC_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "snntorch_async"


def _compiler() -> str | None:
    for c in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if c and shutil.which(c):
            return c
    return None


def _build() -> ctypes.CDLL:
    src = SOURCE.read_bytes()
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (looked for $CC, cc, gcc, clang)")
    tag = hashlib.sha256(src + " ".join([cc, *FLAGS, sys.platform,
                                         sysconfig.get_platform()]).encode()).hexdigest()[:16]
    out_dir = _cache_dir()
    lib_path = out_dir / f"async_kernel_{tag}.so"
    if not lib_path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
        os.close(fd)
        try:
            proc = subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE)],
                                  capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"{cc} failed: {proc.stderr.strip()[:2000]}")
            os.replace(tmp, lib_path)  # atomic: concurrent builders agree on the result
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lib = ctypes.CDLL(str(lib_path))
    fn = lib.sa_async_steps
    fn.restype = ctypes.c_int
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    fn.argtypes = (
        [i64] * 4 + [ptr] * 4 + [ctypes.POINTER(ptr)] * 2 + [ptr] * 17 + [i64] + [ptr] * 4
        + [i64] * 4
    )
    return lib


def library() -> ctypes.CDLL | None:
    """The compiled kernel, or ``None`` when it is switched off or cannot be built (warned once)."""
    global _lib, _tried
    if not enabled():
        return None
    if not _tried:
        _tried = True
        try:
            _lib = _build()
        except Exception as e:  # noqa: BLE001 - any failure means: use the torch path
            warnings.warn(
                f"snntorch_async: the native asynchronous kernel is unavailable ({e}); the "
                "asynchronous schedulers use the torch code instead (same results, slower at small "
                "forward_group_size). Install a C compiler (e.g. apt install gcc) to enable it, or "
                "set SNNTORCH_ASYNC_NATIVE=0 to silence this warning.",
                RuntimeWarning,
                stacklevel=3,
            )
            _lib = None
    return _lib


def available() -> bool:
    """Whether the native kernel is enabled and built (builds it on first call)."""
    return library() is not None
