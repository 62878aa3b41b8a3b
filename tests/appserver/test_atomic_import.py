"""Account changes are atomic (docs/appserver.md "Account changes"): the new grants and
the enforcement intent commit in one SQLite transaction, no request is served a token
the new grants do not allow from then on, revocations drain in the background, and a
restarted AppServer re-checks its cache and resumes the queue -- even after ``kill -9``
in the middle of an import."""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mock_authserver.config import AuthServerConfig
from mock_authserver.runner import AuthServerHandle, run_authserver
from sim.customer.appserver.runner import AppServerHandle
from sim.harness.admin import AuthServerAdmin
from sim.shared.clock import Clock, ManualClock, SystemClock

from .stack import stack
from .test_process import start
from .wire import (
    KEEP,
    LOSE,
    NARROW,
    WIDE,
    ask,
    bulk,
    eventually,
    fault,
    revokes_seen,
    token_status,
    total,
)

K = 4  # accounts disabled, and as many narrowed, per import


@contextlib.asynccontextmanager
async def parts(
    clock: Clock, tmp_path: Path, **app: Any
) -> AsyncIterator[tuple[AuthServerHandle, AppServerHandle, aiohttp.ClientSession]]:
    """AuthServer and AppServer (``app``: AppServerConfig fields): the one stack."""
    async with stack(clock, tmp_path, **app) as s:
        yield s.auth, s.app, s.http


def the_change() -> list[dict[str, Any]]:
    """Disable d0..d3 and narrow n0..n3, interleaved (d0 first: its revoke is the one
    that hangs)."""
    change: list[dict[str, Any]] = []
    for i in range(K):
        change.append({"client_id": f"d{i}", "enabled": False})
        change.append({"client_id": f"n{i}", "grants": NARROW})
    return change


async def issue_old_tokens(http: aiohttp.ClientSession, url: str) -> dict[tuple[str, str], str]:
    ids = [f"d{i}" for i in range(K)] + [f"n{i}" for i in range(K)]
    await bulk(http, url, [{"client_id": c, "secret": "pw", "grants": WIDE} for c in ids])
    old = {}
    for c in ids:
        for name, what in (("keep", KEEP), ("lose", LOSE)):
            status, body = await ask(http, url, c, what)
            assert status == 200, body
            old[c, name] = body["token"]
    return old


async def assert_no_old_token(
    http: aiohttp.ClientSession, url: str, old: dict[tuple[str, str], str]
) -> None:
    """Disabled: nothing.  Narrowed: the token the new grants forbid is refused, the one
    they still allow is the same cached token (it was not dropped for nothing)."""
    for i in range(K):
        for what in (KEEP, LOSE):
            status, body = await ask(http, url, f"d{i}", what)
            assert (status, body.get("error")) == (403, "account_disabled"), (f"d{i}", body)
        status, body = await ask(http, url, f"n{i}", LOSE)
        assert (status, body.get("error")) == (403, "forbidden"), (f"n{i}", body)
        status, body = await ask(http, url, f"n{i}", KEEP)
        assert status == 200 and body["token"] == old[f"n{i}", "keep"], body


@pytest.mark.parametrize("revoke_fault", ["hang", "503"])
async def test_no_old_token_once_the_import_is_committed(tmp_path: Path, revoke_fault: str) -> None:
    """The AuthServer's revoke hangs (or fails): the import still takes effect for every
    account at once, from the moment it is committed -- observed here as the moment the
    AuthServer sees the first revoke, which comes after the commit."""
    clock = ManualClock()
    async with parts(clock, tmp_path, upstream_timeout_s=1) as (auth, app, http):
        old = await issue_old_tokens(http, app.url)
        if revoke_fault == "hang":
            await fault(http, auth.url, operation="revoke", kind="hang")
        else:
            await fault(http, auth.url, operation="revoke", kind="status", status=503)
        importing = asyncio.create_task(bulk(http, app.url, the_change()))
        try:

            async def first_revoke_seen() -> bool:
                return await revokes_seen(http, auth.url) >= 1

            await eventually(first_revoke_seen)
            await assert_no_old_token(http, app.url, old)
            answer = await asyncio.wait_for(importing, 30)
        finally:
            importing.cancel()
        assert answer["imported"] == 2 * K and answer["updated"] == 2 * K
        # Every token of a disabled account, and the narrowed-out ones: queued, not lost.
        assert answer["queued"] == 3 * K
        await assert_no_old_token(http, app.url, old)
        assert await total(http, app.url, "appserver_pending_revocations") >= 1
        # The AuthServer recovers: the queue drains (jittered backoff, virtual time).
        await AuthServerAdmin(auth.url, http, 30).clear_faults()
        revoked = [t for (c, name), t in old.items() if c.startswith("d") or name == "lose"]

        drain = app.service.revocations

        async def all_revoked() -> bool:
            # Time moves only to the drain's next event, once it has nothing in flight.
            parked = drain.parked_until
            if parked is not None and parked < math.inf and drain.pending.in_flight == 0:
                clock.set(parked)
            states = [await token_status(http, auth.url, t) for t in revoked]
            return states == ["revoked"] * len(revoked)

        await eventually(all_revoked, within=60)
        for i in range(K):
            assert await token_status(http, auth.url, old[f"n{i}", "keep"]) == "valid"
        assert await total(http, app.url, "appserver_pending_revocations") == 0


async def test_kill_9_mid_import_then_restart(tmp_path: Path) -> None:
    """A real AppServer process is killed (SIGKILL) while the import's first upstream
    revoke hangs.  Restarted on the same data dir, it serves no narrowed-out token, and
    every token the import took away ends up revoked at the AuthServer."""
    async with (
        run_authserver(
            AuthServerConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "auth"),
            clock=SystemClock(),
        ) as auth,
        aiohttp.ClientSession() as http,
    ):
        data_dir = tmp_path / "app"
        proc, url = await start(auth.url, data_dir)
        importing: asyncio.Task[dict[str, Any]] | None = None
        try:
            old = await issue_old_tokens(http, url)
            await fault(http, auth.url, operation="revoke", kind="hang", times=1)
            importing = asyncio.create_task(bulk(http, url, the_change()))

            async def hanging() -> bool:
                return await revokes_seen(http, auth.url, code="hang") >= 1

            await eventually(hanging)
        finally:
            proc.kill()  # SIGKILL: no shutdown code runs
            await proc.wait()
            if importing is not None:
                importing.cancel()
                with contextlib.suppress(BaseException):
                    await importing
        assert proc.returncode == -signal.SIGKILL

        proc, url = await start(auth.url, data_dir)
        try:
            await assert_no_old_token(http, url, old)
            taken = [t for (c, name), t in old.items() if c.startswith("d") or name == "lose"]

            async def all_revoked() -> bool:
                states = [await token_status(http, auth.url, t) for t in taken]
                return states == ["revoked"] * len(taken)

            await eventually(all_revoked, within=30)
            for i in range(K):
                assert await token_status(http, auth.url, old[f"n{i}", "keep"]) == "valid"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
