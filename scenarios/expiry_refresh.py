"""expiry-refresh: short TTLs under a scaled clock; every client refreshes (SPEC §7).

The stack runs on a scaled clock (``--time-scale``, default 20: a 120 s token lives 6 s
of real time).  N clients connect with persistent sessions, subscribe to their own
topic and publish QoS 1 messages to it throughout; half refresh in session
(``$SYS/uploadToken``, publishing held until the PUBACK), half by reconnecting
(``--set mode=upload|reconnect|mixed``).  After ``lifetimes`` token lifetimes:

Figures: ``clients``, ``token_ttl_s`` (virtual), ``refreshes_upload``,
``refreshes_reconnect``, ``clients_refreshed``, ``min_refreshes_per_client``,
``expired_disconnects`` (invalid notice code 2: a client that did not refresh in time),
``expire_notices``, ``messages_acked``, ``messages_delivered``, ``messages_lost``,
``duplicates``, ``upstream_applies``.

Expectations: every client refreshed at least once per lifetime but the first
(``lifetimes - 1``); no session ended by expiry; every acknowledged QoS 1 message
delivered.  Options: ``lifetimes=3``, ``mode=mixed``, ``publish_every_s=5`` (virtual).
"""

from __future__ import annotations

import asyncio
import contextlib

from sim.customer.client.events import EventKind
from sim.customer.client.policy import RefreshPolicy
from sim.harness.stack import StackConfig
from sim.shared.waiting import WaitTimeout, wait_until

from .base import RunContext, ScenarioParams
from .env import BULK_APPLIES, scenario_stack
from .population import Population
from .report import Expectation

NAME = "expiry-refresh"
DEFAULT_CLIENTS = 100
CLOCK = "scaled"
#: 120 s tokens live 6 s of real time; the SDK's refresh margin is 2 s real.  Faster
#: scales work for small fleets (the pytest size uses 60); a loaded machine needs the
#: real-time margin to cover its scheduling delays.
DEFAULT_TIME_SCALE = 20.0

TTL_S = 120.0  # virtual seconds (the AuthServer's minimum is 60)
APP_MARGIN_S = 60.0  # the AppServer renews a cached token with less life than this
SDK_MARGIN_S = 40.0  # the SDK asks this long (plus its spread) before expiry
SDK_SPREAD_S = 10.0
NOTICE_LEAD_S = 15.0


def stack_config(params: ScenarioParams) -> StackConfig:
    return (
        scenario_stack(seed=params.seed)
        .with_appserver(
            token_ttl_s=TTL_S,
            refresh_margin_s=APP_MARGIN_S,
            drain_burst=100_000,
            drain_rate_per_s=1_000_000.0,
        )
        .with_broker(expire_notice_lead=NOTICE_LEAD_S)
        .with_authserver(rate_limits=BULK_APPLIES)  # every client refreshes in one window
    )


