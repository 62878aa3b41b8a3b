"""SQLite store: WAL, round trips, and durability across reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sim.customer.appserver.policy import Account, CachedToken, Grant, TokenKey
from sim.customer.appserver.revocation import Revocation
from sim.customer.appserver.store import Store


def key(account: str = "a", resources: tuple[str, ...] = ("t/#",)) -> TokenKey:
    return TokenKey(account, "inst", "R", resources)


def test_wal_mode_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "d" / "db.sqlite3"
    store = Store(path)
    assert store.journal_mode() == "wal"
    acct = Account("a", "scrypt$h", (Grant(("t/#",), frozenset({"R", "W"})),), enabled=False)
    store.commit(accounts=[acct])
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


def test_commit_is_one_transaction(tmp_path: Path) -> None:
    """Accounts, dropped cache rows and queued revocations: all of it, or none."""
    store = Store(tmp_path / "db")
    old = CachedToken(key(), "old", 5_000, 1_000)
    store.put_token(old)
    store.commit(accounts=[Account("a", "h", ())])
    disabled = Account("a", "h", (), enabled=False)
    # A value SQLite cannot store fails the last statement of the transaction.
    unstorable = Revocation("y", "a", [1])  # type: ignore[arg-type]
    try:
        store.commit(
            accounts=[disabled], dropped=[old], revoke=[Revocation("old", "a", 5_000), unstorable]
        )
    except sqlite3.Error:
        pass
    else:
        raise AssertionError("the broken commit went through")
    assert store.load_accounts() == [Account("a", "h", ())]  # rolled back, all of it
    assert store.load_tokens() == [old] and store.load_pending() == []
    store.commit(accounts=[disabled], dropped=[old], revoke=[Revocation("old", "a", 5_000)])
    assert store.load_accounts() == [disabled]
    assert store.load_tokens() == []
    assert store.load_pending() == [Revocation("old", "a", 5_000)]


def test_revocation_queue_order_reschedule_and_settle(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = Store(path)
    store.commit(revoke=[Revocation("t1", "a", 9_000), Revocation("t2", "a", 9_000)])
    store.reschedule(Revocation("t1", "a", 9_000, attempts=2, not_before_ms=4_000))
    store.commit(revoke=[Revocation("t3", "b", 9_000), Revocation("t2", "a", 1)])  # t2: kept
    store.close()
    again = Store(path)
    assert again.load_pending() == [
        Revocation("t2", "a", 9_000),
        Revocation("t3", "b", 9_000),
        Revocation("t1", "a", 9_000, attempts=2, not_before_ms=4_000),
    ]
    again.settle("t2")
    assert [r.token for r in again.load_pending()] == ["t3", "t1"]


def test_a_store_of_the_first_schema_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE pending_revocations (token TEXT PRIMARY KEY, account TEXT NOT NULL, "
        "expire_ms INTEGER NOT NULL)"
    )
    db.execute("INSERT INTO pending_revocations VALUES ('t', 'a', 9000)")
    db.commit()
    db.close()
    assert Store(path).load_pending() == [Revocation("t", "a", 9_000)]


def test_delete_account(tmp_path: Path) -> None:
    store = Store(None)  # in memory
    store.commit(accounts=[Account("a", "h", ()), Account("b", "h", ())])
    store.commit(deleted=["a"])
    assert [a.client_id for a in store.load_accounts()] == ["b"]
