"""The AppServer against a real mock AuthServer on a free port, both on one
ManualClock; faults injected through the AuthServer's admin API."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from sim.customer.appserver.runner import run_appserver
from sim.customer.appserver.upstream import LegacyTokenClient
from sim.shared.clock import ManualClock
from sim.shared.protocol import parse_token_password

from .stack import Stack, app_config, authserver, stack


async def test_token_is_ready_for_connect_and_reused(tmp_path: Path) -> None:
    clock = ManualClock()
    async with stack(clock, tmp_path) as s:
        await s.put_account()
        status, body, _ = await s.ask(["devices/d7/state", "fleet/x/+"])
        assert status == 200, body
        assert set(body) == {
            "token",
            "type",
            "expireTime",
            "instanceId",
            "username",
            "password",
            "stale",
        }
        assert body["type"] == "R" and body["stale"] is False
        assert body["instanceId"] == "mqtt-dev"
        assert body["username"] == "Token|dev-ak|mqtt-dev"
        assert parse_token_password(body["password"]) == {"R": body["token"]}
        assert body["expireTime"] == clock.now_ms() + 3_600_000
        # The AuthServer issued it with exactly those resources (sorted) and actions.
        query = s.query_client()
        await query.start()
        try:
            assert (await query.query(body["token"])).valid
        finally:
            await query.close()
        # Asking again, resources in another order: the cached token, no new apply.
        status, again, _ = await s.ask(["fleet/x/+", "devices/d7/state", "fleet/x/+"])
        assert status == 200 and again["token"] == body["token"]
        assert await s.applies() == 1
        text = await s.app_metrics()
        assert text.total("appserver_cache_hits_total") == 1
        assert text.total("appserver_token_requests_total", outcome="issued") == 1
        assert text.total("appserver_token_requests_total", outcome="cached") == 1
        # Once less than the refresh margin is left, a new token is applied for.
        clock.advance(3600 - 299)
        status, fresh, _ = await s.ask(["devices/d7/state", "fleet/x/+"])
        assert status == 200 and fresh["token"] != body["token"]
        assert await s.applies() == 2


async def test_single_flight_many_concurrent_asks_one_apply(tmp_path: Path) -> None:
    async with stack(ManualClock(), tmp_path) as s:
        await s.put_account()
        # Slow applies, so the asks certainly overlap.
        await s.fault(operation="apply", kind="latency", ms=200, jitter_ms=0)
        results = await asyncio.gather(*(s.ask(["devices/d1/cmd"], "R,W") for _ in range(100)))
        tokens = {body["token"] for status, body, _ in results if status == 200}
        assert [status for status, _, _ in results] == [200] * 100
        assert len(tokens) == 1
        assert await s.applies() == 1  # counted by the AuthServer itself
        text = await s.app_metrics()
        assert text.total("appserver_upstream_applies_total") == 1
        assert text.total("appserver_singleflight_joined_total") == 99


async def test_outage_with_and_without_cached_tokens(tmp_path: Path) -> None:
    clock = ManualClock()
    async with stack(clock, tmp_path, breaker_failures=100) as s:
        await s.put_account()
        _, cached, _ = await s.ask(["fleet/a"])
        clock.advance(3600 - 60)  # a refresh is due, the token still valid
        await s.fault(operation="*", kind="outage", seconds=600)
        status, body, _ = await s.ask(["fleet/a"])
        assert status == 200 and body["stale"] is True and body["token"] == cached["token"]
        # Nothing cached for this key: a clear 503 with a jittered Retry-After.
        status, body, resp = await s.ask(["fleet/b"])
        assert status == 503
        assert body["error"] == "unavailable" and "no valid token is cached" in body["message"]
        assert int(resp.headers["Retry-After"]) >= 5 and body["retryAfter"] >= 5
        text = await s.app_metrics()
        assert text.total("appserver_stale_served_total") == 1
        assert text.total("appserver_upstream_errors_total", operation="apply") == 2
        assert text.total("appserver_token_requests_total", outcome="stale") == 1
        assert text.total("appserver_token_requests_total", outcome="unavailable") == 1
        # Once the cached token expires, it is not served any more.
        clock.advance(61)
        status, _, _ = await s.ask(["fleet/a"])
        assert status == 503
        # The outage ends (virtual time): fresh tokens again.
        clock.advance(600)
        status, body, _ = await s.ask(["fleet/a"])
        assert status == 200 and body["stale"] is False and body["token"] != cached["token"]


async def test_breaker_opens_and_recovers(tmp_path: Path) -> None:
    clock = ManualClock()
    async with stack(
        clock, tmp_path, breaker_failures=3, breaker_open_s=30, breaker_jitter=0.0
    ) as s:
        await s.put_account()
        await s.fault(operation="apply", kind="status", status=503)
        for i in range(3):
            status, _, _ = await s.ask([f"fleet/{i}"])
            assert status == 503
        assert (await s.health())["breaker"] == "open"
        tried = await s.applies(code=None)
        assert tried == 3
        status, _, resp = await s.ask(["fleet/x"])
        assert status == 503 and int(resp.headers["Retry-After"]) >= 30
        assert await s.applies(code=None) == tried  # the dead AuthServer is left alone
        assert (await s.app_metrics()).total("appserver_breaker_state") == 2
        # The AuthServer is back; after the pause one probe goes through and closes it.
        await s.clear_faults()
        clock.advance(30)
        assert (await s.health())["breaker"] == "half_open"
        status, body, _ = await s.ask(["fleet/x"])
        assert status == 200 and body["stale"] is False
        assert (await s.health())["breaker"] == "closed"
        assert (await s.app_metrics()).total("appserver_breaker_state") == 0


async def test_failed_probe_reopens(tmp_path: Path) -> None:
    clock = ManualClock()
    async with stack(
        clock, tmp_path, breaker_failures=1, breaker_open_s=10, breaker_jitter=0.0
    ) as s:
        await s.put_account()
        await s.fault(operation="apply", kind="reset")
        assert (await s.ask(["fleet/1"]))[0] == 503
        clock.advance(10)
        assert (await s.ask(["fleet/1"]))[0] == 503  # the probe hit the reset
        assert (await s.health())["breaker"] == "open"
        assert await s.applies(code="reset") == 2


async def test_timeout_and_refused_connection_become_503(tmp_path: Path) -> None:
    clock = ManualClock()
    async with stack(clock, tmp_path, upstream_timeout_s=0.3) as s:
        await s.put_account()
        await s.fault(operation="apply", kind="hang")
        t0 = time.monotonic()
        status, body, _ = await s.ask(["fleet/a"])
        assert status == 503 and "timeout" in body["message"]
        assert time.monotonic() - t0 < 3
    # Nothing listens there any more: connection refused.
    async with authserver(clock, tmp_path / "auth2") as auth:
        dead_url = auth.url
    config = app_config(dead_url, None)
    async with run_appserver(config, clock=clock) as app, aiohttp.ClientSession() as http:
        async with http.put(
            f"{app.url}/admin/accounts/c1",
            json={"secret": "pw", "grants": [{"resources": ["#"], "actions": "R"}]},
        ) as resp:
            assert resp.status == 201
        from .conftest import basic

        async with http.post(
            f"{app.url}/v1/tokens",
            headers=basic("c1", "pw"),
            json={"resources": ["a"], "actions": "R"},
        ) as resp:
            body = await resp.json()
            assert resp.status == 503 and "connect" in body["message"]
            assert "Retry-After" in resp.headers


async def test_backlog_drains_at_a_bounded_rate(tmp_path: Path) -> None:
    """After an outage, 10 distinct keys asked at once reach the AuthServer at the drain
    rate (burst 2, then 2/s), not as a stampede."""
    clock = ManualClock()
    async with stack(clock, tmp_path, drain_rate_per_s=2, drain_burst=2, drain_max_wait_s=10) as s:
        await s.put_account()
        asks = [asyncio.create_task(s.ask([f"fleet/{i}"])) for i in range(10)]
        service = s.app.service

        def issued() -> float:
            value = service.metrics.registry.get_sample_value(
                "appserver_token_requests_total", {"outcome": "issued"}
            )
            return value or 0.0

        await s.handle.idle()
        assert service.draining == 8 and issued() == 2  # 8 queued for a slot
        assert await s.applies() == 2
        await s.handle.advance(1.0)  # two more slots
        assert service.draining == 6 and issued() == 4
        assert (await s.app_metrics()).total("appserver_drain_waiting") == 6
        assert await s.applies() == 4
        clock.advance(3.0)
        results = await asyncio.gather(*asks)
        assert [r[0] for r in results] == [200] * 10
        assert await s.applies() == 10


async def test_restart_keeps_the_cache(tmp_path: Path) -> None:
    async with stack(ManualClock(), tmp_path) as s:
        await s.put_account(grants=[{"resources": ["a/#"], "actions": "W"}])
        tokens = []
        for run in range(2):
            if run == 1:
                url = s.app.url
                await s.handle.restart("appserver")  # same port, same data dir
                assert s.app.url == url
            status, body, _ = await s.ask(["a/b"], "W")
            assert status == 200
            tokens.append(body["token"])
            assert (await s.app_metrics()).total("appserver_cache_hits_total") == run
        assert tokens[0] == tokens[1]
        assert await s.applies() == 1


async def test_disable_and_delete_revoke_upstream(tmp_path: Path) -> None:
    async with stack(ManualClock(), tmp_path) as s:
        await s.put_account("c1")
        await s.put_account("c2")
        _, t1, _ = await s.ask(["fleet/a"], client_id="c1")
        _, t1w, _ = await s.ask(["devices/d1/cmd"], "W", client_id="c1")
        _, t2, _ = await s.ask(["fleet/a"], client_id="c2")
        # Disable: the account stays (enabled=false), its tokens are taken away at once
        # and revoked in the background (RevokeToken, within its 5/s).
        view = await s.put_account("c1", enabled=False)
        assert view["enabled"] is False and view["dropped"] == 2 and view["queued"] == 2
        assert view["tokens"] == 0
        query = s.query_client()
        await query.start()
        try:
            for token in (t1["token"], t1w["token"]):
                await assert_revoked(s, query, token)
            assert (await query.query(t2["token"])).valid  # another account: untouched
            status, body, _ = await s.ask(["fleet/a"], client_id="c1")
            assert status == 403 and body["error"] == "account_disabled"
            async with s.http.get(f"{s.app.url}/admin/accounts/c1") as resp:
                assert resp.status == 200 and (await resp.json())["enabled"] is False
            # Delete: the account is gone, its tokens too.
            async with s.http.delete(f"{s.app.url}/admin/accounts/c2") as resp:
                assert resp.status == 200
                assert await resp.json() == {"client_id": "c2", "dropped": 1, "queued": 1}
            await assert_revoked(s, query, t2["token"])
        finally:
            await query.close()
        status, body, _ = await s.ask(["fleet/a"], client_id="c2")
        assert status == 401
        async with s.http.get(f"{s.app.url}/admin/accounts/c2") as resp:
            assert resp.status == 404


async def assert_revoked(s: Stack, query: LegacyTokenClient, token: str) -> None:
    """Once the stack is idle, the background revocation has reached the AuthServer."""
    await s.handle.idle()
    result = await query.query(token)
    assert result.code == 3, result  # revoked


async def test_revocation_during_outage_is_retried(tmp_path: Path) -> None:
    clock = ManualClock()
    async with stack(clock, tmp_path, revoke_retry_s=30, revoke_retry_max_s=30) as s:
        await s.put_account()
        _, tok, _ = await s.ask(["fleet/a"])
        await s.fault(operation="revoke", kind="status", status=503)
        async with s.http.delete(f"{s.app.url}/admin/accounts/c1") as resp:
            assert await resp.json() == {"client_id": "c1", "dropped": 1, "queued": 1}
        drain = s.app.service.revocations
        await s.handle.idle()  # the revoke was tried, refused, and is parked for a retry
        assert drain.parked_until is not None and drain.parked_until < 2e9
        assert (await s.app_metrics()).total("appserver_pending_revocations") == 1
        text = await s.app_metrics()
        assert text.total("appserver_upstream_revokes_total", result="error") == 1
        await s.clear_faults()
        await s.handle.advance(30)  # past the jittered backoff (at most 30 s here): it ran
        assert not s.app.service.store.load_pending()
        query = s.query_client()
        await query.start()
        try:
            assert (await query.query(tok["token"])).code == 3
        finally:
            await query.close()
