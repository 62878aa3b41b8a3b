"""outage-recovery: the AuthServer is down for a while (SPEC §7).

1. setup -- N "cached" clients get tokens and connect.  The embedded AppServer runs with
   a refresh margin just under the TTL, so its cached tokens are *near expiry* at once:
   every later ask for them goes upstream first (the disaster-recovery path);
2. outage -- every AuthServer apply fails (fault ``outage``), for ``outage_s`` seconds:
   * the cached clients restart, half with their persisted tokens, half with an empty
     store (they ask the AppServer, which serves its last valid token, marked stale):
     they must all connect, with no failure;
   * a probe asks for a token for a client that has none: "not now" (our AppServer:
     503 with ``Retry-After``);
   * M new clients start: they are told "not now" and back off (``Retry-After`` is
     their floor);
3. recovery -- the fault is cleared: the new clients' backlog drains through the
   AppServer's bounded apply rate, not as a stampede upstream.

Time: on the embedded stack the run owns a manual clock and moves it in steps of 0.1 s,
each ending once what it woke has run (the outage, ``Retry-After``, the backoffs and the
AppServer's drain all run on that clock): every count, and the peak apply rate in any
1 s window of (virtual) time, is a behaviour of the parts, not of the machine's load.
Beside the user's AppServer (``--adapter``, its own process on its own time) the same
steps take real time.

Figures: ``cached_clients``, ``new_clients``, ``outage_seconds``,
``cached_reconnected_during_outage``, ``cached_failures_during_outage``,
``stale_tokens_served``, ``probe_status``, ``probe_retry_after_s``, ``new_clients_503``
(refused asks: "not now"), ``new_clients_connected``, ``recovery_seconds`` (fault
cleared → last new client connected), ``upstream_applies_recovery``,
``peak_upstream_apply_rate`` (most applies in any 1 s window of the recovery),
``drain_limit_per_s`` (our AppServer: its rate + burst), ``throttled_applies_recovery``.

Verdict: the cached clients all connect during the outage with no failure; the probe is
told "not now" (ours: 503 + Retry-After); new clients are told so and all connect after
it; the peak apply rate stays within the drain limit (ours), or (yours, whose limit we
do not know) the AuthServer never throttles an apply.

Options: ``new_clients`` (default N), ``outage_s=3``, ``drain_rate`` (default M ÷ 5 per
second: the backlog drains in about 5 s) and ``drain_burst`` (M ÷ 10) -- a backlog
well above the limit, so that an unbounded drain shows --, ``deadline_s=60`` (the
backlog's hang guard).  Defects (``--set defect=``): ``no-stale-fallback``,
``unbounded-drain``.
"""

from __future__ import annotations

import asyncio

from sim.customer.adapter import Unavailable, ask_token, builtin_adapter
from sim.customer.client.events import EventKind
from sim.customer.client.policy import Backoff, RefreshPolicy
from sim.harness.stack import StackConfig

from .base import RunContext, ScenarioParams
from .env import APPLY_METRIC, scenario_stack
from .population import Population
from .report import Expectation, TimelinePoint

NAME = "outage-recovery"
DEFAULT_CLIENTS = 100
CLOCK = "manual"
ADAPTER = True

TTL_S = 120.0
STEP_S = 0.1
#: The AuthServer's answer to an apply past the provider's rate limit (legacy API).
THROTTLED_CODE = "429"