async def run(ctx: RunContext) -> None:
    n, env = ctx.clients, ctx.env
    clock = env.clock
    lifetimes = int(ctx.option("lifetimes", 3))
    mode = str(ctx.option("mode", "mixed"))
    if mode not in ("mixed", "upload", "reconnect"):
        raise ValueError("mode must be mixed, upload or reconnect")
    every = float(ctx.option("publish_every_s", 5.0))

    def policy(i: int) -> RefreshPolicy:
        m = mode if mode != "mixed" else ("upload" if i % 2 == 0 else "reconnect")
        return RefreshPolicy(
            mode=m,  # type: ignore[arg-type]
            margin=SDK_MARGIN_S,
            spread=SDK_SPREAD_S,
            min_validity=SDK_MARGIN_S / 2,
            retry_floor=2.0,
        )

    pop = Population(
        env,
        n,
        ctx.workdir / "client-tokens",
        group=f"exp{ctx.run_id}",
        subscribe=True,
        seed=ctx.params.seed,
    )
    ctx.connected = pop.connected
    acked: list[set[int]] = [set() for _ in range(n)]
    try:
        await pop.create_accounts()
        ctx.progress.phase("setup: clients connect", n)
        await asyncio.gather(
            *(pop.start([i], refresh=policy(i), clean_session=False, wait=True) for i in range(n))
        )
        ctx.progress.update(n)
        applies_before = await env.upstream_applies()
        t_end = clock.now() + lifetimes * TTL_S
        ctx.mark("publishing")
        ctx.progress.phase(f"running {lifetimes} token lifetimes", lifetimes)

        async def publisher(i: int) -> None:
            client = pop.clients[i]
            seq = 0
            while clock.now() < t_end:
                seq += 1
                await client.publish(pop.topic(i), f"{i}:{seq}".encode(), qos=1)
                acked[i].add(seq)
                await clock.sleep(every * (0.5 + ctx.rng.random()))

        pubs = [asyncio.ensure_future(publisher(i)) for i in range(n)]
        start_v = clock.now()
        try:
            while not all(p.done() for p in pubs):
                ctx.progress.update(int((clock.now() - start_v) // TTL_S))
                await asyncio.sleep(0.05)
            for p in pubs:
                p.result()  # a publisher's failure is the scenario's failure
        finally:
            for p in pubs:
                p.cancel()
                with contextlib.suppress(BaseException):
                    await p
        ctx.mark("draining")
        # The last messages may still be on their way to the subscriber: poll, bounded
        # (what is still missing then is counted as lost).
        with contextlib.suppress(WaitTimeout):
            await wait_until(
                lambda: _lost(pop, acked) == 0, timeout=5.0, what="the last deliveries"
            )
        applies = await env.upstream_applies() - applies_before
        per_client = [
            c.counters.refreshes_upload + c.counters.refreshes_reconnect for c in pop.clients
        ]
        counters = pop.counters()
        lost = _lost(pop, acked)
        delivered, duplicates = _delivered(pop)
        expired = sum(
            1
            for e in pop.events_since(0.0, EventKind.INVALID_NOTICE)
            if int(e.detail.get("code", 0)) == 2
        )
    finally:
        await pop.close()

    ctx.figure("clients", n)
    ctx.figure("token_ttl_s", TTL_S)
    ctx.figure("time_scale", float(getattr(clock, "scale", 1.0)))
    ctx.figure("refreshes_upload", counters.refreshes_upload)
    ctx.figure("refreshes_reconnect", counters.refreshes_reconnect)
    ctx.figure("clients_refreshed", sum(1 for r in per_client if r > 0))
    ctx.figure("min_refreshes_per_client", min(per_client) if per_client else 0)
    ctx.figure("expired_disconnects", expired)
    ctx.figure("expire_notices", counters.expire_notices)
    ctx.figure("messages_acked", sum(len(a) for a in acked))
    ctx.figure("messages_delivered", delivered)
    ctx.figure("messages_lost", lost)
    ctx.figure("duplicates", duplicates)
    ctx.figure("upstream_applies", applies)

    wanted = max(1, lifetimes - 1)
    ctx.report.expect(
        Expectation.at_least(
            f"every client refreshed at least {wanted} times", min(per_client), wanted
        )
    )
    ctx.report.expect(Expectation.equal("no session ended by expiry", expired, 0))
    ctx.report.expect(Expectation.equal("every acknowledged QoS 1 message delivered", lost, 0))
    ctx.report.expect(Expectation.at_least("messages were sent", sum(len(a) for a in acked), n))


def _seqs(pop: Population, i: int) -> list[int]:
    out = []
    prefix = f"{i}:"
    for m in pop.received[i]:
        text = m.payload.decode(errors="replace")
        if text.startswith(prefix):
            with contextlib.suppress(ValueError):
                out.append(int(text[len(prefix) :]))
    return out


def _lost(pop: Population, acked: list[set[int]]) -> int:
    return sum(len(a - set(_seqs(pop, i))) for i, a in enumerate(acked))


def _delivered(pop: Population) -> tuple[int, int]:
    total = dup = 0
    for i in range(pop.n):
        seqs = _seqs(pop, i)
        total += len(set(seqs))
        dup += len(seqs) - len(set(seqs))
    return total, dup
