"""Token store: atomic, per client id, reuse only for the same permissions."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.customer.client.store import StoredToken, TokenStore
from sim.shared.protocol import TokenType


def _tok(expire_ms: int = 1_800_000_600_000, token: str = "tok") -> StoredToken:
    return StoredToken(
        token=token,
        type=TokenType.RW,
        expire_ms=expire_ms,
        instance_id="mqtt-dev",
        username="Token|dev-ak|mqtt-dev",
        password=f"RW|{token}",
        actions="R,W",
        resources=("a/+", "b/#"),
    )


def test_round_trip_and_mode_0600(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens")
    store.save("GID_g@@@d1", _tok())
    assert store.load("GID_g@@@d1") == _tok()
    mode = stat.S_IMODE(os.stat(store.path_for("GID_g@@@d1")).st_mode)
    assert mode == 0o600
    assert store.load("GID_g@@@other") is None


def test_overwrite_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    for i in range(5):
        store.save("GID_g@@@d1", _tok(token=f"t{i}"))
    assert store.load("GID_g@@@d1") == _tok(token="t4")
    assert [p.name for p in tmp_path.iterdir()] == ["GID_g@@@d1.json"]


def test_failed_write_keeps_the_old_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = TokenStore(tmp_path)
    store.save("GID_g@@@d1", _tok(token="old"))

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.save("GID_g@@@d1", _tok(token="new"))
    monkeypatch.undo()
    assert store.load("GID_g@@@d1") == _tok(token="old")
    assert len(list(tmp_path.iterdir())) == 1


def test_corrupt_or_foreign_files_are_ignored(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.path_for("GID_g@@@a").write_text("{not json")
    store.path_for("GID_g@@@b").write_text(json.dumps({"format": 99}))
    store.path_for("GID_g@@@c").write_text(json.dumps({**_tok().to_json(), "expire_ms": "x"}))
    assert store.load("GID_g@@@a") is None
    assert store.load("GID_g@@@b") is None
    assert store.load("GID_g@@@c") is None


def test_delete(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.save("GID_g@@@d1", _tok())
    store.delete("GID_g@@@d1")
    store.delete("GID_g@@@d1")
    assert store.load("GID_g@@@d1") is None


def test_matches_same_permissions_only() -> None:
    t = _tok()
    assert t.matches("R,W", ("b/#", "a/+"))
    assert not t.matches("R", ("a/+", "b/#"))
    assert not t.matches("R,W", ("a/+",))


@given(st.text(min_size=1, max_size=200))
def test_no_client_id_escapes_the_directory(client_id: str) -> None:
    store = TokenStore("/base/dir")
    path = store.path_for(client_id)
    assert path.parent == Path("/base/dir")
    assert "/" not in path.name and path.name not in (".json", "..json")
