"""Durable state of the AppServer: embedded SQLite in WAL mode.

Tables: ``accounts`` (hashed secrets and grants), ``tokens`` (the token cache, one
row per :class:`~sim.customer.appserver.policy.TokenKey`), ``pending_revocations`` (tokens
dropped from the cache whose upstream revoke has not succeeded yet).

Every write commits before it returns, so whatever the service acknowledges to a
client survives ``kill -9`` (WAL + ``synchronous=NORMAL`` is durable against a process
crash; only an OS crash can lose the last commits).  The service keeps its working
set in memory and reads the store only at start-up.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from .policy import Account, CachedToken, Grant, TokenKey

__all__ = ["PendingRevocation", "Store"]

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
    token      TEXT PRIMARY KEY,
    account    TEXT NOT NULL,
    expire_ms  INTEGER NOT NULL
);
"""

PendingRevocation = tuple[str, str, int]  # token, account, expire_ms


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
            path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, used only from the event loop's thread.
        self._db = sqlite3.connect(":memory:" if path is None else str(path), isolation_level=None)
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def journal_mode(self) -> str:
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    # -- accounts ---------------------------------------------------------------------

    def load_accounts(self) -> list[Account]:
        rows = self._db.execute("SELECT client_id, secret_hash, grants, enabled FROM accounts")
        return [Account(cid, h, _grants_of(g), bool(en)) for cid, h, g, en in rows]

    def put_accounts(self, accounts: Iterable[Account]) -> None:
        rows = [
            (a.client_id, a.secret_hash, _grants_text(a.grants), int(a.enabled)) for a in accounts
        ]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO accounts (client_id, secret_hash, grants, enabled) VALUES (?,?,?,?) "
                "ON CONFLICT(client_id) DO UPDATE SET secret_hash=excluded.secret_hash, "
                "grants=excluded.grants, enabled=excluded.enabled",
                rows,
            )

    def delete_account(self, client_id: str) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM accounts WHERE client_id = ?", (client_id,))

    # -- tokens --------------------------------------------------------------------------

    def load_tokens(self) -> list[CachedToken]:
        rows = self._db.execute("SELECT key, token, expire_ms, issued_ms FROM tokens")
        return [CachedToken(TokenKey.from_text(k), t, e, i) for k, t, e, i in rows]

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

    def drop_tokens(self, dropped: Iterable[CachedToken], *, revoke: bool, now_ms: int) -> None:
        """Remove tokens from the cache; with ``revoke``, queue the still-valid ones for
        upstream revocation in the same transaction (so a crash cannot forget them)."""
        dropped = list(dropped)
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "DELETE FROM tokens WHERE key = ?", [(c.key.text(),) for c in dropped]
            )
            if revoke:
                self._db.executemany(
                    "INSERT OR IGNORE INTO pending_revocations (token, account, expire_ms) "
                    "VALUES (?,?,?)",
                    [
                        (c.token, c.key.account, c.expire_ms)
                        for c in dropped
                        if c.expire_ms > now_ms
                    ],
                )

    # -- pending revocations ------------------------------------------------------------

    def add_pending(self, token: str, account: str, expire_ms: int) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT OR IGNORE INTO pending_revocations (token, account, expire_ms) "
                "VALUES (?,?,?)",
                (token, account, expire_ms),
            )

    def load_pending(self) -> list[PendingRevocation]:
        rows = self._db.execute("SELECT token, account, expire_ms FROM pending_revocations")
        return [(t, a, e) for t, a, e in rows]

    def delete_pending(self, tokens: Iterable[str]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "DELETE FROM pending_revocations WHERE token = ?", [(t,) for t in tokens]
            )
