"""Running a scenario: the registry, the parameters, the per-run context.

A scenario is a module with::

    NAME = "reconnect-storm"
    DEFAULT_CLIENTS = 200
    CLOCK = "system" | "manual" | "scaled"        # what its embedded stack runs on
    def stack_config(params) -> StackConfig       # the stack it starts (scenario_stack())
    async def run(ctx: RunContext) -> None       # fills ctx.report

(Its one-line description, for ``--help``, is in :data:`DESCRIPTIONS`.)

:func:`run_scenario` builds the environment (embedded unless endpoints are given),
samples the timeline (connected clients from the scenario, token requests and
upstream applies from the parts' metrics) and turns a crash into a failed report with
``error`` set, so a CI consumer always gets a document.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import logging
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

from .env import (
    Endpoints,
    Environment,
    embedded_environment,
    external_environment,
    token_requests_of,
)
from .errors import ScenarioError
from .progress import NullProgress, ProgressSink
from .report import ScenarioReport
from .timeline import TimelineSampler

__all__ = [
    "DESCRIPTIONS",
    "SCENARIOS",
    "RunContext",
    "ScenarioParams",
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
    "expiry-refresh": "short TTLs on a scaled clock: refresh in session or by reconnect",
    "revocation": "revoked clients disconnected within 1 s, old tokens refused",
}


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

    def mark(self, label: str) -> None:
        self.timeline.mark(label)

    def figure(self, name: str, value: float) -> None:
        self.report.figures[name] = value

    def option(self, name: str, default: Any) -> Any:
        return self.params.option(name, default)


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


def _clock_for(module: ModuleType, params: ScenarioParams) -> Clock:
    if module.CLOCK == "manual":
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
) -> ScenarioReport:
    """Run one scenario and return its report (never raises for a scenario failure).
    Cancelled, it stops the scenario, tears its environment down and returns the report
    marked ``interrupted`` (the command line's Ctrl-C)."""
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
    # Clients, the raw baseline and (in-process) the broker's side: ~3 sockets a client.
    raise_nofile_limit(3 * clients + 1024)
    t0 = time.monotonic()
    try:
        if endpoints is None:
            config: StackConfig = module.stack_config(params)
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
                env_cm: Any = subprocess_environment(config, scale=scale)
                report.params["stack"] = "embedded (child process)"
            else:
                env_cm = embedded_environment(config, clock=clock or _clock_for(module, params))
        else:
            env_cm = external_environment(endpoints, clock=clock)
        async with env_cm as env:
            report.params["clock"] = env.clock.mode
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
