"""SQLite store: WAL, round trips, and durability across reopen."""

from __future__ import annotations

from pathlib import Path

from sim.customer.appserver.policy import Account, CachedToken, Grant, TokenKey
from sim.customer.appserver.store import Store


def key(account: str = "a", resources: tuple[str, ...] = ("t/#",)) -> TokenKey:
    return TokenKey(account, "inst", "R", resources)


def test_wal_mode_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "d" / "db.sqlite3"
    store = Store(path)
    assert store.journal_mode() == "wal"
    acct = Account("a", "scrypt$h", (Grant(("t/#",), frozenset({"R", "W"})),), enabled=False)
    store.put_accounts([acct])
    tok = CachedToken(key(), "tok", 2_000, 1_000)
    store.put_token(tok)
    store.close()  # a reopen sees every commit
    again = Store(path)
    assert again.load_accounts() == [acct]
    assert again.load_tokens() == [tok]


def test_put_token_replaces_the_row_of_its_key(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    store.put_token(CachedToken(key(), "old", 2_000, 1_000))
    store.put_token(CachedToken(key(), "new", 3_000, 1_500))
    store.put_token(CachedToken(key("b"), "other", 3_000, 1_500))
    assert sorted(t.token for t in store.load_tokens()) == ["new", "other"]


def test_drop_tokens_queues_live_ones_for_revocation(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    live = CachedToken(key(), "live", 5_000, 1_000)
    dead = CachedToken(key(resources=("x",)), "dead", 2_000, 1_000)
    store.put_token(live)
    store.put_token(dead)
    store.drop_tokens([live, dead], revoke=True, now_ms=3_000)
    assert store.load_tokens() == []
    assert store.load_pending() == [("live", "a", 5_000)]
    store.delete_pending(["live"])
    assert store.load_pending() == []


def test_delete_account(tmp_path: Path) -> None:
    store = Store(None)  # in memory
    store.put_accounts([Account("a", "h", ()), Account("b", "h", ())])
    store.delete_account("a")
    assert [a.client_id for a in store.load_accounts()] == ["b"]
