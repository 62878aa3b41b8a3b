"""reconnect-storm: N connected clients lose the broker at once and come back (SPEC §7).

1. baseline -- the raw CONNECT/CONNACK rate of the same broker, measured first in the
   same run: N plain connections with one valid token through the SDK's own transport
   (:mod:`scenarios.connect_rate`);
2. setup -- N SDK clients, each with its own AppServer account, get a token, persist it
   and connect;
3. storm -- every client loses the broker at once (``kick_all()``, or a broker restart
   with ``--set method=restart``) and comes back with its persisted token, after a
   first retry drawn with full jitter over a window sized to the fleet
   (``jitter_factor * N / raw rate``: the broker's capacity, as an operator would size it).

Both the baseline and the storm run ``rounds`` times (default 3); the expectation
compares medians (one sample of a rate on a shared machine is noise; all rounds are
reported).

Figures: ``clients``, ``rounds``, ``raw_connect_rate`` (median; ``_min``/``_max``),
``reconnect_seconds`` (loss → last client back, median; ``_min``/``_max``),
``budget_seconds``, ``connect_latency_p50/p95/p99/max_ms``
(TCP open → CONNACK, reconnects only), ``appserver_requests_during_storm``,
``upstream_applies_during_storm``, ``auth_failures`` (CONNACK 4/5 and refused token
requests), ``connect_failures``, ``reconnect_attempts``, retry spread
(``retry_stdev_s``, ``retry_range_s``, ``retry_max_bucket_share``), ``kick_seconds``,
``client_cpu_seconds`` and ``stack_cpu_seconds`` (CPU used by each side during a storm:
the side whose CPU is close to ``reconnect_seconds`` was the bottleneck), and
``raw_client_cpu_seconds`` / ``raw_stack_cpu_seconds`` (the same for one baseline round).

Expectations (the verdict, all behaviour: docs/scenarios.md "Verdicts"): every client
came back in every round (``deadline_s`` is a hang guard); the clients asked the
AppServer 0 times and the AuthServer saw 0 applies (the persisted tokens are valid);
0 auth failures; the clients drew their first retry with full jitter over the window
(the spread of the delays they chose: ``retry_delay_stdev_ratio``, 1 for a uniform
draw, 0 in lockstep, must be at least 0.5).  Observed, not judged: all back within
``1.3 * N / raw_connect_rate`` (+ ``slack_s``) -- a ratio that a loaded machine moves
by more than its margin (measured in docs/scenarios.md).

Defects (``--set defect=``): ``no-token-persistence`` (every reconnect asks the
AppServer), ``no-retry-jitter`` (the first retry after the same fixed delay).

Beside the user's AppServer (``--adapter FILE --appserver URL``) the clients are the
adapter's ``[clients]`` and the raw baseline connects with one token asked through it;
``appserver_requests_during_storm`` (our AppServer's metrics) is not measured then, the
clients' own asks are.

Options (``--set``): ``method=kick|restart``, ``jitter_factor=0.8``, ``budget_factor=1.3``,
``slack_s=0``, ``raw_concurrency=64``, ``subscribe=false``, ``deadline_s=120``,
``rounds=3``, ``stack_process=true``, ``stable_session_s=1`` (the SDK's "a session that
held" time: each round waits until every session has held that long, so that every
round is a first loss, not a flapping broker).
"""

from __future__ import annotations

import asyncio
import gc
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

from sim.customer.adapter import ask_token
from sim.customer.client.events import EventKind
from sim.customer.client.policy import Backoff
from sim.harness.stack import StackConfig

from .base import RunContext, ScenarioParams
from .connect_rate import measure_connect_rate
from .env import BULK_APPLIES, UNTHROTTLED, scenario_stack
from .errors import Unsupported
from .population import Population
from .report import Expectation, Observation, latency_figures, spread_figures

NAME = "reconnect-storm"
DEFAULT_CLIENTS = 1000
CLOCK = "system"
ADAPTER = True
#: The least spread of the clients' first-retry delays, as a share of full jitter's
#: (a uniform draw over the window has stdev window / sqrt(12)).  Lockstep is 0.
MIN_JITTER_RATIO = 0.5
#: Fewer retries than this say little about a spread: the check is "not measured" then.
#: (With 20 uniform draws the ratio falls under 0.5 with probability 1.5e-5; with 10,
#: 5e-3; with 5, 8 %: simulated, docs/scenarios.md.)
MIN_JITTER_SAMPLES = 20
#: The stack runs in a child process (``--set stack_process=false`` keeps it in this
#: one): N reconnecting clients and the broker each get a core, as in real life.
STACK_PROCESS = True


