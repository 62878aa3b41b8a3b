"""Account changes and the cache, at the service (in-memory upstream, manual clock):
the start-up re-check, no stale fallback to a token taken away meanwhile, the retry
schedule of the queue (docs/appserver.md "Account changes", "Revocation queue")."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from sim.customer.appserver.config import AppServerConfig
from sim.customer.appserver.errors import (
    AccountDisabled,
    BadRequest,
    ServiceUnavailable,
    Unauthorized,
    UpstreamError,
)
from sim.customer.appserver.policy import (
    Account,
    AccountBody,
    CachedToken,
    Grant,
    TokenKey,
    TokenRequest,
)
from sim.customer.appserver.revocation import Revocation
from sim.customer.appserver.service import TokenService
from sim.customer.appserver.store import Store
from sim.shared.clock import ManualClock
from sim.shared.waiting import wait_until

from .conftest import CHEAP, FakeUpstream, down, draining

WIDE = (Grant(("dev/#",), frozenset({"R", "W"})),)
READ = TokenRequest(frozenset({"R"}), ("dev/a",))
WRITE = TokenRequest(frozenset({"W"}), ("dev/a",))


def config(tmp_path: Path | None, **overrides: object) -> AppServerConfig:
    return AppServerConfig(
        **{"password_hash_cost": CHEAP, "seed": 3, "data_dir": tmp_path, **overrides}  # type: ignore[arg-type]
    )


async def test_start_up_recheck_takes_out_tokens_the_grants_do_not_allow(tmp_path: Path) -> None:
    """A store whose cache holds tokens its accounts no longer allow (written by an
    AppServer that crashed between changing grants and enforcing them): on start they
    are not served, and they are queued for revocation."""
    cfg = config(tmp_path)
    clock = ManualClock()
    store = Store(cfg.db_path)
    now_ms = clock.now_ms()
    narrowed = Account("n", "h", (Grant(("dev/#",), frozenset({"R"})),))
    disabled = Account("d", "h", WIDE, enabled=False)
    store.commit(accounts=[narrowed, disabled])

    def cached(account: str, request: TokenRequest, token: str) -> CachedToken:
        key = TokenKey.of(account, cfg.instance_id, request)
        return CachedToken(key, token, now_ms + 3_600_000, now_ms)

    for token in (
        cached("n", READ, "keep"),
        cached("n", WRITE, "narrowed-out"),
        cached("d", READ, "disabled"),
        cached("gone", READ, "deleted"),
    ):
        store.put_token(token)
    store.close()

    upstream = FakeUpstream()
    service = TokenService(cfg, clock, Store(cfg.db_path), upstream)
    assert [t.token for t in service.tokens.values()] == ["keep"]
    assert sorted(r.token for r in service.store.load_pending()) == [
        "deleted",
        "disabled",
        "narrowed-out",
    ]
    assert len(service.revocations) == 3
    assert (await service.issue(service.accounts["n"], READ)).token.token == "keep"
    async with draining(service):
        await wait_until(
            lambda: len(upstream.revoked) == 3, timeout=10, what="len(upstream.revoked) == 3"
        )
    assert sorted(upstream.revoked) == ["deleted", "disabled", "narrowed-out"]


async def test_no_stale_fallback_to_a_token_taken_away_while_waiting() -> None:
    """An ask waits for a drain slot; meanwhile the account is disabled and enabled
    again (its token dropped and queued for revocation); then the apply fails.  The
    fallback must not serve the dropped token as "stale"."""
    clock = ManualClock()
    service = TokenService(
        config(None, drain_rate_per_s=1, drain_burst=1, drain_max_wait_s=10, breaker_failures=100),
        clock,
        Store(None),
        upstream := FakeUpstream(),
    )
    await service.put_account("c", AccountBody("pw", WIDE, True))
    old = (await service.issue(service.accounts["c"], READ)).token  # takes the burst
    clock.advance(3600 - 100)  # a refresh is due; the token is still valid
    upstream.fail = down()
    with pytest.raises(ServiceUnavailable):  # takes the slot of this second
        await service.issue(service.accounts["c"], TokenRequest(frozenset({"R"}), ("dev/b",)))
    waiting = asyncio.create_task(service.issue(service.accounts["c"], READ))
    await wait_until(lambda: service.draining == 1, timeout=10, what="service.draining == 1")
    await service.put_account("c", AccountBody(None, None, False))
    await service.put_account("c", AccountBody(None, None, True))
    assert service.store.load_pending() == [Revocation(old.token, "c", old.expire_ms)]
    clock.advance(1)
    with pytest.raises(ServiceUnavailable):
        await waiting
    assert not service.tokens


async def test_failed_revoke_backoff_doubles_up_to_its_cap() -> None:
    clock = ManualClock()
    service = TokenService(
        config(None, revoke_retry_s=10, revoke_retry_max_s=40),
        clock,
        Store(None),
        upstream := FakeUpstream(),
    )
    await service.put_account("c", AccountBody("pw", WIDE, True))
    await service.issue(service.accounts["c"], READ)
    upstream.revoke_fail = UpstreamError("down", reason="connect")
    await service.put_account("c", AccountBody(None, None, False))
    drain = service.revocations
    waits = []
    async with draining(service):
        for _ in range(5):
            await wait_until(
                lambda: drain.parked_until is not None and drain.parked_until < math.inf,
                timeout=10,
                what="drain.parked_until is not None and drain.parked_until < math.inf",
            )
            assert drain.parked_until is not None
            waits.append(drain.parked_until - clock.now())
            clock.set(drain.parked_until)
            await wait_until(
                lambda: drain.parked_until is None or drain.parked_until > clock.now(),
                timeout=10,
                what="drain.parked_until is None or drain.parked_until > clock.now()",
            )
    ceilings = [10, 20, 40, 40, 40]
    assert all(c / 2 <= w <= c + 0.001 for w, c in zip(waits, ceilings, strict=True)), waits
    assert upstream.revoked == [] and len(drain) == 1  # never dropped
    [queued] = service.store.load_pending()
    assert queued.attempts >= 5
    sample = service.metrics.registry.get_sample_value
    assert sample("appserver_upstream_revokes_total", {"result": "error"}) == queued.attempts
    errors = {"operation": "revoke", "reason": "connect"}
    assert sample("appserver_upstream_errors_total", errors) == queued.attempts


async def test_an_expired_token_is_not_revoked(tmp_path: Path) -> None:
    clock = ManualClock()
    service = TokenService(config(tmp_path), clock, Store(tmp_path / "db"), FakeUpstream())
    upstream = service.upstream
    assert isinstance(upstream, FakeUpstream)
    await service.put_account("c", AccountBody("pw", WIDE, True))
    await service.issue(service.accounts["c"], READ)
    upstream.revoke_fail = down()
    await service.put_account("c", AccountBody(None, None, False))
    clock.advance(3600)  # the token expires before the revoke could go
    upstream.revoke_fail = None
    async with draining(service):
        await wait_until(
            lambda: len(service.revocations) == 0, timeout=10, what="len(service.revocations) == 0"
        )
    assert upstream.revoked == []
    assert service.metrics.registry.get_sample_value("appserver_revocations_expired_total") == 1


async def test_disable_keeps_the_account_and_delete_forgets_it() -> None:
    """docs/appserver.md "Disable, enable, delete"."""
    service = TokenService(config(None), ManualClock(), Store(None), FakeUpstream())
    await service.put_account("c", AccountBody("pw", WIDE, True))
    old = (await service.issue(await service.authenticate("c", "pw"), READ)).token
    _, created, change = await service.put_account("c", AccountBody(None, None, False))
    assert not created and (change.dropped, change.queued) == (1, 1)
    with pytest.raises(AccountDisabled):
        await service.authenticate("c", "pw")
    assert service.accounts["c"].grants == WIDE  # kept, as the secret
    await service.put_account("c", AccountBody(None, None, True))
    again = await service.issue(await service.authenticate("c", "pw"), READ)
    assert again.source == "issued" and again.token.token != old.token
    change = await service.delete_account("c")
    assert (change.dropped, change.queued) == (1, 1) and "c" not in service.accounts
    with pytest.raises(Unauthorized):
        await service.authenticate("c", "pw")
    with pytest.raises(BadRequest, match="secret"):  # a PUT without a secret cannot create
        await service.put_account("c", AccountBody(None, None, False))
    assert sorted(service.store.load_accounts()) == []
