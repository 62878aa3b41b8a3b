"""Both servers keep their data private whatever the umask: directories 0700, files 0600
(SQLite's -wal/-shm included); a looser data dir of an older run is tightened and the
log says so (docs/appserver.md, docs/authserver.md "Security")."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.shared.clock import ManualClock

from .stack import stack


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(root: Path) -> dict[str, int]:
    """Every directory and file under ``root`` (itself included) and its mode."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return out


#: Each part's data dir in the stack's one data dir (tests/appserver/stack.py).
PARTS = (("stack/authserver", "authserver.sqlite3"), ("stack/appserver", "appserver.sqlite3"))


async def _use_both(tmp_path: Path) -> dict[str, dict[str, int]]:
    """Run both servers, make each write, and return the modes under each data dir
    while they run (SQLite removes its -wal and -shm files at a clean close)."""
    async with stack(ManualClock(1_800_000_000.0), tmp_path) as s:
        await s.put_account()
        status, body, _ = await s.ask(["fleet/a"])
        assert status == 200, body
        await s.admin.appserver.delete_account("c1")  # revokes upstream: the AuthServer writes
        await s.handle.idle()  # ... once the revocation queue has sent it
        return {part: modes(tmp_path / part) for part, _ in PARTS}


def assert_private(root: Path, found: dict[str, int]) -> None:
    loose = {p: oct(m) for p, m in found.items() if m != (0o700 if (root / p).is_dir() else 0o600)}
    assert not loose, f"readable by others under {root}: {loose}"


async def test_data_dirs_and_files_are_private_with_a_permissive_umask(tmp_path: Path) -> None:
    with umask(0o000):  # the most permissive: nothing is taken away
        running = await _use_both(tmp_path)
    for part, db in PARTS:
        assert {db, f"{db}-wal", f"{db}-shm"} <= set(running[part]), running[part]
        assert_private(tmp_path / part, running[part])
        assert_private(tmp_path / part, modes(tmp_path / part))


async def test_a_looser_data_dir_of_an_older_run_is_tightened_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with umask(0o000):
        await _use_both(tmp_path)
        for part, db in PARTS:
            (tmp_path / part).chmod(0o755)
            (tmp_path / part / db).chmod(0o644)
            (tmp_path / part / f"{db}-wal").touch(0o666)  # left by a crash of an older run
        with caplog.at_level(logging.WARNING, logger="sim.shared.privatefiles"):
            running = await _use_both(tmp_path)
    said = [r.getMessage() for r in caplog.records]
    for part, db in PARTS:
        assert_private(tmp_path / part, running[part])
        assert any(m.startswith(f"{tmp_path / part} was mode 0755") for m in said), said
        assert any(m.startswith(f"{tmp_path / part / db} was mode 0644") for m in said), said
        assert any(f"{db}-wal was mode 0666" in m for m in said), said
