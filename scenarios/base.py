"""Running a scenario: the registry, the parameters, the per-run context.

A scenario is a module with::

    NAME = "reconnect-storm"
    DEFAULT_CLIENTS = 200
    CLOCK = "system" | "manual" | "scaled"        # what its embedded stack runs on
    ADAPTER = True                                # optional: drives any AppServer
    def stack_config(params) -> StackConfig       # the stack it starts (scenario_stack())
    async def run(ctx: RunContext) -> None       # fills ctx.report

(Its one-line description, for ``--help``, is in :data:`DESCRIPTIONS`; its defects in
:data:`DEFECTS`.)

:func:`run_scenario` builds the environment (embedded unless endpoints are given; beside
the user's AppServer with an :class:`~scenarios.env.AppServerTarget`), samples the
timeline (connected clients from the scenario, token requests and upstream applies from
the parts' metrics), reads the broker's fidelity report at the end and turns a crash
into a failed report with ``error`` set, so a CI consumer always gets a document.

A scenario whose CLOCK is ``manual`` runs its embedded stack on a
:class:`~sim.shared.clock.ManualClock` in this process and moves time itself in steps,
each ending when what it woke has run (:meth:`RunContext.elapse`,
:meth:`RunContext.until`): its verdicts then do not depend on the machine's load.  On
external endpoints, or beside the user's AppServer (a process of its own, on its own
time), the same steps wait in real (or the stack's scaled) time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import logging
import math
import random
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from sim.harness.errors import HarnessError
from sim.harness.stack import StackConfig
from sim.shared.clock import Clock, ManualClock, ScaledClock, SystemClock
from sim.shared.exits import CannotRun
from sim.shared.limits import raise_nofile_limit
from sim.shared.waiting import WaitTimeout, wait_until

from .env import (
    AppServerTarget,
    Endpoints,
    Environment,
    embedded_environment,
    external_environment,
    for_target,
    token_requests_of,
)
from .errors import ScenarioError
from .progress import NullProgress, ProgressSink
from .report import ScenarioReport
from .timeline import TimelineSampler

__all__ = [
    "APPSERVER_DEFECTS",
    "DEFECTS",
    "DESCRIPTIONS",
    "SCENARIOS",
    "RunContext",
    "ScenarioParams",
    "check_defect",
    "load_scenario",
    "run_scenario",
]

log = logging.getLogger(__name__)

#: scenario name -> module (imported lazily).
SCENARIOS: dict[str, str] = {
    "reconnect-storm": "scenarios.reconnect_storm",
    "cache-reuse": "scenarios.cache_reuse",
    "outage-recovery": "scenarios.outage_recovery",
    "expiry-refresh": "scenarios.expiry_refresh",
    "revocation": "scenarios.revocation",
}


#: One line each, for ``--help`` (kept here so that help does not import the SDK).
DESCRIPTIONS: dict[str, str] = {
    "reconnect-storm": "N clients lose the broker at once and come back (raw baseline first)",
    "cache-reuse": "client and AppServer restarts reuse persisted and cached tokens",
    "outage-recovery": "AuthServer down: cached clients unaffected, 503s, bounded drain",
    "expiry-refresh": "short TTLs on a manual clock: refresh in session or by reconnect",
    "revocation": "revoked clients disconnected within 1 s, old tokens refused",
}


#: What each scenario exists to catch, as defects a run can put into the system
#: (``--set defect=NAME``).  Each is a switch on the harness's OWN parts for that run --
#: the SDK clients it drives, the configuration it gives the embedded AppServer or broker
#: -- never a default of a part (docs/scenarios.md "Defects").  With one, the scenario
#: must fail and name the expectation that caught it; a test shows each.
DEFECTS: dict[str, dict[str, str]] = {
    "reconnect-storm": {
        "no-token-persistence": "clients keep no token between sessions: every reconnect "
        "asks the AppServer (SDK RefreshPolicy.reuse=False, no token store)",
        "no-retry-jitter": "clients retry after the same fixed delay, so all at once "
        "(SDK Backoff.jitter=False)",
    },
    "cache-reuse": {
        "no-appserver-cache": "the embedded AppServer never reuses a cached token: its "
        "refresh margin sits just under the token TTL, so every ask goes upstream",
        "no-token-persistence": "clients keep no token between restarts: each start asks "
        "the AppServer (SDK RefreshPolicy.reuse=False, no token store)",
    },
    "outage-recovery": {
        "no-stale-fallback": "the embedded AppServer serves no cached token while the "
        "AuthServer fails (AppServerConfig.serve_stale=False)",
        "unbounded-drain": "the embedded AppServer applies upstream as fast as clients ask "
        "once the AuthServer is back (no drain rate limit)",
    },
    "expiry-refresh": {
        "ignore-expire-notice": "clients neither refresh ahead of expiry nor heed "
        "$SYS/tokenExpireNotice: their tokens run out in session (SDK refresh margin 0, "
        "the notice dropped on arrival)",
    },
    "revocation": {
        "broker-ignores-revocations": "the embedded broker skips the revocations of the "
        "AuthServer's feed (BrokerConfig.ignore_revocations)",
    },
}

#: Defects that are switches on OUR AppServer: with the user's AppServer (an adapter)
#: they cannot be injected -- run a broken variant of that AppServer instead.
APPSERVER_DEFECTS = frozenset({"no-appserver-cache", "no-stale-fallback", "unbounded-drain"})


def check_defect(name: str, options: Mapping[str, Any], *, adapter: bool = False) -> None:
    """Refuse a defect the scenario does not have (or cannot inject beside the user's
    AppServer): a ValueError whose message lists the ones it has."""
    defect = options.get("defect")
    if defect in (None, "", "none"):
        return
    known = DEFECTS.get(name, {})
    if defect not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise ValueError(f"{name} has no defect {defect!r}; its defects: {listed}")
    if adapter and defect in APPSERVER_DEFECTS:
        raise ValueError(
            f"the defect {defect} is a switch on our AppServer; with --adapter, run a "
            "variant of your AppServer that has the fault instead"
        )


@dataclass(frozen=True)
class ScenarioParams:
    clients: int | None = None  # None: the scenario's default
    seed: int = 0
    #: Scenario-specific knobs (``--set name=value``), documented per scenario.
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Real-time interval of the timeline samples.
    sample_interval_s: float = 0.2
    #: Where the embedded stack keeps its data (a temporary dir when None).
    data_dir: str | None = None
    #: Time scale of a scaled clock (scenarios whose CLOCK is "scaled"); None: the
    #: scenario's ``DEFAULT_TIME_SCALE``.
    time_scale: float | None = None

    @property
    def defect(self) -> str | None:
        """The defect this run puts into the system (``--set defect=NAME``), if any."""
        value = self.options.get("defect")
        return None if value in (None, "", "none") else str(value)

    def option(self, name: str, default: Any) -> Any:
        value = self.options.get(name, default)
        if isinstance(default, bool) and isinstance(value, str):
            low = value.strip().lower()
            if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(f"option {name} must be a boolean, got {value!r}")
            return low in ("1", "true", "yes", "on")
        if isinstance(default, int | float) and not isinstance(default, bool):
            try:
                return type(default)(value)
            except (TypeError, ValueError):
                raise ValueError(f"option {name} must be a number, got {value!r}") from None
        return value


class RunContext:
    """What a scenario's ``run`` gets: the environment, its parameters, the report to
    fill, the timeline to mark, a progress sink and a seeded random generator."""

    def __init__(
        self,
        env: Environment,
        params: ScenarioParams,
        clients: int,
        report: ScenarioReport,
        timeline: TimelineSampler,
        progress: ProgressSink,
    ):
        self.env = env
        self.params = params
        self.clients = clients
        self.report = report
        self.timeline = timeline
        self.progress = progress
        self.rng = random.Random(params.seed)
        #: A directory of this run's own (client token stores, ...).
        self.workdir: Path = Path(".")
        #: Part of every identity the run creates, so that runs against one external
        #: stack never find each other's accounts and cached tokens.
        self.run_id = secrets.token_hex(3)
        #: Set by the scenario: how many of its clients are connected right now.
        self.connected: Callable[[], int] = lambda: 0
        #: The defect this run puts into the system (:data:`DEFECTS`), if any.
        self.defect = params.defect
        self._sampled_at = -math.inf

    def mark(self, label: str) -> None:
        self.timeline.mark(label)

    def figure(self, name: str, value: float) -> None:
        self.report.figures[name] = value

    def option(self, name: str, default: Any) -> Any:
        return self.params.option(name, default)

    # -- time: steps of a manual clock, or real waits ----------------------------------
    async def _step(self, seconds: float) -> None:
        await self.env.advance(seconds)
        now = self.env.clock.now()
        if now - self._sampled_at >= self.params.sample_interval_s:
            self._sampled_at = now
            await self.timeline.sample()

    async def elapse(self, seconds: float, *, step: float = 0.1) -> None:
        """Let ``seconds`` of the stack's time pass: on a manual clock in steps of
        ``step``, each ending once what it woke has run; otherwise by sleeping."""
        if not self.env.manual:
            await self.env.clock.sleep(seconds)
            return
        end = self.env.clock.now() + seconds
        while (left := end - self.env.clock.now()) > 1e-9:
            await self._step(min(step, left))

    async def until(
        self, predicate: Callable[[], bool], *, within: float, step: float = 0.1, what: str
    ) -> bool:
        """Whether ``predicate`` came true within ``within`` seconds of the stack's time:
        on a manual clock checked after each step (a behaviour, not a race with the
        machine's load); otherwise polled in real time (scaled: ``within / scale``)."""
        if not self.env.manual:
            scale = float(getattr(self.env.clock, "scale", 1.0))
            try:
                await wait_until(predicate, timeout=within / scale, what=what)
            except WaitTimeout:
                return predicate()
            return True
        assert self.env.stack is not None
        await self.env.stack.idle()
        end = self.env.clock.now() + within
        while not predicate():
            left = end - self.env.clock.now()
            if left <= 1e-9:
                return False
            await self._step(min(step, left))
        return True


def _takes_adapter(name: str) -> bool:
    return bool(getattr(load_scenario(name), "ADAPTER", False))


def load_scenario(name: str) -> ModuleType:
    try:
        module_name = SCENARIOS[name]
    except KeyError:
        raise ValueError(
            f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}"
        ) from None
    return importlib.import_module(module_name)


