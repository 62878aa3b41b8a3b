"""Durable state of the AppServer: embedded SQLite in WAL mode.

Tables: ``accounts`` (hashed secrets and grants), ``tokens`` (the token cache, one
row per :class:`~sim.customer.appserver.policy.TokenKey`), ``pending_revocations`` (the
revocation queue: tokens taken out of the cache whose upstream revoke has not
succeeded yet, with their retry schedule).

Every write commits before it returns, so whatever the service acknowledges to a
client survives ``kill -9`` (WAL + ``synchronous=NORMAL`` is durable against a process
crash; only an OS crash can lose the last commits).  An account change is one
transaction (:meth:`Store.commit`): the new accounts, the cache rows they no longer
allow, and the revocations that must follow, together or not at all
(docs/appserver.md "Account changes").  The service keeps its working set in memory
and reads the store only at start-up.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from sim.shared.privatefiles import private_sqlite_file

from .policy import Account, CachedToken, Grant, TokenKey
from .revocation import Revocation

__all__ = ["Store"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    client_id   TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    grants      TEXT NOT NULL,
    enabled     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    key        TEXT PRIMARY KEY,
    account    TEXT NOT NULL,
    token      TEXT NOT NULL,
    expire_ms  INTEGER NOT NULL,
    issued_ms  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tokens_account ON tokens(account);
CREATE TABLE IF NOT EXISTS pending_revocations (
    token         TEXT PRIMARY KEY,
    account       TEXT NOT NULL,
    expire_ms     INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before_ms INTEGER NOT NULL DEFAULT 0
);
"""
#: Columns added to ``pending_revocations`` since the first schema (a store written by
#: an older AppServer is upgraded in place; its rows are due at once).
_PENDING_ADDED = {
    "attempts": "INTEGER NOT NULL DEFAULT 0",
    "not_before_ms": "INTEGER NOT NULL DEFAULT 0",
}


def _grants_text(grants: Iterable[Grant]) -> str:
    return json.dumps([g.to_json() for g in grants], separators=(",", ":"))


def _grants_of(text: str) -> tuple[Grant, ...]:
    return tuple(
        Grant(tuple(g["resources"]), frozenset(g["actions"].split(","))) for g in json.loads(text)
    )


class Store:
    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            # Secret hashes and live tokens: 0600 in a 0700 dir (and the -wal/-shm
            # files SQLite makes with the database file's mode).
            private_sqlite_file(path)
        # One connection, used only from the event loop's thread.
        self._db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._upgrade()

    def close(self) -> None:
        self._db.close()

    def journal_mode(self) -> str:
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    def _upgrade(self) -> None:
        have = {row[1] for row in self._db.execute("PRAGMA table_info(pending_revocations)")}
        for column, decl in _PENDING_ADDED.items():
            if column not in have:
                self._db.execute(f"ALTER TABLE pending_revocations ADD COLUMN {column} {decl}")

    # -- reads (start-up) ---------------------------------------------------------------

    def load_accounts(self) -> list[Account]:
        rows = self._db.execute("SELECT client_id, secret_hash, grants, enabled FROM accounts")
        return [Account(cid, h, _grants_of(g), bool(en)) for cid, h, g, en in rows]

    def load_tokens(self) -> list[CachedToken]:
        rows = self._db.execute("SELECT key, token, expire_ms, issued_ms FROM tokens")
        return [CachedToken(TokenKey.from_text(k), t, e, i) for k, t, e, i in rows]

    def load_pending(self) -> list[Revocation]:
        """The revocation queue in its order: due first, then as queued."""
        rows = self._db.execute(
            "SELECT token, account, expire_ms, attempts, not_before_ms FROM pending_revocations "
            "ORDER BY not_before_ms, rowid"
        )
        return [Revocation(t, a, e, n, nb) for t, a, e, n, nb in rows]

    # -- writes -------------------------------------------------------------------------

    def commit(
        self,
        *,
        accounts: Iterable[Account] = (),
        deleted: Iterable[str] = (),
        dropped: Iterable[CachedToken] = (),
        revoke: Iterable[Revocation] = (),
    ) -> None:
        """One transaction: upsert ``accounts``, delete the ``deleted`` ones, remove the
        ``dropped`` cache rows, queue ``revoke``.  A crash leaves all of it or none."""
        account_rows = [
            (a.client_id, a.secret_hash, _grants_text(a.grants), int(a.enabled)) for a in accounts
        ]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO accounts (client_id, secret_hash, grants, enabled) VALUES (?,?,?,?) "
                "ON CONFLICT(client_id) DO UPDATE SET secret_hash=excluded.secret_hash, "
                "grants=excluded.grants, enabled=excluded.enabled",
                account_rows,
            )
            self._db.executemany(
                "DELETE FROM accounts WHERE client_id = ?", [(cid,) for cid in deleted]
            )
            self._db.executemany(
                "DELETE FROM tokens WHERE key = ? AND token = ?",
                [(c.key.text(), c.token) for c in dropped],
            )
            self._db.executemany(
                "INSERT OR IGNORE INTO pending_revocations "
                "(token, account, expire_ms, attempts, not_before_ms) VALUES (?,?,?,?,?)",
                [(r.token, r.account, r.expire_ms, r.attempts, r.not_before_ms) for r in revoke],
            )

    def put_token(self, cached: CachedToken) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR REPLACE INTO tokens (key, account, token, expire_ms, issued_ms) "
                "VALUES (?,?,?,?,?)",
                (
                    cached.key.text(),
                    cached.key.account,
                    cached.token,
                    cached.expire_ms,
                    cached.issued_ms,
                ),
            )

    def settle(self, token: str) -> None:
        """A queued revocation is done (revoked, or nothing left to revoke)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM pending_revocations WHERE token = ?", (token,))

    def reschedule(self, revocation: Revocation) -> None:
        """Record a retry's attempt count and time (it survives a restart)."""
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "UPDATE pending_revocations SET attempts = ?, not_before_ms = ? WHERE token = ?",
                (revocation.attempts, revocation.not_before_ms, revocation.token),
            )
