"""Files that hold credentials: directories 0700, files 0600, whatever the umask.

The data dirs of the AuthServer and the AppServer hold AccessKey secrets, the token
signing key and live tokens; the SDK's token store holds tokens.  Everything here sets
the mode explicitly (a umask can only take bits away, and a process started with
``umask 0`` would otherwise make them world-readable), and tightens an existing
directory or file that is looser, saying so in a log line (docs/authserver.md and
docs/appserver.md "Security").

SQLite creates its ``-wal``, ``-shm`` and ``-journal`` files with the mode of the
database file, so :func:`private_sqlite_file` only has to create that one right (and
tighten sidecars left by an older run).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
from pathlib import Path

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "private_dir",
    "private_file",
    "private_sqlite_file",
    "write_private_file",
]

log = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def _tighten(path: Path, mode: int) -> None:
    st = os.stat(path)
    current = stat.S_IMODE(st.st_mode)
    if current & ~mode:
        os.chmod(path, mode)
        # An empty directory someone just made for us exposed nothing: say so quietly.
        exposed = not stat.S_ISDIR(st.st_mode) or any(path.iterdir())
        log.log(
            logging.WARNING if exposed else logging.INFO,
            "%s was mode %04o (readable by others); now %04o",
            path,
            current,
            mode,
        )


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` and its missing parents with mode 0700; tighten ``path`` itself
    if it exists with a looser mode.  Parents that exist are left alone."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d, PRIVATE_DIR_MODE)
            os.chmod(d, PRIVATE_DIR_MODE)  # the umask may have taken bits the owner needs
    _tighten(path, PRIVATE_DIR_MODE)
    return path


def private_file(path: str | os.PathLike[str]) -> Path:
    """Make sure ``path`` exists with mode 0600 (created empty if absent, its directory
    made private); tighten an existing looser one."""
    path = Path(path)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        _tighten(path, PRIVATE_FILE_MODE)
    else:
        try:
            os.fchmod(fd, PRIVATE_FILE_MODE)
        finally:
            os.close(fd)
    return path


def private_sqlite_file(path: str | os.PathLike[str]) -> Path:
    """Prepare a SQLite database path before ``sqlite3.connect``: private directory,
    database file 0600, and any journal/WAL/shared-memory file of an older run 0600."""
    path = private_file(path)
    for suffix in _SQLITE_SIDECARS:
        with contextlib.suppress(FileNotFoundError):
            _tighten(path.with_name(path.name + suffix), PRIVATE_FILE_MODE)
    return path


def write_private_file(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Replace ``path`` with ``data`` atomically, mode 0600, in a private directory.

    A temporary file in the same directory, ``fsync``, then ``os.replace`` over the old
    copy, then ``fsync`` of the directory: a crash leaves the old or the new content,
    never half of one.  Blocking I/O (async callers use ``asyncio.to_thread``).
    """
    path = Path(path)
    directory = private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), PRIVATE_FILE_MODE)
            fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
