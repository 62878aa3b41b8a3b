"""outage-recovery: the AuthServer is down for a while (SPEC §7).

1. setup -- N "cached" clients get tokens and connect.  The embedded AppServer runs with
   a refresh margin just under the TTL, so its cached tokens are *near expiry* at once:
   every later ask for them goes upstream first (the disaster-recovery path);
2. outage -- every AuthServer apply fails (fault ``outage``), for ``outage_s`` seconds:
   * the cached clients restart, half with their persisted tokens, half with an empty
     store (they ask the AppServer, which serves its last valid token, marked stale):
     they must all connect, with no failure;
   * a probe asks for a token for an account that has none: 503 with ``Retry-After``;
   * M new clients start: they get 503s and back off (``Retry-After`` is their floor);
3. recovery -- the fault is cleared: the new clients' backlog drains through the
   AppServer's bounded apply rate, not as a stampede upstream.

Figures: ``cached_clients``, ``new_clients``, ``outage_seconds``,
``cached_reconnected_during_outage``, ``cached_failures_during_outage``,
``stale_tokens_served``, ``probe_status``, ``probe_retry_after_s``,
``new_clients_503``, ``recovery_seconds`` (fault cleared → last new client connected),
``upstream_applies_recovery``, ``peak_upstream_apply_rate`` (most applies in any 1 s
window of the recovery), ``drain_limit_per_s`` (embedded: the AppServer's rate + burst).

Options: ``new_clients`` (default N), ``outage_s=3``, ``drain_rate=50``,
``drain_burst=20``, ``deadline_s=60``.
"""

from __future__ import annotations

import asyncio
import base64
import time

from sim.customer.client.events import EventKind
from sim.customer.client.policy import Backoff, RefreshPolicy
from sim.harness.admin import ClientAccount
from sim.harness.stack import StackConfig

from .base import RunContext, ScenarioParams
from .env import scenario_stack
from .population import Population
from .report import Expectation, TimelinePoint

NAME = "outage-recovery"
DEFAULT_CLIENTS = 100
CLOCK = "system"

TTL_S = 120.0


def stack_config(params: ScenarioParams) -> StackConfig:
    return scenario_stack(seed=params.seed).with_appserver(
        token_ttl_s=TTL_S,
        # Cached tokens are near expiry 10 ms after they are issued: every later ask
        # for them goes upstream first, and during the outage gets the stale fallback.
        refresh_margin_s=TTL_S - 0.01,
        retry_after_s=1.0,
        retry_after_jitter=0.5,
        breaker_open_s=1.0,
        drain_rate_per_s=float(params.option("drain_rate", 50.0)),
        drain_burst=int(params.option("drain_burst", 20)),
        upstream_timeout_s=2.0,
    )


def peak_rate(
    points: list[TimelinePoint], series: str, t_from: float, window_s: float = 1.0
) -> float:
    """Most increments of a cumulative ``series`` within any ``window_s`` (per second)."""
    pts = [(p.t, p.values[series]) for p in points if series in p.values and p.t >= t_from]
    best = 0.0
    j = 0
    for i in range(len(pts)):
        # the earliest j with pts[i].t - pts[j].t <= window
        while pts[i][0] - pts[j][0] > window_s:
            j += 1
        best = max(best, pts[i][1] - pts[j][1])
    return best / window_s


