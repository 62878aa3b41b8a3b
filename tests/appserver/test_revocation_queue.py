"""The revocation queue against a real mock AuthServer, on the manual clock
(docs/appserver.md "Revocation queue"): never more revokes per window than the
provider's limit for the API in use (SPEC §3b), every one eventually sent, a throttled
revoke retried later -- also after a restart."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mock_authserver.config import AuthServerConfig
from mock_authserver.runner import AuthServerHandle, run_authserver
from sim.customer.appserver.runner import AppServerHandle
from sim.customer.appserver.upstream import LegacyTokenClient, OpenApiRevokeClient
from sim.shared.clock import ManualClock
from sim.shared.waiting import wait_until

from .stack import stack
from .wire import (
    WIDE,
    ask,
    bulk,
    eventually,
    fault,
    revokes_seen,
    token_status,
    total,
)


@contextlib.asynccontextmanager
async def authserver(
    clock: ManualClock, tmp_path: Path
) -> AsyncIterator[tuple[AuthServerHandle, aiohttp.ClientSession]]:
    """An AuthServer on its own: here only to have a URL where nobody listens."""
    async with (
        run_authserver(
            AuthServerConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "auth"), clock=clock
        ) as auth,
        aiohttp.ClientSession() as http,
    ):
        yield auth, http


async def tokens_of(
    http: aiohttp.ClientSession, app: AppServerHandle, accounts: list[str], per_account: int
) -> list[str]:
    await bulk(http, app.url, [{"client_id": c, "secret": "pw", "grants": WIDE} for c in accounts])
    tokens = []
    for c in accounts:
        for i in range(per_account):
            status, body = await ask(http, app.url, c, ([f"fleet/{i}"], "R"))
            assert status == 200, body
            tokens.append(body["token"])
    return tokens


async def sent_after(http: aiohttp.ClientSession, auth_url: str, expected: int) -> float:
    """Wait until the AuthServer saw ``expected`` revokes; return what it saw.  On the
    manual clock nothing more can go until time moves, so equality is exact."""

    async def seen() -> bool:
        return await revokes_seen(http, auth_url) >= expected

    await eventually(seen)
    return await revokes_seen(http, auth_url)


async def test_disabling_many_accounts_sends_at_most_the_limit_per_window(
    tmp_path: Path,
) -> None:
    """3 accounts x 4 tokens disabled at once: RevokeToken's 5 per second, never more;
    12 revoked after 3 windows."""
    clock = ManualClock()
    async with stack(clock, tmp_path, seed=5) as s:
        auth, http, app = s.auth, s.http, s.app
        accounts = ["a0", "a1", "a2"]
        tokens = await tokens_of(http, app, accounts, 4)
        answer = await bulk(http, app.url, [{"client_id": c, "enabled": False} for c in accounts])
        assert (answer["dropped"], answer["queued"]) == (12, 12)
        assert await sent_after(http, auth.url, 5) == 5  # the first window
        assert await total(http, app.url, "appserver_pending_revocations") == 7
        clock.advance(0.999)
        clock.advance(0.001)
        assert await sent_after(http, auth.url, 10) == 10
        clock.advance(1.0)
        assert await sent_after(http, auth.url, 12) == 12
        await wait_until(
            lambda: len(app.service.revocations) == 0,
            timeout=10,
            what="len(app.service.revocations) == 0",
        )
        assert await revokes_seen(http, auth.url, code="200") == 12
        assert [await token_status(http, auth.url, t) for t in tokens] == ["revoked"] * 12
        assert await total(http, app.url, "appserver_upstream_revokes_total", result="ok") == 12
        assert isinstance(app.service.revocations.revoker, OpenApiRevokeClient)


async def test_legacy_revoke_keeps_one_per_minute(tmp_path: Path) -> None:
    clock = ManualClock()
    async with stack(clock, tmp_path, seed=5, revoke_api="legacy") as s:
        auth, http, app = s.auth, s.http, s.app
        assert isinstance(app.service.revocations.revoker, LegacyTokenClient)
        t0 = clock.now()
        tokens = await tokens_of(http, app, ["a0"], 2)
        await bulk(http, app.url, [{"client_id": "a0", "enabled": False}])
        assert await sent_after(http, auth.url, 1) == 1
        drain = app.service.revocations
        clock.advance(59.9)
        await wait_until(
            lambda: drain.parked_until == t0 + 60 and drain.pending.in_flight == 0,
            timeout=10,
            what="drain.parked_until == t0 + 60 and drain.pending.in_flight == 0",
        )
        assert await revokes_seen(http, auth.url) == 1  # not before the minute is over
        clock.advance(0.1)
        assert await sent_after(http, auth.url, 2) == 2
        assert [await token_status(http, auth.url, t) for t in tokens] == ["revoked"] * 2


async def test_a_configured_limit_replaces_the_documented_one(tmp_path: Path) -> None:
    clock = ManualClock()
    async with stack(clock, tmp_path, seed=5, revoke_limit=2, revoke_window_s=10) as s:
        auth, http, app = s.auth, s.http, s.app
        await tokens_of(http, app, ["a0"], 5)
        await bulk(http, app.url, [{"client_id": "a0", "enabled": False}])
        assert await sent_after(http, auth.url, 2) == 2
        clock.advance(5)
        drain = app.service.revocations
        await wait_until(
            lambda: drain.parked_until is not None and drain.parked_until < math.inf,
            timeout=10,
            what="drain.parked_until is not None and drain.parked_until < math.inf",
        )
        assert await revokes_seen(http, auth.url) == 2
        clock.advance(5)
        assert await sent_after(http, auth.url, 4) == 4


@pytest.mark.parametrize(
    ("revoke_api", "throttling", "window_s"),
    [
        # SPEC §3b: the gateway's Throttling.User, HTTP 400; legacy: HTTP 429, code 429.
        ("openapi", {"code": "Throttling.User", "status": 400}, 1.0),
        ("legacy", {"code": 429}, 60.0),
    ],
)
async def test_a_throttled_revoke_is_retried_later_even_after_a_restart(
    tmp_path: Path, revoke_api: str, throttling: dict[str, Any], window_s: float
) -> None:
    clock = ManualClock()
    async with stack(clock, tmp_path, seed=5, revoke_api=revoke_api) as s:
        auth, http, app = s.auth, s.http, s.app
        [token] = await tokens_of(http, app, ["a0"], 1)
        await fault(http, auth.url, operation="revoke", kind="error", times=1, **throttling)
        t0 = clock.now()
        await bulk(http, app.url, [{"client_id": "a0", "enabled": False}])
        assert await sent_after(http, auth.url, 1) == 1

        async def throttled() -> bool:
            return (
                await total(http, app.url, "appserver_upstream_revokes_total", result="throttled")
                == 1
            )

        await eventually(throttled, within=5)
        drain = app.service.revocations
        await wait_until(
            lambda: drain.parked_until is not None and drain.parked_until < math.inf,
            timeout=10,
            what="drain.parked_until is not None and drain.parked_until < math.inf",
        )
        # Backed off by about one window of the limit (jittered: at least half of it),
        # and the schedule is in the store.
        [queued] = app.service.store.load_pending()
        retry_at = queued.not_before_ms / 1000
        assert queued.attempts == 1
        assert t0 + window_s / 2 <= retry_at <= t0 + window_s + 0.001
        assert drain.parked_until >= retry_at
        assert await total(http, app.url, "appserver_pending_revocations") == 1
        assert await token_status(http, auth.url, token) == "valid"  # not dropped either
        # The queue survives a restart, with its schedule.
        await s.handle.restart("appserver")  # same port, same data dir
        app = s.app
        drain = app.service.revocations
        await wait_until(
            lambda: drain.parked_until is not None and drain.parked_until < math.inf,
            timeout=10,
            what="drain.parked_until is not None and drain.parked_until < math.inf",
        )
        assert drain.parked_until == pytest.approx(retry_at, abs=0.001)
        assert await revokes_seen(http, auth.url) == 1
        clock.set(retry_at)
        assert await sent_after(http, auth.url, 2) == 2
        await wait_until(lambda: len(drain) == 0, timeout=10, what="len(drain) == 0")
        assert await token_status(http, auth.url, token) == "revoked"


async def test_revokes_go_to_the_openapi_url(tmp_path: Path) -> None:
    """``openapi_url`` is where RevokeToken goes (applies still go to the legacy API):
    pointed at a port nobody listens on, applies work and revokes fail to connect."""
    clock = ManualClock()
    async with authserver(clock, tmp_path / "dead") as (dead, _):
        dead_url = dead.url
    async with stack(clock, tmp_path, seed=5, openapi_url=dead_url) as s:
        auth, http, app = s.auth, s.http, s.app
        await tokens_of(http, app, ["a0"], 1)
        await bulk(http, app.url, [{"client_id": "a0", "enabled": False}])

        async def failed() -> bool:
            errors = await total(
                http, app.url, "appserver_upstream_errors_total", operation="revoke"
            )
            return errors == 1

        await eventually(failed)
        assert await total(http, app.url, "appserver_upstream_errors_total", reason="connect") == 1
        assert await revokes_seen(http, auth.url) == 0
