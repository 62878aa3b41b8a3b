"""SQLite storage of the AuthServer (SPEC §3c: issued and revoked state persists).

One file, ``authserver.sqlite3`` under the data dir, in WAL mode: accounts and their
instances' parent topics, token signing keys, issued tokens, revocations and the feed
of events.  Calls are synchronous
and short (one indexed write per request); the TTL engine
(:mod:`mock_authserver.ttl`) is the only writer, through the :class:`Repository`
protocol it declares, so the engine itself stays free of I/O.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim.shared.privatefiles import private_sqlite_file
from sim.shared.protocol.tokens import TokenClaims

from .config import AccountSpec

__all__ = ["DB_FILE", "GroupCommit", "SqliteStore"]

DB_FILE = "authserver.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS accounts (
    access_key_id TEXT PRIMARY KEY, secret TEXT NOT NULL,
    instances TEXT NOT NULL, enabled INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS parent_topics (
    instance_id TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (instance_id, name));
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY, key BLOB NOT NULL, created_ms INTEGER NOT NULL,
    current INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY, access_key_id TEXT NOT NULL, instance_id TEXT NOT NULL,
    actions TEXT NOT NULL, resources TEXT NOT NULL,
    expire_ms INTEGER NOT NULL, issued_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_expire ON tokens (expire_ms);
CREATE TABLE IF NOT EXISTS revocations (
    token_id TEXT PRIMARY KEY, revoked_ms INTEGER NOT NULL, expire_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, data TEXT NOT NULL);
"""