def stack_config(params: ScenarioParams) -> StackConfig:
    # The AppServer's apply rate limit (50/s by default) protects a recovering
    # AuthServer; here it would only make the fleet's first start last N / 50 s.
    return (
        scenario_stack(seed=params.seed)
        .with_appserver(**UNTHROTTLED)
        .with_authserver(rate_limits=BULK_APPLIES)
    )


def connect_latencies(events: list[Any], t0: float) -> list[float]:
    """Seconds from each CONNECTING to the CONNECTED that followed it (same client),
    for attempts started at or after ``t0``."""
    opened: dict[int, float] = {}
    out: list[float] = []
    for e in events:
        if e.t < t0:
            continue
        if e.kind == EventKind.CONNECTING:
            opened[e.index] = e.t
        elif e.kind == EventKind.CONNECTED and e.index in opened:
            out.append(e.t - opened.pop(e.index))
        elif e.kind in (EventKind.CONNECT_FAILED, EventKind.NOT_AUTHORIZED):
            opened.pop(e.index, None)
    return out


@dataclass
class _Round:
    t0: float
    kick_s: float
    back: dict[int, float]
    reconnect_s: float
    latencies: list[float]
    first_attempts: list[float]
    #: the first backoff delay each client drew after the loss (its own decision)
    retry_delays: list[float]
    client_cpu_s: float
    stack_cpu_s: float | None