async def run(ctx: RunContext) -> None:
    n, env = ctx.clients, ctx.env
    m = int(ctx.option("new_clients", n))
    outage_s = float(ctx.option("outage_s", 3.0))
    deadline_s = float(ctx.option("deadline_s", 60.0))
    drain_limit = float(ctx.option("drain_rate", 50.0)) + int(ctx.option("drain_burst", 20))
    # SDK side: no refresh inside the scenario, reuse stored tokens with >10 s of life.
    refresh = RefreshPolicy(margin=30.0, min_validity=10.0)
    backoff = Backoff(base=0.5, cap=5.0)
    cached = Population(
        env, n, ctx.workdir / "cached", group=f"outc{ctx.run_id}", refresh=refresh, backoff=backoff
    )
    new = Population(
        env, m, ctx.workdir / "new", group=f"outn{ctx.run_id}", refresh=refresh, backoff=backoff
    )
    ctx.connected = lambda: cached.connected() + new.connected()
    try:
        await cached.create_accounts()
        await new.create_accounts()
        ctx.progress.phase("setup: cached clients connect", n)
        await cached.start(on_connected=ctx.progress.update)

        # -- outage --------------------------------------------------------------------
        ctx.mark("outage")
        await env.admin.authserver.add_fault(
            {"operation": "apply", "kind": "outage", "seconds": 3600}
        )
        t_out = time.monotonic()
        await cached.stop()
        cached.forget(range(0, n, 2))  # half ask the AppServer, half use their store
        before = cached.counters()
        cached.arm(time.monotonic())
        ctx.progress.phase("outage: cached clients restart", n)
        await cached.start(on_connected=ctx.progress.update)
        during = cached.counters()
        stale = sum(
            1 for e in cached.events_since(t_out, EventKind.TOKEN_RECEIVED) if e.detail.get("stale")
        )
        probe_status, probe_retry = await _probe(ctx)
        ctx.progress.phase("outage: new clients get 503", m)
        await new.start(wait=False)
        # Hold the outage for its duration: this is the scenario's timeline.
        await asyncio.sleep(max(0.0, t_out + outage_s - time.monotonic()))
        failures_503 = new.counters().token_request_failures

        # -- recovery ------------------------------------------------------------------
        await env.admin.authserver.clear_faults()
        t_rec = time.monotonic()
        ctx.mark("recovery")
        applies_before = await env.upstream_applies()
        ctx.progress.phase("recovery: new clients connect", m)
        ok = await new.wait_all_connected(deadline_s, on_progress=ctx.progress.update)
        last = max(
            (e.t for e in new.events_since(t_rec, EventKind.CONNECTED)), default=float("nan")
        )
        ctx.mark("recovered" if ok else "deadline")
        await ctx.timeline.sample()
        applies_recovery = await env.upstream_applies() - applies_before
        t_rec_rel = t_rec - (time.monotonic() - ctx.timeline.elapsed())
        peak = peak_rate(ctx.timeline.points, "applies", t_rec_rel)
        new_connected = new.connected()
    finally:
        await cached.close()
        await new.close()

    cached_ok = len(cached.back)
    cached_failures = (during.token_request_failures - before.token_request_failures) + (
        during.not_authorized - before.not_authorized
    )
    recovery_s = last - t_rec if ok else -1.0
    ctx.figure("cached_clients", n)
    ctx.figure("new_clients", m)
    ctx.figure("outage_seconds", outage_s)
    ctx.figure("cached_reconnected_during_outage", cached_ok)
    ctx.figure("cached_failures_during_outage", cached_failures)
    ctx.figure("stale_tokens_served", stale)
    ctx.figure("probe_status", probe_status)
    ctx.figure("probe_retry_after_s", probe_retry)
    ctx.figure("new_clients_503", failures_503)
    ctx.figure("new_clients_connected", new_connected)
    ctx.figure("recovery_seconds", round(recovery_s, 3))
    ctx.figure("upstream_applies_recovery", applies_recovery)
    ctx.figure("peak_upstream_apply_rate", round(peak, 1))
    if env.embedded:
        ctx.figure("drain_limit_per_s", drain_limit)

    ctx.report.expect(
        Expectation.equal("cached clients all reconnected in the outage", cached_ok, n)
    )
    ctx.report.expect(Expectation.equal("cached clients saw no failure", cached_failures, 0))
    ctx.report.expect(Expectation.equal("a token-less ask gets 503", probe_status, 503))
    ctx.report.expect(Expectation.at_least("the 503 carries Retry-After", probe_retry, 0.001, "s"))
    if m:
        ctx.report.expect(Expectation.at_least("new clients were told 503", failures_503, 1))
        ctx.report.expect(Expectation.check("the backlog drained", ok, f"{m} new clients"))
    if env.embedded:
        ctx.report.expect(
            Expectation.at_most(
                "no stampede: peak apply rate within the drain limit", peak, drain_limit, "/s"
            )
        )


async def _probe(ctx: RunContext) -> tuple[int, float]:
    """Ask for a token with an account that never had one: the outage must show as 503."""
    env = ctx.env
    cid, secret = f"GID_outp{ctx.run_id}@@@probe", "probe-secret"
    await env.admin.appserver.import_accounts(
        [ClientAccount(cid, secret, (f"outp{ctx.run_id}/probe/+",))]
    )
    auth = base64.b64encode(f"{cid}:{secret}".encode()).decode()
    async with env.http.post(
        f"{env.endpoints.appserver_url}/v1/tokens",
        json={"resources": [f"outp{ctx.run_id}/probe/+"], "actions": "R,W"},
        headers={"Authorization": f"Basic {auth}"},
    ) as resp:
        await resp.read()
        try:
            retry = float(resp.headers.get("Retry-After", "0"))
        except ValueError:
            retry = 0.0
        return resp.status, retry