class SqliteStore:
    """The engine's repository, on SQLite.  ``path=None`` keeps it in memory."""

    def __init__(self, path: Path | None):
        self.path = path
        if path is not None:
            # Secrets, the signing key and live tokens: 0600 in a 0700 dir (and the
            # -wal/-shm files SQLite makes with the database file's mode).
            private_sqlite_file(path)
        self._db = sqlite3.connect(
            str(path) if path is not None else ":memory:",
            isolation_level=None,  # autocommit; explicit BEGIN where several writes go together
            check_same_thread=False,
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: durable across process crashes, one fsync per checkpoint.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._pending: list[tuple[str, str, str, str, str, int, int]] = []

    @classmethod
    def in_dir(cls, data_dir: Path | None) -> SqliteStore:
        return cls(None if data_dir is None else Path(data_dir) / DB_FILE)

    def close(self) -> None:
        self.flush()
        self._db.close()

    # -- meta ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT v FROM meta WHERE k = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))

    # -- accounts -------------------------------------------------------------------------

    def load_accounts(self) -> list[AccountSpec]:
        rows = self._db.execute(
            "SELECT access_key_id, secret, instances, enabled FROM accounts ORDER BY 1"
        ).fetchall()
        return [AccountSpec(r[0], r[1], tuple(json.loads(r[2])), bool(r[3])) for r in rows]

    def put_account(self, account: AccountSpec) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?)",
            (
                account.access_key_id,
                account.secret,
                json.dumps(list(account.instances)),
                int(account.enabled),
            ),
        )

    def delete_account(self, access_key_id: str) -> None:
        self._db.execute("DELETE FROM accounts WHERE access_key_id = ?", (access_key_id,))

    # -- parent topics (SPEC §4a) ------------------------------------------------------------

    def load_parent_topics(self) -> list[tuple[str, str]]:
        rows = self._db.execute(
            "SELECT instance_id, name FROM parent_topics ORDER BY 1, 2"
        ).fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    def put_parent_topic(self, instance_id: str, name: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO parent_topics VALUES (?, ?)", (instance_id, name))

    def delete_parent_topic(self, instance_id: str, name: str) -> None:
        self._db.execute(
            "DELETE FROM parent_topics WHERE instance_id = ? AND name = ?", (instance_id, name)
        )

    # -- signing keys ---------------------------------------------------------------------

    def load_keys(self) -> tuple[dict[str, bytes], str | None]:
        rows = self._db.execute(
            "SELECT kid, key, current FROM signing_keys ORDER BY created_ms"
        ).fetchall()
        current = next((r[0] for r in rows if r[2]), None)
        return {r[0]: bytes(r[1]) for r in rows}, current

    def add_key(self, kid: str, key: bytes, created_ms: int) -> None:
        with self._tx():
            self._db.execute("UPDATE signing_keys SET current = 0")
            self._db.execute("INSERT INTO signing_keys VALUES (?, ?, ?, 1)", (kid, key, created_ms))

    # -- tokens ---------------------------------------------------------------------------

    def save_token(self, claims: TokenClaims) -> None:
        """Queue the row; :meth:`flush` writes every queued row in one transaction.

        The shell flushes (through :class:`GroupCommit`) before it answers the apply, so
        an issued token is on disk before its holder sees it, and concurrent applies
        share one commit instead of paying one each (the hot spot of the benchmark).
        """
        self._pending.append(
            (
                claims.token_id,
                claims.access_key_id,
                claims.instance_id,
                ",".join(sorted(claims.actions)),
                json.dumps(list(claims.resources)),
                claims.expire_ms,
                claims.issued_ms,
            )
        )

    def flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        with self._tx():
            self._db.executemany("INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def get_token(self, token_id: str) -> TokenClaims | None:
        self.flush()
        row = self._db.execute(
            "SELECT token_id, access_key_id, instance_id, actions, resources, expire_ms,"
            " issued_ms FROM tokens WHERE token_id = ?",
            (token_id,),
        ).fetchone()
        if row is None:
            return None
        return TokenClaims(
            token_id=row[0],
            access_key_id=row[1],
            instance_id=row[2],
            actions=frozenset(a for a in row[3].split(",") if a),
            resources=tuple(json.loads(row[4])),
            expire_ms=row[5],
            issued_ms=row[6],
        )

    def count_tokens(self) -> int:
        self.flush()
        return int(self._db.execute("SELECT count(*) FROM tokens").fetchone()[0])

    # -- revocations and the feed -----------------------------------------------------------

    def save_revocation(
        self, token_id: str, revoked_ms: int, expire_ms: int, event: dict[str, Any]
    ) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO revocations VALUES (?, ?, ?)",
                (token_id, revoked_ms, expire_ms),
            )
            self._append(event)

    def load_revocations(self, after_ms: int) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT token_id, expire_ms FROM revocations WHERE expire_ms > ?", (after_ms,)
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    def revoked_at(self, token_id: str) -> int | None:
        """When ``token_id`` was revoked (ms), ``None`` if it was not."""
        row = self._db.execute(
            "SELECT revoked_ms FROM revocations WHERE token_id = ?", (token_id,)
        ).fetchone()
        return int(row[0]) if row is not None else None

    def append_event(self, event: dict[str, Any]) -> None:
        self._append(event)

    def _append(self, event: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT INTO events (seq, data) VALUES (?, ?)",
            (event["seq"], json.dumps(event, separators=(",", ":"))),
        )

    def load_events(self, keep: int) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT data FROM events ORDER BY seq DESC LIMIT ?", (keep,)
        ).fetchall()
        return [json.loads(r[0]) for r in reversed(rows)]

    def last_seq(self) -> int:
        row = self._db.execute("SELECT max(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def prune(self, before_ms: int, keep_events: int) -> None:
        """Forget tokens and revocations that expired before ``before_ms``; trim the feed."""
        self.flush()
        with self._tx():
            self._db.execute("DELETE FROM tokens WHERE expire_ms < ?", (before_ms,))
            self._db.execute("DELETE FROM revocations WHERE expire_ms < ?", (before_ms,))
            self._db.execute(
                "DELETE FROM events WHERE seq <= (SELECT max(seq) FROM events) - ?",
                (keep_events,),
            )

    def _tx(self) -> _Tx:
        return _Tx(self._db)


class GroupCommit:
    """One :meth:`SqliteStore.flush` per event-loop turn, awaited by every apply of it."""

    def __init__(self, flush: Callable[[], None]):
        self._flush = flush
        self._fut: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        if self._fut is None:
            loop = asyncio.get_running_loop()
            self._fut = loop.create_future()
            loop.call_soon(self._run)
        await asyncio.shield(self._fut)

    def _run(self) -> None:
        fut, self._fut = self._fut, None
        assert fut is not None
        try:
            self._flush()
        except Exception as exc:  # every waiter of this turn sees the failure
            fut.set_exception(exc)
        else:
            fut.set_result(None)


class _Tx:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
