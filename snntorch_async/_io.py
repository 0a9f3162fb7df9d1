"""Atomic file writes: the one helper every writer of both packages goes through.

A file is written to a temporary file beside its destination (same folder, same suffix, so
writers that add a suffix such as ``numpy.savez`` keep the name), flushed to disk, and moved into
place with ``os.replace``. On any failure (full disk, Ctrl-C, a bug in the writer) the temporary
file is removed and the destination is left as it was: never a half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from typing import Iterator

from .errors import WriteError

__all__ = ["atomic_path", "atomic_write_text"]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, what: str = "file") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically.

    Args:
        path: The destination.
        what: What is written, for the error message (e.g. ``"checkpoint"``).

    Yields:
        A path beside ``path`` that the caller writes completely (any writer: ``torch.save``,
        ``numpy.savez``, ``h5py.File``...).

    Raises:
        WriteError: The destination cannot be written (the ``OSError`` of the writer, with the
            path and the fix); the temporary file is gone and ``path`` is unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}-{secrets.token_hex(3)}{path.suffix}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise _write_error(exc, path, what) from None
        raise


def _write_error(exc: OSError, path: Path, what: str) -> WriteError:
    reason = exc.strerror or str(exc)
    if not path.parent.is_dir():
        fix = f"create the folder {path.parent} first, or choose another path"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some disk space, or write to another disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "choose a folder you can write to"
    else:
        fix = "choose another path"
    return WriteError(f"Cannot write the {what} {path}: {reason}. Fix: {fix}. Nothing was written.")


def atomic_write_text(path: str | os.PathLike, text: str, *, what: str = "file") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, what=what) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
