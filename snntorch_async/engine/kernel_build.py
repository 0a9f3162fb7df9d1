"""How the native kernel is built: one definition for the wheel build and for compiling on first use.

``setup.py`` builds ``_native/async_kernel.c`` into the package as :data:`LIBRARY` (a plain shared
library, loaded with ``ctypes`` by :mod:`.native`, never imported); :mod:`.native` compiles the
same file with the same :data:`CFLAGS` into a cache when no usable prebuilt library is there.
Standard library only: ``setup.py`` loads this file by path, before torch or the package exist.

Both builds define :data:`DIGEST_MACRO` as :func:`source_digest` of the source, which the kernel
returns from ``sa_source_digest()``; the loader uses a prebuilt library only when that digest is
the digest of the source beside it (an editable install whose C file was edited since the build
is recompiled, not run stale).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["SOURCE", "SOURCE_IN_REPO", "LIBRARY", "EXTENSION", "CFLAGS", "LDFLAGS", "DIGEST_MACRO"]

#: The kernel's C source (shipped in the wheel too, as package data).
SOURCE = Path(__file__).with_name("_native") / "async_kernel.c"
#: The same file relative to the repository root (for ``setuptools.Extension``).
SOURCE_IN_REPO = "snntorch_async/engine/_native/async_kernel.c"
#: The prebuilt library's file name, beside ``native.py``. No Python tag: it uses no Python C-API.
LIBRARY = "_async_kernel.so"
#: The extension's dotted name (``setuptools.Extension``); its file is :data:`LIBRARY`.
EXTENSION = "snntorch_async.engine._async_kernel"
#: Compiler flags beyond a shared-library build: no fused multiply-add and no reassociation, so
#: every product and sum rounds as in the torch code (tested bit for bit).
CFLAGS = ("-O3", "-ffp-contract=off", "-fno-fast-math", "-pthread")
#: Linker flags (after the source: the kernel runs samples on POSIX threads, and uses libm).
LDFLAGS = ("-pthread", "-lm")
#: The C macro that carries :func:`source_digest` into the library.
DIGEST_MACRO = "SA_SOURCE_DIGEST"


def source_digest(source: Path = SOURCE) -> str:
    """The first 16 hex digits of ``sha256(source bytes)``: which text a library was built from."""
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()[:16]
