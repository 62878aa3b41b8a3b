"""Checks a command makes before it starts anything: a run that cannot write its report
or its data should say so in one line at once, not after minutes of work (exit 2,
:mod:`sim.shared.exits`)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sim.shared.exits import CannotRun

__all__ = ["check_output_file", "check_writable_dir"]


def check_writable_dir(path: str | os.PathLike[str], flag: str) -> Path:
    """Create ``path`` (0700, parents too) if needed and make sure a file can be written
    in it; :class:`CannotRun` names ``flag`` otherwise."""
    target = Path(path)
    try:
        target.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        raise CannotRun(f"{flag} {target}: cannot write there ({exc.strerror or exc})") from None
    return target


def check_output_file(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` can be written later: its directory exists and takes files, and it is no
    directory itself.  Nothing is created."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise CannotRun(f"{flag} {target}: is a directory")
    if not parent.is_dir():
        raise CannotRun(f"{flag} {target}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (
        target.exists() and not os.access(target, os.W_OK)
    ):
        raise CannotRun(f"{flag} {target}: not writable")
    return target