async def run(ctx: RunContext) -> None:
    n = ctx.clients
    env = ctx.env
    method = str(ctx.option("method", "kick"))
    if method not in ("kick", "restart"):
        raise ValueError("method must be kick or restart")
    jitter_factor = float(ctx.option("jitter_factor", 0.8))
    budget_factor = float(ctx.option("budget_factor", 1.3))
    slack_s = float(ctx.option("slack_s", 0.0))
    deadline_s = float(ctx.option("deadline_s", 120.0))
    rounds = int(ctx.option("rounds", 3))
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    stable_s = float(ctx.option("stable_session_s", 1.0))
    if not stable_s >= 0:
        raise ValueError("stable_session_s must be >= 0")
    if not env.embedded:
        # Fail before the baseline, not after minutes of setup.
        raise Unsupported(
            "the storm needs the embedded stack (the broker must drop every client at once); "
            "run without --authserver/--appserver/--broker"
        )

    persist = ctx.defect != "no-token-persistence"
    jitter = ctx.defect != "no-retry-jitter"
    pop = Population(
        env,
        n,
        ctx.workdir / "client-tokens",
        group=f"storm{ctx.run_id}",
        subscribe=bool(ctx.option("subscribe", False)),
        seed=ctx.params.seed,
        stable_session_s=stable_s,
        persist=persist,
    )
    try:
        ctx.report.notes.extend(await pop.create_accounts())
        baseline_token = None
        if env.target is not None:
            creds = await ask_token(
                env.http,
                env.target.adapter,
                env.target.url,
                pop.identities[0],
                now_ms=env.clock.now_ms,
            )
            baseline_token = (creds.username, creds.password)

        # 1. baseline, first, same broker, same client library; the median of the rounds
        #    (the machine may be shared: one round is one sample of a noisy quantity).
        raws = []
        raw_cpu: list[float] = []
        raw_stack_cpu: list[float] = []
        for k in range(rounds):
            ctx.progress.phase(f"baseline {k + 1}/{rounds}: raw connects", n)
            ctx.mark(f"baseline {k + 1}" if rounds > 1 else "baseline")
            cpu0, stack_cpu0 = time.process_time(), env.stack_cpu_seconds()
            raw = await measure_connect_rate(
                env,
                n,
                concurrency=int(ctx.option("raw_concurrency", 64)),
                client_prefix=f"GID_rawrate@@@r{k}-",
                on_progress=ctx.progress.update,
                credentials=baseline_token,
            )
            if raw.connects == 0 or raw.rate <= 0:
                raise RuntimeError("the baseline could not connect a single client")
            raws.append(raw)
            raw_cpu.append(time.process_time() - cpu0)
            stack_cpu1 = env.stack_cpu_seconds()
            if stack_cpu0 is not None and stack_cpu1 is not None:
                raw_stack_cpu.append(stack_cpu1 - stack_cpu0)
        rate = statistics.median(r.rate for r in raws)
        ctx.figure("clients", n)
        ctx.figure("rounds", rounds)
        ctx.figure("raw_connect_rate", round(rate, 1))
        ctx.figure("raw_connect_rate_min", round(min(r.rate for r in raws), 1))
        ctx.figure("raw_connect_rate_max", round(max(r.rate for r in raws), 1))
        ctx.figure("raw_connect_failures", sum(r.failures for r in raws))
        window = max(0.001, jitter_factor * n / rate)
        ctx.figure("jitter_window_seconds", round(window, 4))

        # 2. setup: N SDK clients with persisted tokens.
        pop.backoff = Backoff(base=window, cap=max(window * 8, 5.0), jitter=jitter)
        ctx.connected = pop.connected
        done: list[_Round] = []
        ctx.progress.phase("setup: clients connect", n)
        ctx.mark("setup")
        await pop.start(on_connected=ctx.progress.update)

        before_app = await env.appserver_token_requests()
        before_up = await env.upstream_applies()
        before = pop.counters()

        # 3. the storms.
        for k in range(rounds):
            if done and done[-1].back:
                # Every round is a first loss: each session must have held for the SDK's
                # stable time, or the clients would treat this loss as flapping and draw
                # their retry over 2x, 4x ... the window (their backoff's next steps).
                settle = max(done[-1].back.values()) + stable_s + 0.05 - time.monotonic()
                if settle > 0:
                    await asyncio.sleep(settle)
            ctx.progress.phase(f"storm {k + 1}/{rounds}: clients back", n)
            await ctx.timeline.sample()  # the state right before the loss, on the chart
            # N simulated devices share this process's heap (real devices do not): move
            # the live fleet out of the cyclic collector's way before the storm, or its
            # full collections scan every client object at every generation-2 pass
            # (0.3-0.5 s of this process's CPU per storm, measured).  Only here: the
            # stack is the system under test and is measured as it is.  Undone at teardown.
            gc.freeze()
            cpu0, stack_cpu0 = time.process_time(), env.stack_cpu_seconds()
            t0 = time.monotonic()
            pop.arm(t0)
            ctx.mark("kick_all" if method == "kick" else "broker restart")
            if method == "kick":
                await env.kick_all()
            else:
                await env.restart("broker")
            kick_s = time.monotonic() - t0
            all_back = await _wait_back(pop, t0, n, deadline_s, ctx.progress.update)
            cpu1, stack_cpu1 = time.process_time(), env.stack_cpu_seconds()
            ctx.mark("all back" if all_back else "deadline")
            await ctx.timeline.sample()
            back = dict(pop.back)  # first CONNECTED per client after the loss
            events = pop.events_since(t0)
            firsts: dict[int, float] = {}
            delays: dict[int, float] = {}
            for e in events:
                if e.kind == EventKind.CONNECTING and e.index not in firsts:
                    firsts[e.index] = e.t - t0
                elif e.kind == EventKind.BACKOFF and e.index not in delays:
                    delays[e.index] = float(e.detail.get("delay", 0.0))
            done.append(
                _Round(
                    t0,
                    kick_s,
                    back,
                    (max(back.values()) - t0) if back else float("inf"),
                    connect_latencies(events, t0),
                    list(firsts.values()),
                    list(delays.values()),
                    cpu1 - cpu0,
                    None if stack_cpu0 is None or stack_cpu1 is None else stack_cpu1 - stack_cpu0,
                )
            )
            if not all_back:
                break

        after_app = await env.appserver_token_requests()
        after_up = await env.upstream_applies()
        after = pop.counters()
    finally:
        ctx.progress.phase("teardown", None)
        await pop.close()
        gc.unfreeze()

    budget = budget_factor * n / rate + slack_s
    asks = after.token_requests - before.token_requests
    upstream = int(after_up - before_up)
    auth_failures = (after.not_authorized - before.not_authorized) + (
        after.token_request_failures - before.token_request_failures
    )
    times = [r.reconnect_s for r in done]
    reconnect_s = statistics.median(times)
    back_all = min(len(r.back) for r in done)
    ctx.figure("clients_back", back_all)
    ctx.figure("reconnect_seconds", round(reconnect_s, 4) if math.isfinite(reconnect_s) else -1)
    if all(math.isfinite(t) for t in times):
        ctx.figure("reconnect_seconds_min", round(min(times), 4))
        ctx.figure("reconnect_seconds_max", round(max(times), 4))
    ctx.figure("budget_seconds", round(budget, 4))
    ctx.figure("kick_seconds", round(statistics.median(r.kick_s for r in done), 4))
    # Who was busy: the clients' process and (child stack) the stack's, median per storm.
    # CPU close to reconnect_seconds means that side was the bottleneck.
    ctx.figure("client_cpu_seconds", round(statistics.median(r.client_cpu_s for r in done), 3))
    stack_cpu = [r.stack_cpu_s for r in done if r.stack_cpu_s is not None]
    if stack_cpu:
        ctx.figure("stack_cpu_seconds", round(statistics.median(stack_cpu), 3))
    # The same for the baseline (its connects include closing them again): per client,
    # storm vs baseline CPU says which side's connect path costs what.
    ctx.figure("raw_client_cpu_seconds", round(statistics.median(raw_cpu), 3))
    if raw_stack_cpu:
        ctx.figure("raw_stack_cpu_seconds", round(statistics.median(raw_stack_cpu), 3))
    ctx.report.figures.update(
        latency_figures("connect_latency", [x for r in done for x in r.latencies])
    )
    if after_app is not None and before_app is not None:
        ctx.figure("appserver_requests_during_storm", int(after_app - before_app))
    else:
        ctx.report.skip(
            "appserver_requests_during_storm",
            "your AppServer has no metrics of ours; the clients' own asks are counted "
            "(sdk_token_requests_during_storm)",
        )
    ctx.figure("sdk_token_requests_during_storm", asks)
    ctx.figure("upstream_applies_during_storm", upstream)
    ctx.figure("auth_failures", auth_failures)
    ctx.figure("connect_failures", after.connect_failures - before.connect_failures)
    ctx.figure("reconnect_attempts", after.connect_attempts - before.connect_attempts)
    # Retry spread of the first storm (later ones look the same), as observed...
    ctx.report.figures.update(spread_figures("retry", done[0].first_attempts))
    # ... and as the clients drew it: the spread of their first backoff delays against
    # full jitter's (uniform over the window: stdev = window / sqrt(12)).  What the
    # clients decided, not when a loaded machine got round to it.
    drawn = [d for r in done for d in r.retry_delays]
    ratio = statistics.pstdev(drawn) / (window / math.sqrt(12)) if len(drawn) > 1 else 0.0
    ctx.figure("retry_delay_stdev_ratio", round(ratio, 4))

    ctx.report.expect(
        Expectation.equal(
            f"every client came back, every round (hang guard {deadline_s:g} s)", back_all, n
        )
    )
    ctx.report.expect(Expectation.equal("no AppServer requests (the clients' asks)", asks, 0))
    ctx.report.expect(Expectation.equal("no upstream applies", upstream, 0))
    ctx.report.expect(Expectation.equal("no auth failures", auth_failures, 0))
    jitter_check = "retries drawn with full jitter over the window (delay spread / uniform's)"
    if len(drawn) >= MIN_JITTER_SAMPLES:
        ctx.report.expect(Expectation.at_least(jitter_check, round(ratio, 3), MIN_JITTER_RATIO))
    else:
        ctx.report.skip(
            jitter_check,
            f"{len(drawn)} retries (clients x rounds): a spread needs {MIN_JITTER_SAMPLES}",
        )
    ctx.report.observe(
        Observation.at_most(
            f"all back within {budget_factor:g} x N / raw connect rate"
            + (f" + {slack_s:g} s" if slack_s else "")
            + (f" (medians of {rounds} rounds)" if rounds > 1 else ""),
            reconnect_s,
            budget,
            "s",
        )
    )
    ctx.figure("reconnect_ratio", round(reconnect_s / (n / rate), 4) if back_all == n else -1)


async def _wait_back(pop: Population, t0: float, n: int, deadline_s: float, progress: Any) -> bool:
    """True once every client has connected again after ``t0`` (event-driven; a side task
    only draws the progress bar)."""
    import asyncio

    async def draw() -> None:
        while True:
            progress(len(pop.back))
            await asyncio.sleep(0.1)

    drawer = asyncio.ensure_future(draw())
    try:
        return await pop.wait_all_back(max(0.0, t0 + deadline_s - time.monotonic()))
    finally:
        drawer.cancel()
        progress(len(pop.back))