def _scale_for(module: ModuleType, params: ScenarioParams) -> float:
    if params.time_scale is not None:
        if not params.time_scale > 0:
            raise ValueError("--time-scale must be > 0")
        return float(params.time_scale)
    return float(getattr(module, "DEFAULT_TIME_SCALE", 60.0))


def _clock_for(module: ModuleType, params: ScenarioParams, *, real: bool = False) -> Clock:
    """The embedded stack's clock; ``real``: beside the user's AppServer, which keeps
    its own time (a manual clock cannot move it).  ``--time-scale`` turns a manual-clock
    scenario into a scaled-clock one (load then moves the verdict: docs/scenarios.md)."""
    if module.CLOCK == "manual" and params.time_scale is not None and not real:
        return ScaledClock(_scale_for(module, params))
    if module.CLOCK == "manual" and not real:
        return ManualClock(start=time.time())
    if module.CLOCK == "scaled":
        return ScaledClock(_scale_for(module, params))
    return SystemClock()


async def run_scenario(
    name: str,
    params: ScenarioParams | None = None,
    *,
    endpoints: Endpoints | None = None,
    progress: ProgressSink | None = None,
    clock: Clock | None = None,
    target: AppServerTarget | None = None,
) -> ScenarioReport:
    """Run one scenario and return its report (never raises for a scenario failure).
    Cancelled, it stops the scenario, tears its environment down and returns the report
    marked ``interrupted`` (the command line's Ctrl-C).

    ``target``: drive the user's AppServer through its adapter instead of ours (the
    scenarios whose module says ``ADAPTER = True``)."""
    params = params or ScenarioParams()
    progress = progress or NullProgress()
    module = load_scenario(name)
    clients = int(params.clients if params.clients is not None else module.DEFAULT_CLIENTS)
    if clients < 1:
        raise ValueError("--clients must be at least 1")
    report = ScenarioReport(
        scenario=module.NAME,
        started_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        params={"clients": clients, "seed": params.seed, **dict(params.options)},
    )
    report.params["stack"] = "external" if endpoints else "embedded"
    report.params["appserver"] = "reference" if target is None else target.describe()
    if params.defect is not None:
        what = DEFECTS.get(module.NAME, {}).get(params.defect, "unknown")
        report.notes.append(
            f"DEFECT INJECTED (a switch on the harness's own parts): {params.defect}: {what}"
        )
    # Clients, the raw baseline and (in-process) the broker's side: ~3 sockets a client.
    raise_nofile_limit(3 * clients + 1024)
    t0 = time.monotonic()
    try:
        check_defect(module.NAME, params.options, adapter=target is not None)
        if target is not None and not getattr(module, "ADAPTER", False):
            raise ValueError(
                f"{module.NAME} drives our AppServer only; --adapter is for "
                + ", ".join(sorted(n for n in SCENARIOS if _takes_adapter(n)))
            )
        if endpoints is None:
            config: StackConfig = module.stack_config(params)
            config = for_target(config, target, int(params.option("authserver_port", 18080)))
            if params.data_dir:
                config = replace(config, data_dir=Path(params.data_dir))
            in_child = (
                clock is None
                and module.CLOCK != "manual"
                and bool(params.option("stack_process", getattr(module, "STACK_PROCESS", False)))
            )
            if in_child:
                from .stack_proc import subprocess_environment

                scale = _scale_for(module, params) if module.CLOCK == "scaled" else 1.0
                env_cm: Any = subprocess_environment(config, scale=scale, target=target)
                report.params["stack"] = "embedded (child process)"
            else:
                real = target is not None
                env_cm = embedded_environment(
                    config, clock=clock or _clock_for(module, params, real=real), target=target
                )
        else:
            if target is not None:
                endpoints = replace(endpoints, appserver_url=target.url)
            env_cm = external_environment(
                endpoints,
                clock=clock,
                target=target,
                fidelity_url=params.options.get("broker_fidelity_url"),
            )
        async with env_cm as env:
            report.params["clock"] = env.clock.mode
            report.params["timeline_clock"] = "virtual" if env.manual else "real"
            ctx_box: list[RunContext] = []

            async def probe() -> dict[str, float]:
                values: dict[str, float] = {}
                if ctx_box:
                    values["connected"] = float(ctx_box[0].connected())
                got: tuple[Any, Any] = await asyncio.gather(
                    env.appserver_metrics(), env.upstream_applies(), return_exceptions=True
                )
                a, b = got
                if not isinstance(a, BaseException):
                    values["token_requests"] = token_requests_of(a)
                if not isinstance(b, BaseException):
                    values["applies"] = float(b)
                return values

            if env.manual:
                # Virtual seconds on the chart, sampled by the run's own steps.
                sampler = TimelineSampler(
                    probe,
                    interval_s=params.sample_interval_s,
                    monotonic=env.clock.now,
                    periodic=False,
                )
            else:
                sampler = TimelineSampler(probe, interval_s=params.sample_interval_s)
            ctx = RunContext(env, params, clients, report, sampler, progress)
            ctx_box.append(ctx)
            try:
                with tempfile.TemporaryDirectory(prefix=f"scenario-{module.NAME}-") as tmp:
                    ctx.workdir = Path(tmp)
                    async with sampler:
                        await module.run(ctx)
            finally:  # an interrupted or failed run keeps what it sampled
                report.timeline = sorted(sampler.points, key=lambda p: p.t)
                report.marks = sampler.marks
                report.fidelity = await env.fidelity()
    except (ScenarioError, HarnessError, CannotRun) as exc:
        # The stack or the endpoints would not serve the run (down, refused, a lever
        # they lack): the message says it; the trace is for --log-level DEBUG.
        log.debug("scenario %s could not run", name, exc_info=True)
        report.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        # A crash is a bug of the scenario or of the stack: keep the trace in the log.
        log.error("scenario %s crashed", name, exc_info=True)
        report.error = f"{type(exc).__name__}: {exc}"
    except asyncio.CancelledError:
        # Ctrl-C in the command line (or a caller's cancel): the environment above has
        # been torn down on the way here; the report is still the caller's to write.
        report.error = "interrupted before the scenario finished"
        report.interrupted = True
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
    finally:
        progress.close()
        report.duration_s = time.monotonic() - t0
    return report
