"""expiry-refresh: short TTLs; every client refreshes in time (SPEC §7).

N clients connect with persistent sessions, subscribe to their own topic and publish
QoS 1 messages to it throughout; half refresh in session (``$SYS/uploadToken``,
publishing held until the PUBACK), half by reconnecting (``--set
mode=upload|reconnect|mixed``), over ``lifetimes`` 120 s token lifetimes.

Time: on the embedded stack the run owns a manual clock and moves it in 1 s steps, each
ending once what it woke has run (refresh timers, the broker's notices and expiries,
the messages in flight): whether a client refreshed before its token ran out is then a
behaviour of the parts, whatever the machine's load.  Against external endpoints it
follows the stack's own clock (``mqtt-token-sim up --time-scale 20``): a scaled clock
multiplies every real scheduling delay by the scale, so there the verdict holds only
while the machine keeps up (docs/scenarios.md "Verdicts").  ``--time-scale S`` runs the
embedded stack that way too (a scaled clock in this process), to see it.

Figures: ``clients``, ``token_ttl_s`` (virtual), ``refreshes_upload``,
``refreshes_reconnect``, ``clients_refreshed``, ``min_refreshes_per_client``,
``expired_disconnects`` (invalid notice code 2: the broker ended a session whose token
ran out), ``expired_in_session`` (the client noticed its own token ran out),
``expire_notices``, ``messages_acked``, ``messages_delivered``, ``messages_lost``,
``duplicates``, ``upstream_applies``.

Expectations: every client refreshed at least once per lifetime but the first
(``lifetimes - 1``); no session ended by expiry; every acknowledged QoS 1 message
delivered.  Options: ``lifetimes=3``, ``mode=mixed``, ``publish_every_s=5`` (virtual).
Defect (``--set defect=``): ``ignore-expire-notice``.
"""

from __future__ import annotations

import asyncio
import contextlib

from sim.customer.client.events import EventKind
from sim.customer.client.policy import RefreshPolicy
from sim.harness.stack import StackConfig

from .base import RunContext, ScenarioParams
from .env import BULK_APPLIES, scenario_stack
from .population import Population
from .report import Expectation

NAME = "expiry-refresh"
DEFAULT_CLIENTS = 100
CLOCK = "manual"

TTL_S = 120.0  # virtual seconds (the AuthServer's minimum is 60)
APP_MARGIN_S = 60.0  # the AppServer renews a cached token with less life than this
SDK_MARGIN_S = 40.0  # the SDK asks this long (plus its spread) before expiry
SDK_SPREAD_S = 10.0
NOTICE_LEAD_S = 15.0
STEP_S = 1.0  # virtual seconds per step of the manual clock
#: Reasons the SDK gives when it asks again because its token ran out (planner).
EXPIRED_REASONS = ("reapply: expired in session", "reapply: invalid notice 2")


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
    # The defect: a client that neither tracks its token's expiry (no refresh of its
    # own: margin 0) nor heeds the broker's expire notice.
    deaf = ctx.defect == "ignore-expire-notice"

    def policy(i: int) -> RefreshPolicy:
        m = mode if mode != "mixed" else ("upload" if i % 2 == 0 else "reconnect")
        return RefreshPolicy(
            mode=m,  # type: ignore[arg-type]
            margin=0.0 if deaf else SDK_MARGIN_S,
            spread=0.0 if deaf else SDK_SPREAD_S,
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
        heed_expire_notice=not deaf,
    )
    ctx.connected = pop.connected
    acked: list[set[int]] = [set() for _ in range(n)]
    try:
        ctx.report.notes.extend(await pop.create_accounts())
        ctx.progress.phase("setup: clients connect", n)
        for i in range(n):
            await pop.start([i], refresh=policy(i), clean_session=False, wait=False)
        if not await ctx.until(lambda: pop.connected() >= n, within=60.0, what="the clients"):
            raise RuntimeError(f"setup: {pop.connected()} of {n} clients connected")
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
        try:
            for k in range(lifetimes):
                await ctx.elapse(TTL_S, step=STEP_S)
                ctx.progress.update(k + 1)
            # The publishers notice the end at their next wake-up.
            await ctx.until(
                lambda: all(p.done() for p in pubs),
                within=2 * every,
                step=STEP_S,
                what="the publishers to stop",
            )
            for p in pubs:
                if p.done():
                    p.result()  # a publisher's failure is the scenario's failure
        finally:
            for p in pubs:
                p.cancel()
                with contextlib.suppress(BaseException):
                    await p
        ctx.mark("draining")
        # The last messages may still be on their way to the subscriber (what is still
        # missing then is counted as lost).
        await ctx.until(
            lambda: _lost(pop, acked) == 0, within=5.0, step=STEP_S, what="the last deliveries"
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
            for e in pop.events_since(float("-inf"), EventKind.INVALID_NOTICE)
            if int(e.detail.get("code", 0)) == 2
        )
        ran_out = sum(
            1
            for e in pop.events_since(float("-inf"), EventKind.TOKEN_REQUESTED)
            if e.detail.get("reason") == EXPIRED_REASONS[0]
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
    ctx.figure("expired_in_session", ran_out)
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
    ctx.report.expect(Expectation.equal("no session ended by expiry", expired + ran_out, 0))
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
