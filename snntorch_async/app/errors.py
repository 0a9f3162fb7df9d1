"""The command line's own error: a user mistake reported as one line ``error: ...``, exit 2."""

from __future__ import annotations

__all__ = ["CliError"]


class CliError(Exception):
    """A user error the command line reports as ``error: <what, where, fix>`` (exit status 2)."""
