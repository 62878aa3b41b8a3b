"""Private files and directories (sim.shared.privatefiles): 0700/0600 whatever the umask,
looser ones tightened with a log line, atomic writes."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.shared.privatefiles import (
    private_dir,
    private_file,
    private_sqlite_file,
    write_private_file,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(params=[0o000, 0o022, 0o277])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Permissive umasks, and one that takes bits the owner needs."""
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_new_dirs_and_their_missing_parents_are_0700(tmp_path: Path, umask: int) -> None:
    (tmp_path / "kept").mkdir(mode=0o755)
    (tmp_path / "kept").chmod(0o755)
    leaf = private_dir(tmp_path / "kept" / "a" / "b")
    assert [mode(p) for p in (leaf, leaf.parent)] == [0o700, 0o700]
    assert mode(tmp_path / "kept") == 0o755  # an existing parent is not ours to change


def test_files_are_0600_and_sqlite_sidecars_of_an_older_run_are_tightened(
    tmp_path: Path, umask: int, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    (data / "db-wal").touch()
    (data / "db-wal").chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="sim.shared.privatefiles"):
        db = private_sqlite_file(data / "db")
    assert (mode(data), mode(db), mode(data / "db-wal")) == (0o700, 0o600, 0o600)
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        f"{data} was mode 0755 (readable by others); now 0700",
        f"{data / 'db-wal'} was mode 0644 (readable by others); now 0600",
    ]
    caplog.clear()
    private_file(db)  # already private: nothing to say
    assert not caplog.records


def test_an_empty_loose_dir_is_tightened_with_an_info_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh").chmod(0o755)
    with caplog.at_level(logging.INFO, logger="sim.shared.privatefiles"):
        private_dir(tmp_path / "fresh")
    assert mode(tmp_path / "fresh") == 0o700
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, f"{tmp_path / 'fresh'} was mode 0755 (readable by others); now 0700")
    ]


def test_atomic_private_write(tmp_path: Path, umask: int) -> None:
    path = tmp_path / "store" / "t.json"
    for i in range(3):
        write_private_file(path, f"v{i}".encode(), fsync=i == 0)
    assert path.read_bytes() == b"v2"
    assert (mode(path), mode(path.parent)) == (0o600, 0o700)
    assert [p.name for p in path.parent.iterdir()] == ["t.json"]  # no temporary left
