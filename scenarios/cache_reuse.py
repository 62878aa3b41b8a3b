"""cache-reuse: restarts of clients and of the AppServer reuse tokens (SPEC §7).

Phases, each a full restart of N clients, counted from the AuthServer's and the
AppServer's own metrics:

0. ``first_start`` -- fresh clients, empty stores: N AppServer requests, N upstream
   applies (one per account/key);
1. ``client_restart`` -- the clients restart with their persisted tokens: expect 0
   AppServer requests and 0 upstream applies;
2. ``empty_stores`` -- the clients restart with wiped stores: the AppServer answers from
   its cache: N requests, 0 upstream applies;
3. ``appserver_restart`` -- the AppServer restarts (its cache is SQLite), the clients
   restart with wiped stores again: 0 upstream applies.

Figures per phase: ``<phase>_upstream_applies`` (the AuthServer's count),
``<phase>_client_token_requests`` (what the clients asked), ``<phase>_appserver_requests``
(our AppServer's own count; not measured beside yours), ``<phase>_tokens_from_store``,
``<phase>_connected``, ``<phase>_seconds``.  Options: ``concurrency=100``.

Verdict (behaviour only): N applies in the first start, 0 in every later phase; every
client connected in every phase; 0 token requests and N tokens from the store on a
plain client restart.

Defects (``--set defect=``): ``no-appserver-cache`` (the embedded AppServer renews every
cached token at every ask: its refresh margin just under the TTL), and
``no-token-persistence`` (clients keep no token between restarts).

Beside the user's AppServer (``--adapter``), the ``appserver_restart`` phase runs the
command of ``--set appserver_restart_cmd``; without one it is not measured.
"""

from __future__ import annotations

import time

from sim.harness.stack import StackConfig

from .base import RunContext, ScenarioParams
from .env import BULK_APPLIES, UNTHROTTLED, scenario_stack
from .errors import Unsupported
from .population import Population
from .report import Expectation

NAME = "cache-reuse"
DEFAULT_CLIENTS = 200
CLOCK = "system"
ADAPTER = True

PHASES = ("first_start", "client_restart", "empty_stores", "appserver_restart")


def stack_config(params: ScenarioParams) -> StackConfig:
    # The AppServer's apply rate limit (50/s by default) protects a recovering
    # AuthServer; here it would only make the fleet's first start last N / 50 s.
    config = (
        scenario_stack(seed=params.seed)
        .with_appserver(**UNTHROTTLED)
        .with_authserver(rate_limits=BULK_APPLIES)
    )
    if params.defect == "no-appserver-cache":
        # A cached token is handed out again only while it has more life than the
        # refresh margin: just under the TTL, no token is ever fresh enough to reuse.
        ttl = config.appserver.token_ttl_s
        config = config.with_appserver(refresh_margin_s=ttl - 0.01)
    return config


async def run(ctx: RunContext) -> None:
    n, env = ctx.clients, ctx.env
    concurrency = int(ctx.option("concurrency", 100))
    pop = Population(
        env,
        n,
        ctx.workdir / "client-tokens",
        group=f"cache{ctx.run_id}",
        seed=ctx.params.seed,
        persist=ctx.defect != "no-token-persistence",
    )
    ctx.connected = pop.connected
    ctx.figure("clients", n)
    skipped: dict[str, str] = {}
    try:
        ctx.report.notes.extend(await pop.create_accounts())
        for phase in PHASES:
            if phase in ("empty_stores", "appserver_restart"):
                pop.wipe_stores()
            if phase == "appserver_restart":
                try:
                    await env.restart("appserver")
                except Unsupported as exc:
                    skipped[phase] = str(exc)
                    continue
            ctx.progress.phase(phase.replace("_", " "), n)
            ctx.mark(phase)
            before_up = await env.upstream_applies()
            before_app = await env.appserver_token_requests()
            before = pop.counters()
            t0 = time.monotonic()
            await pop.start(concurrency=concurrency, on_connected=ctx.progress.update)
            seconds = time.monotonic() - t0
            after = pop.counters()
            after_app = await env.appserver_token_requests()
            ctx.figure(f"{phase}_upstream_applies", int(await env.upstream_applies() - before_up))
            ctx.figure(
                f"{phase}_client_token_requests", after.token_requests - before.token_requests
            )
            if after_app is not None and before_app is not None:
                # A restarted AppServer counts from zero again.
                since = 0 if phase == "appserver_restart" else before_app
                ctx.figure(f"{phase}_appserver_requests", int(after_app - since))
            ctx.figure(
                f"{phase}_tokens_from_store", after.tokens_from_store - before.tokens_from_store
            )
            ctx.figure(f"{phase}_connected", pop.connected())
            ctx.figure(f"{phase}_seconds", round(seconds, 3))
            await pop.stop()
    finally:
        await pop.close()

    f = ctx.report.figures
    if not env.our_appserver:
        ctx.report.skip(
            "<phase>_appserver_requests",
            "your AppServer has no metrics of ours; the clients' own asks are counted "
            "(<phase>_client_token_requests)",
        )
    ctx.report.expect(
        Expectation.equal(
            "first start applies once per client", f["first_start_upstream_applies"], n
        )
    )
    for phase in PHASES:
        if phase in skipped:
            ctx.report.skip(f"{phase}: every expectation", skipped[phase])
            continue
        ctx.report.expect(
            Expectation.equal(f"{phase}: every client connected", f[f"{phase}_connected"], n)
        )
        if phase != "first_start":
            ctx.report.expect(
                Expectation.equal(
                    f"{phase}: no upstream applies", f[f"{phase}_upstream_applies"], 0
                )
            )
    ctx.report.expect(
        Expectation.equal(
            "client restart: no token requests to the AppServer",
            f["client_restart_client_token_requests"],
            0,
        )
    )
    ctx.report.expect(
        Expectation.equal(
            "client restart: every token from the store", f["client_restart_tokens_from_store"], n
        )
    )
