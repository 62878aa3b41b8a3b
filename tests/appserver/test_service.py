"""The service with an in-memory upstream and the ManualClock: cache, single-flight,
stale fallback, breaker, drain, revocation.  (The same behaviours are tested against
the real mock AuthServer in test_against_authserver.py.)"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from sim.customer.appserver.config import AppServerConfig
from sim.customer.appserver.errors import (
    AccountDisabled,
    BadRequest,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from sim.customer.appserver.policy import AccountBody, Grant, TokenRequest
from sim.customer.appserver.resilience import BreakerState
from sim.customer.appserver.service import TokenService
from sim.customer.appserver.store import Store
from sim.harness.idle import wait_idle
from sim.shared.clock import ManualClock

from .conftest import CHEAP, FakeUpstream, down, draining

GRANT = (Grant(("dev/#",), frozenset({"R", "W"})),)
REQ = TokenRequest(frozenset({"R"}), ("dev/a",))


def make(
    tmp_path: Path | None = None, **overrides: object
) -> tuple[TokenService, FakeUpstream, ManualClock]:
    cfg = dict(
        password_hash_cost=CHEAP, token_ttl_s=3600, refresh_margin_s=300, seed=7, data_dir=tmp_path
    )
    cfg.update(overrides)
    config = AppServerConfig(**cfg)  # type: ignore[arg-type]
    clock = ManualClock()
    upstream = FakeUpstream()
    service = TokenService(config, clock, Store(config.db_path), upstream)
    return service, upstream, clock


async def account(service: TokenService, client_id: str = "c1", secret: str = "pw") -> None:
    await service.put_account(client_id, AccountBody(secret, GRANT, True))


async def test_authenticate() -> None:
    service, _, _ = make()
    await account(service)
    acct = await service.authenticate("c1", "pw")
    assert acct.client_id == "c1"
    with pytest.raises(Unauthorized):
        await service.authenticate("c1", "wrong")
    with pytest.raises(Unauthorized):
        await service.authenticate("nobody", "pw")
    # A changed secret invalidates the remembered pair at once.
    await service.put_account("c1", AccountBody("new", None, None))
    with pytest.raises(Unauthorized):
        await service.authenticate("c1", "pw")
    assert (await service.authenticate("c1", "new")).client_id == "c1"
    await service.put_account("c1", AccountBody(None, None, False))
    with pytest.raises(AccountDisabled):
        await service.authenticate("c1", "new")


async def test_new_account_needs_a_secret() -> None:
    service, _, _ = make()
    with pytest.raises(BadRequest, match="secret"):
        await service.put_account("c1", AccountBody(None, GRANT, True))
    with pytest.raises(NotFound):
        await service.delete_account("c1")


async def test_cache_reuse_until_the_refresh_margin() -> None:
    service, upstream, clock = make()
    await account(service)
    acct = service.accounts["c1"]
    first = await service.issue(acct, REQ)
    assert first.source == "issued" and first.token.token == "tok-1"
    again = await service.issue(acct, REQ)
    assert again.source == "cached" and again.token == first.token
    # Requested expire time follows the TTL policy.
    assert first.token.expire_ms == clock.now_ms() + 3_600_000
    clock.advance(3600 - 301)
    assert (await service.issue(acct, REQ)).source == "cached"
    clock.advance(2)  # now less than the margin is left: refresh
    refreshed = await service.issue(acct, REQ)
    assert refreshed.source == "issued" and refreshed.token.token == "tok-2"
    assert len(upstream.applies) == 2
    # One key, one row: the new token replaced the old one.
    assert [t.token for t in service.tokens.values()] == ["tok-2"]


async def test_single_flight_one_apply_for_many_concurrent_asks() -> None:
    service, upstream, _ = make()
    await account(service)
    acct = service.accounts["c1"]
    upstream.gate = asyncio.Event()
    asks = [asyncio.create_task(service.issue(acct, REQ)) for _ in range(200)]
    other = asyncio.create_task(service.issue(acct, TokenRequest(frozenset({"W"}), ("dev/a",))))
    await wait_idle()
    assert len(upstream.applies) == 2
    upstream.gate.set()
    results = await asyncio.gather(*asks)
    await other
    assert len(upstream.applies) == 2  # one per key
    assert {r.token.token for r in results} == {results[0].token.token}


async def test_cancelled_asker_does_not_cancel_the_shared_apply() -> None:
    service, upstream, _ = make()
    await account(service)
    acct = service.accounts["c1"]
    upstream.gate = asyncio.Event()
    first = asyncio.create_task(service.issue(acct, REQ))
    second = asyncio.create_task(service.issue(acct, REQ))
    await wait_idle()
    assert upstream.applies
    first.cancel()
    upstream.gate.set()
    assert (await second).source == "issued"
    assert len(upstream.applies) == 1


async def test_outage_serves_stale_then_503_when_expired() -> None:
    service, upstream, clock = make(breaker_failures=100)
    await account(service)
    acct = service.accounts["c1"]
    await service.issue(acct, REQ)
    clock.advance(3600 - 100)  # inside the margin: a refresh is due
    upstream.fail = down("timeout")
    stale = await service.issue(acct, REQ)
    assert stale.source == "stale" and stale.token.token == "tok-1"
    clock.advance(100)  # now it has expired: nothing valid to serve
    with pytest.raises(ServiceUnavailable) as info:
        await service.issue(acct, REQ)
    assert info.value.retry_after >= 5


async def test_serve_stale_off_answers_503() -> None:
    service, upstream, clock = make(serve_stale=False)
    await account(service)
    acct = service.accounts["c1"]
    await service.issue(acct, REQ)
    clock.advance(3500)
    upstream.fail = down()
    with pytest.raises(ServiceUnavailable):
        await service.issue(acct, REQ)


async def test_breaker_opens_stops_calling_and_recovers() -> None:
    service, upstream, clock = make(breaker_failures=3, breaker_open_s=30, breaker_jitter=0)
    await account(service)
    acct = service.accounts["c1"]
    upstream.fail = down()
    for i in range(3):
        with pytest.raises(ServiceUnavailable):
            await service.issue(acct, TokenRequest(frozenset({"R"}), (f"dev/{i}",)))
    assert service.breaker_state() is BreakerState.OPEN
    calls = len(upstream.applies)
    with pytest.raises(ServiceUnavailable) as info:
        await service.issue(acct, REQ)
    assert len(upstream.applies) == calls  # not even tried
    assert info.value.retry_after >= 30  # not before the breaker half-opens
    clock.advance(30)
    upstream.fail = None
    assert (await service.issue(acct, REQ)).source == "issued"
    assert service.breaker_state() is BreakerState.CLOSED


async def test_drain_rate_bounds_applies_after_recovery() -> None:
    service, upstream, clock = make(drain_rate_per_s=2, drain_burst=2, drain_max_wait_s=10)
    await account(service)
    acct = service.accounts["c1"]
    asks = [
        asyncio.create_task(service.issue(acct, TokenRequest(frozenset({"R"}), (f"dev/{i}",))))
        for i in range(6)
    ]
    await wait_idle()
    assert clock.pending() == 4  # the burst went, 4 wait for a slot
    assert len(upstream.applies) == 2
    clock.advance(0.5)
    await wait_idle()
    assert len(upstream.applies) == 3  # then 2 per second
    assert clock.pending() == 3
    clock.advance(1.5)
    await asyncio.gather(*asks)
    assert len(upstream.applies) == 6


async def test_drain_wait_too_long_gives_503_with_the_wait() -> None:
    service, upstream, _ = make(drain_rate_per_s=0.1, drain_burst=1, drain_max_wait_s=0)
    await account(service)
    acct = service.accounts["c1"]
    await service.issue(acct, REQ)
    with pytest.raises(ServiceUnavailable) as info:
        await service.issue(acct, TokenRequest(frozenset({"R"}), ("dev/b",)))
    assert info.value.retry_after >= 10  # one permit per 10 s
    assert len(upstream.applies) == 1


def parked(service: TokenService) -> float:
    """Until when the drain waits (virtual s); inf while it works or awaits work."""
    until_ = service.revocations.parked_until
    return math.inf if until_ is None else until_


async def test_disable_and_delete_revoke_and_drop() -> None:
    service, upstream, _ = make()
    await account(service)
    await account(service, "c2")
    acct = service.accounts["c1"]
    t1 = (await service.issue(acct, REQ)).token.token
    t2 = (await service.issue(acct, TokenRequest(frozenset({"W"}), ("dev/x",)))).token.token
    t3 = (await service.issue(service.accounts["c2"], REQ)).token.token
    _, _, change = await service.put_account("c1", AccountBody(None, None, False))
    assert (change.dropped, change.queued) == (2, 2)
    assert [t.token for t in service.tokens.values()] == [t3]  # before any revoke
    assert "c1" in service.accounts and not service.accounts["c1"].enabled  # kept
    change = await service.delete_account("c2")
    assert change.queued == 1 and not service.tokens and "c2" not in service.accounts
    async with draining(service):
        await wait_idle()
        assert len(upstream.revoked) == 3
    assert sorted(upstream.revoked) == sorted([t1, t2, t3])
    assert len(service.revocations) == 0 and service.store.load_pending() == []


async def test_narrowed_grants_revoke_tokens_outside_them() -> None:
    service, upstream, _ = make()
    await account(service)
    acct = service.accounts["c1"]
    keep = (await service.issue(acct, REQ)).token.token
    lose = (await service.issue(acct, TokenRequest(frozenset({"W"}), ("dev/a",)))).token.token
    await service.put_account("c1", AccountBody(None, (Grant(("dev/#",), frozenset({"R"})),), None))
    assert [t.token for t in service.tokens.values()] == [keep]
    async with draining(service):
        await wait_idle()
        assert upstream.revoked == [lose]


async def test_failed_revocations_are_retried(tmp_path: Path) -> None:
    service, upstream, clock = make(tmp_path, revoke_retry_s=30, revoke_retry_max_s=30)
    await account(service)
    token = (await service.issue(service.accounts["c1"], REQ)).token.token
    upstream.revoke_fail = down()
    change = await service.delete_account("c1")
    assert change.queued == 1
    assert not service.tokens  # never handed out again, even before the revoke lands
    async with draining(service):
        await wait_idle()
        assert parked(service) < math.inf
        # Jittered backoff: 30 s doubling, half of it fixed (capped here at 30 s).
        assert clock.now() + 15 <= parked(service) <= clock.now() + 30
    assert upstream.revoked == [] and len(service.revocations) == 1
    # The queue is durable, with its retry schedule: a restarted service retries it then.
    restarted = TokenService(service.config, clock, Store(service.config.db_path), upstream)
    [queued] = restarted.store.load_pending()
    assert queued.attempts == 1 and queued.not_before_ms > clock.now_ms()
    upstream.revoke_fail = None
    async with draining(restarted):
        await wait_idle()
        assert parked(restarted) < math.inf
        assert upstream.revoked == []  # not before its time
        clock.advance(30)
        await wait_idle()
        assert upstream.revoked == [token]
    assert restarted.store.load_pending() == []


async def test_account_disabled_during_apply_gets_no_token() -> None:
    service, upstream, _ = make()
    await account(service)
    acct = service.accounts["c1"]
    upstream.gate = asyncio.Event()
    ask = asyncio.create_task(service.issue(acct, REQ))
    await wait_idle()
    assert upstream.applies
    await service.put_account("c1", AccountBody(None, None, False))
    upstream.gate.set()
    with pytest.raises(AccountDisabled):
        await ask
    assert not service.tokens
    async with draining(service):
        await wait_idle()
        assert upstream.revoked == ["tok-1"]


async def test_restart_keeps_the_cache(tmp_path: Path) -> None:
    service, upstream, clock = make(tmp_path)
    await account(service)
    first = await service.issue(service.accounts["c1"], REQ)
    restarted = TokenService(service.config, clock, Store(service.config.db_path), upstream)
    again = await restarted.issue(restarted.accounts["c1"], REQ)
    assert again.source == "cached" and again.token == first.token
    assert len(upstream.applies) == 1
