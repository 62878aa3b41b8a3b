"""revocation: revoked clients are disconnected within 1 s and cannot come back (SPEC §7).

N clients connect; ``revoke`` of them (default: a quarter, at least 1) have their
AppServer account disabled (``PUT /admin/accounts/{id}`` ``{"enabled": false}``), which
revokes their tokens at the AuthServer; the broker learns it from the revocation feed.

Figures: ``revoked_clients``, ``disconnect_latency_p50/p95/p99/max_ms`` (from the start of
the disable call to the client seeing its session end), ``revoke_call_max_ms``,
``old_token_reconnects_refused``, ``bystanders_disconnected``, ``invalid_notices_revoked``
(``$SYS/tokenInvalidNotice`` code 3 received).

Expectations: every revoked client disconnected; within ``limit_s`` (1 s, SPEC §3c: a
wall-clock bound kept as a verdict, with the headroom measured in docs/scenarios.md);
every old token refused at a fresh CONNECT; no other client disconnected; the SDK
clients of revoked accounts end "refused" (the AppServer no longer gives them a token).

Defect (``--set defect=``): ``broker-ignores-revocations`` (the embedded broker skips the
feed's revocations: BrokerConfig.ignore_revocations).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from mock_authserver.ratelimit import RateLimits
from sim.customer.client.errors import NotAuthorized
from sim.customer.client.events import EventKind
from sim.customer.client.transport import Connection, parse_broker_url
from sim.harness.stack import StackConfig
from sim.shared.waiting import WaitTimeout, wait_until

from .base import RunContext, ScenarioParams
from .env import scenario_stack
from .population import Population
from .report import Expectation, latency_figures

NAME = "revocation"
DEFAULT_CLIENTS = 100
CLOCK = "system"


#: The scenario measures the broker's bound (SPEC §3c: a revocation reaches every broker
#: within 1 s), from the moment the accounts are disabled.  The AppServer's revocation
#: queue drains at the provider's RevokeToken limit (5/s) by default, so disabling a
#: quarter of 400 clients would take 20 s before the broker could learn anything: the
#: embedded AppServer sends all revocations at once here.  In production the same
#: disable takes ``revoke / 5`` seconds to reach the broker (docs/appserver.md).
UNTHROTTLED_REVOKES = {"revoke_limit": 1_000_000, "revoke_window_s": 1.0}


def stack_config(params: ScenarioParams) -> StackConfig:
    # ... and the AuthServer takes them as they come: the provider's RevokeToken limit
    # (5/s per account, SPEC §3b), which the AppServer's queue otherwise respects, is
    # lifted for the same reason.
    return (
        scenario_stack(seed=params.seed)
        .with_appserver(**UNTHROTTLED_REVOKES)
        .with_authserver(rate_limits=RateLimits().with_overrides({"openapi_revoke": "off"}))
        .with_broker(ignore_revocations=params.defect == "broker-ignores-revocations")
    )


async def run(ctx: RunContext) -> None:
    n, env = ctx.clients, ctx.env
    k = int(ctx.option("revoke", max(1, n // 4)))
    if not 1 <= k <= n:
        raise ValueError(f"revoke must be within 1..{n}")
    limit_s = float(ctx.option("limit_s", 1.0))
    pop = Population(
        env, n, ctx.workdir / "client-tokens", group=f"rev{ctx.run_id}", seed=ctx.params.seed
    )
    ctx.connected = pop.connected
    victims = sorted(ctx.rng.sample(range(n), k))
    try:
        await pop.create_accounts()
        ctx.progress.phase("setup: clients connect", n)
        await pop.start(on_connected=ctx.progress.update)
        old = {i: pop.clients[i].token for i in victims}

        ctx.progress.phase("revoke", k)
        ctx.mark("revoke")
        t0 = time.monotonic()
        lost: dict[int, float] = {}

        def scan() -> None:
            for e in pop.events_since(t0, EventKind.DISCONNECTED):
                lost.setdefault(e.index, e.t)

        call_ms: list[float] = []
        started: dict[int, float] = {}

        async def disable(i: int) -> None:
            started[i] = time.monotonic()
            await env.admin.appserver.disable_account(pop.client_id(i))
            call_ms.append((time.monotonic() - started[i]) * 1000)

        await asyncio.gather(*(disable(i) for i in victims))

        def victims_gone() -> bool:
            scan()
            ctx.progress.update(sum(1 for i in victims if i in lost))
            return all(i in lost for i in victims)

        # Wait for the victims (a hang guard of 3 x the limit, at least 2 s: a missing
        # one is counted, not waited for).
        with contextlib.suppress(WaitTimeout):
            await wait_until(
                victims_gone, timeout=max(2.0, 3 * limit_s), what="the revoked clients to go"
            )
        ctx.mark("victims gone")
        # Bystanders: a window in which a wrongful disconnect would show (an
        # observation period, not a synchronisation).
        await asyncio.sleep(min(1.0, 2 * limit_s))
        scan()
        latencies = [lost[i] - started[i] for i in victims if i in lost]
        bystanders_lost = sum(1 for i in range(n) if i not in victims and i in lost)

        # The old tokens, at a fresh CONNECT (own client ids: no takeover involved).
        refused = 0
        address = parse_broker_url(env.endpoints.broker_url)
        for i in victims:
            tok = old[i]
            if tok is None:
                continue
            conn = Connection(f"GID_rev{ctx.run_id}@@@old{i}", on_message=lambda _m: None)
            try:
                await conn.open(address, username=tok.username, password=tok.password)
            except NotAuthorized:
                refused += 1
            else:
                await conn.close()
        notices = sum(
            1
            for e in pop.events_since(t0, EventKind.INVALID_NOTICE)
            if e.index in victims and int(e.detail.get("code", 0)) == 3
        )
        # The SDK of a revoked account asks again, gets 403 "disabled": it stops (a client
        # never disconnected never asks: no wait for those).
        gone = [i for i in victims if i in lost]
        refused_clients = await _wait_states(pop, gone, "refused", 5.0) if gone else 0
    finally:
        await pop.close()

    ctx.figure("clients", n)
    ctx.figure("revoked_clients", k)
    ctx.figure("victims_disconnected", len(latencies))
    ctx.report.figures.update(latency_figures("disconnect_latency", latencies))
    if call_ms:
        ctx.figure("revoke_call_max_ms", round(max(call_ms), 3))
    ctx.figure("old_token_reconnects_refused", refused)
    ctx.figure("bystanders_disconnected", bystanders_lost)
    ctx.figure("invalid_notices_revoked", notices)
    ctx.figure("sdk_clients_refused", refused_clients)

    ctx.report.expect(Expectation.equal("every revoked client disconnected", len(latencies), k))
    ctx.report.expect(
        Expectation.at_most(
            f"disconnected within {limit_s:g} s of the revoke",
            max(latencies) if latencies else float("inf"),
            limit_s,
            "s",
            timing=True,
        )
    )
    ctx.report.expect(Expectation.equal("old tokens refused at CONNECT", refused, k))
    ctx.report.expect(Expectation.equal("no bystander disconnected", bystanders_lost, 0))
    ctx.report.expect(
        Expectation.equal("revoked SDK clients stop (403 from the AppServer)", refused_clients, k)
    )


async def _wait_states(pop: Population, indices: list[int], state: str, within: float) -> int:
    """How many of ``indices`` reached ``state`` (waiting at most ``within`` s for all)."""

    def count() -> int:
        return sum(1 for i in indices if pop.clients[i].state == state)

    with contextlib.suppress(WaitTimeout):
        await wait_until(
            lambda: count() == len(indices), timeout=within, what=f"clients to be {state}"
        )
    return count()