def drain_limits(params: ScenarioParams) -> tuple[float, int]:
    """The embedded AppServer's drain rate (/s) and burst: the options, or sized to the
    backlog (M ÷ 5 per second, burst M ÷ 10) so that a stampede would exceed them."""
    n = params.clients if params.clients is not None else DEFAULT_CLIENTS
    m = int(params.option("new_clients", n))
    rate = float(params.option("drain_rate", max(1.0, m / 5)))
    burst = int(params.option("drain_burst", max(1, m // 10)))
    return rate, burst


def stack_config(params: ScenarioParams) -> StackConfig:
    rate, burst = drain_limits(params)
    if params.defect == "unbounded-drain":
        rate, burst = 1_000_000.0, 1_000_000
    # The broker's expire notice (300 s ahead by default) would reach a 120 s token at
    # once and make every cached client refresh in the middle of the outage.
    config = scenario_stack(seed=params.seed).with_broker(expire_notice_lead=15.0)
    return config.with_appserver(
        token_ttl_s=TTL_S,
        # Cached tokens are near expiry 10 ms after they are issued: every later ask
        # for them goes upstream first, and during the outage gets the stale fallback.
        refresh_margin_s=TTL_S - 0.01,
        retry_after_s=1.0,
        retry_after_jitter=0.5,
        breaker_open_s=1.0,
        drain_rate_per_s=rate,
        drain_burst=burst,
        upstream_timeout_s=2.0,
        serve_stale=params.defect != "no-stale-fallback",
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
    rate, burst = drain_limits(ctx.params)
    # SDK side: no refresh inside the scenario, reuse stored tokens with >10 s of life.
    refresh = RefreshPolicy(margin=30.0, min_validity=10.0)
    backoff = Backoff(base=0.5, cap=5.0)
    cached = Population(
        env, n, ctx.workdir / "cached", group=f"outc{ctx.run_id}", refresh=refresh, backoff=backoff
    )
    new = Population(
        env,
        m,
        ctx.workdir / "new",
        group=f"outn{ctx.run_id}",
        refresh=refresh,
        backoff=backoff,
        offset=n,
    )
    # The probe: one more client that never had a token (the next [clients] number).
    probe = Population(env, 1, ctx.workdir / "probe", group=f"outp{ctx.run_id}", offset=n + m)
    ctx.connected = lambda: cached.connected() + new.connected()
    try:
        for pop in (cached, new, probe):
            ctx.report.notes.extend(await pop.create_accounts())
        ctx.progress.phase("setup: cached clients connect", n)
        await cached.start(wait=False)
        if not await ctx.until(
            lambda: cached.connected() >= n, within=deadline_s, what="the cached clients"
        ):
            raise RuntimeError(f"setup: {cached.connected()} of {n} clients connected")
        # Let the cached tokens age past the AppServer's refresh margin (10 ms under the
        # TTL), so that an ask for one goes upstream: the disaster-recovery path.
        await ctx.elapse(1.0)

        # -- outage --------------------------------------------------------------------
        ctx.mark("outage")
        await env.admin.authserver.add_fault(
            {"operation": "apply", "kind": "outage", "seconds": 86_400}
        )
        t_out, t_out_stamp = env.clock.now(), cached.now()
        await cached.stop()
        cached.forget(range(0, n, 2))  # half ask the AppServer, half use their store
        before = cached.counters()
        cached.arm(cached.now())
        ctx.progress.phase("outage: cached clients restart, new ones arrive", n)
        await cached.start(wait=False)
        await new.start(wait=False)
        await ctx.until(
            lambda: len(cached.back) >= n,
            within=outage_s,
            step=STEP_S,
            what="the cached clients to connect in the outage",
        )
        cached_ok = len(cached.back)
        during = cached.counters()
        stale = sum(
            1
            for e in cached.events_since(t_out_stamp, EventKind.TOKEN_RECEIVED)
            if e.detail.get("stale")
        )
        # The ask may wait for a drain slot on the stack's clock: step it meanwhile.
        asking = asyncio.ensure_future(_probe(ctx, probe))
        await ctx.until(asking.done, within=deadline_s, step=STEP_S, what="the probe's answer")
        probe_status, probe_retry = await asking
        # Hold the outage for its duration: this is the scenario's timeline.
        await ctx.elapse(max(0.0, t_out + outage_s - env.clock.now()), step=STEP_S)
        not_now = new.counters().token_request_failures

        # -- recovery ------------------------------------------------------------------
        await env.admin.authserver.clear_faults()
        t_rec_stamp = new.now()
        t_rec_rel = ctx.timeline.elapsed()
        ctx.mark("recovery")
        applies_before = await env.upstream_applies()
        throttled_before = await _throttled(ctx)
        ctx.progress.phase("recovery: new clients connect", m)
        drained = await ctx.until(
            lambda: new.connected() >= m, within=deadline_s, step=STEP_S, what="the backlog"
        )
        last = max((e.t for e in new.events_since(t_rec_stamp, EventKind.CONNECTED)), default=0.0)
        ctx.mark("recovered" if drained else "deadline")
        await ctx.timeline.sample()
        applies_recovery = await env.upstream_applies() - applies_before
        throttled = await _throttled(ctx) - throttled_before
        peak = peak_rate(ctx.timeline.points, "applies", t_rec_rel)
        new_connected = new.connected()
    finally:
        for pop in (cached, new, probe):
            await pop.close()

    ours = env.our_appserver
    cached_failures = (during.token_request_failures - before.token_request_failures) + (
        during.not_authorized - before.not_authorized
    )
    # Virtual seconds on a manual clock, real ones otherwise (as the events are stamped).
    recovery_s = last - t_rec_stamp if drained else -1.0
    ctx.figure("cached_clients", n)
    ctx.figure("new_clients", m)
    ctx.figure("outage_seconds", outage_s)
    ctx.figure("cached_reconnected_during_outage", cached_ok)
    ctx.figure("cached_failures_during_outage", cached_failures)
    ctx.figure("stale_tokens_served", stale)
    ctx.figure("probe_status", probe_status)
    ctx.figure("probe_retry_after_s", probe_retry)
    ctx.figure("new_clients_503", not_now)
    ctx.figure("new_clients_connected", new_connected)
    ctx.figure("recovery_seconds", round(recovery_s, 3))
    ctx.figure("upstream_applies_recovery", applies_recovery)
    ctx.figure("peak_upstream_apply_rate", round(peak, 1))
    ctx.figure("throttled_applies_recovery", throttled)
    if ours:
        ctx.figure("drain_limit_per_s", rate + burst)
    else:
        ctx.report.skip(
            "drain_limit_per_s", "your AppServer's drain rate is its own; judged by throttling"
        )

    ctx.report.expect(
        Expectation.equal("cached clients all reconnected in the outage", cached_ok, n)
    )
    ctx.report.expect(Expectation.equal("cached clients saw no failure", cached_failures, 0))
    if ours:
        ctx.report.expect(Expectation.equal("a token-less ask gets 503", probe_status, 503))
        ctx.report.expect(
            Expectation.at_least("the 503 carries Retry-After", probe_retry, 0.001, "s")
        )
    else:
        ctx.report.expect(
            Expectation.check(
                "a token-less ask is told 'not now' (5xx or 429)",
                probe_status == 429 or 500 <= probe_status <= 599,
                f"HTTP {probe_status}",
            )
        )
    if m:
        ctx.report.expect(Expectation.at_least("new clients were told 'not now'", not_now, 1))
        ctx.report.expect(
            Expectation.check(
                f"the backlog drained (hang guard {deadline_s:g} s)",
                drained,
                f"{new_connected} of {m} new clients",
            )
        )
    if ours:
        ctx.report.expect(
            Expectation.at_most(
                "no stampede: peak apply rate within the drain limit", peak, rate + burst, "/s"
            )
        )
    else:
        ctx.report.expect(
            Expectation.equal("no stampede: the AuthServer throttled no apply", throttled, 0)
        )


async def _throttled(ctx: RunContext) -> int:
    metrics = await ctx.env.authserver_metrics()
    return int(metrics.total(APPLY_METRIC, operation="apply", code=THROTTLED_CODE))


async def _probe(ctx: RunContext, probe: Population) -> tuple[int, float]:
    """Ask for a token for a client that never had one: the outage must show as "not
    now" (our AppServer: 503 with Retry-After).  Through the adapter, ours or yours."""
    env = ctx.env
    adapter = env.target.adapter if env.target is not None else builtin_adapter()
    try:
        await ask_token(
            env.http,
            adapter,
            env.endpoints.appserver_url,
            probe.identities[0],
            now_ms=env.clock.now_ms,
        )
    except Unavailable as exc:
        return exc.status or 0, exc.retry_after
    except Exception as exc:  # any other answer is a finding, not a crash
        return int(getattr(exc, "status", None) or 0), 0.0
    return 200, 0.0
