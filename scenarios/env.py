"""Where a scenario runs: the one stack (:mod:`sim.harness.stack`) in this process or in
a child process (:mod:`scenarios.stack_proc`), or endpoints given on the command line.

:class:`Environment` is everything a scenario may touch besides its own clients: the
three endpoints, the clock, the admin client on the parts (:mod:`sim.harness.admin`:
metrics, faults, accounts, the clock) and the levers only a stack the run started has
(:class:`Levers`: kick every broker client, restart a part on its port and data dir).
On external endpoints those levers raise :class:`~scenarios.errors.Unsupported`; the
scenario then says which figure it could not measure.

The AppServer is ours (the reference AppServer, its admin API and metrics) unless an
:class:`AppServerTarget` is given: the user's AppServer, asked through its adapter
(docs/your-appserver.md), beside the mock AuthServer and broker the harness started or
was given.  Its accounts are the adapter's ``[clients]``; it has no metrics of ours (the
figures that need them are "not measured"), and it restarts only by the command the
user gives (``--set appserver_restart_cmd=CMD``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from mock_authserver.ratelimit import RateLimits
from sim.customer.adapter import Adapter
from sim.harness.admin import AdminClient
from sim.harness.errors import AdminError, AdminRefused
from sim.harness.stack import Part, StackConfig, StackHandle, run_stack
from sim.shared.clock import Clock, ManualClock, SystemClock
from sim.shared.promtext import MetricsSnapshot

from .errors import StackUnavailable, Unsupported

__all__ = [
    "APPLY_METRIC",
    "BULK_APPLIES",
    "RESTART_TIMEOUT_S",
    "UNTHROTTLED",
    "AppServerTarget",
    "Endpoints",
    "Environment",
    "Levers",
    "embedded_environment",
    "external_environment",
    "scenario_stack",
    "token_requests_of",
]

#: The AuthServer's request counter (CONTRACTS.md); applies are ``operation="apply"``.
APPLY_METRIC = "mqtt_authserver_requests_total"

#: AppServer settings for scenarios whose fleets start all at once (not the subject):
#: ``config.with_appserver(**UNTHROTTLED)``.
UNTHROTTLED: Mapping[str, Any] = {"drain_rate_per_s": 1_000_000.0, "drain_burst": 1_000_000}
#: ... and the AuthServer's side of it: a fleet's first start is one apply per client,
#: past the provider's legacy apply limit (1,000/s, SPEC §3b) for the big sizes:
#: ``config.with_authserver(rate_limits=BULK_APPLIES)``.
BULK_APPLIES = RateLimits().with_overrides({"legacy_apply": "off"})


def scenario_stack(*, seed: int | None = None) -> StackConfig:
    """The stack a scenario starts: free ports, a temporary data dir, no dev client, and
    cheap AppServer password hashes (creating 2,000 simulated accounts at the
    production cost would be the scenario)."""
    return (
        StackConfig(data_dir=None, dev_client=False)
        .with_free_ports()
        .with_appserver(password_hash_cost=4, seed=seed)
    )


#: Real seconds the user's AppServer restart command may take.
RESTART_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class AppServerTarget:
    """The user's AppServer: where it is and how to ask it (its adapter)."""

    url: str
    adapter: Adapter
    #: a shell command that restarts it and returns (``--set appserver_restart_cmd``)
    restart_cmd: str | None = None
    #: the first ``[clients]`` number the run uses (default: the adapter's ``first``)
    first_client: int | None = None

    def __post_init__(self) -> None:
        if self.adapter.clients is None:
            raise ValueError(
                f"the adapter {self.adapter.source} has no [clients]: a scenario needs the "
                "clients that may ask (docs/your-appserver.md)"
            )

    @property
    def first(self) -> int:
        assert self.adapter.clients is not None
        return self.adapter.clients.first if self.first_client is None else self.first_client

    def describe(self) -> str:
        return f"{self.url} through the adapter {self.adapter.name} ({self.adapter.source})"


@dataclass(frozen=True)
class Endpoints:
    authserver_url: str
    appserver_url: str
    broker_url: str  # mqtt://host:port

    @property
    def broker_host(self) -> str:
        return urlsplit(self.broker_url).hostname or "127.0.0.1"

    @property
    def broker_port(self) -> int:
        return urlsplit(self.broker_url).port or 1883


class Levers(Protocol):
    """What only a stack the run started offers."""

    async def kick_all(self) -> int: ...

    async def restart(self, part: Part) -> None: ...

    def cpu_seconds(self) -> float | None:
        """CPU seconds the stack's own process used so far, when it is not this one."""
        ...

    async def fidelity(self) -> dict[str, Any]:
        """The broker's fidelity report (docs/fidelity.md) as JSON."""
        ...


class _InProcess:
    """The levers of a stack in this process."""

    def __init__(self, stack: StackHandle):
        self.stack = stack

    async def kick_all(self) -> int:
        return await self.stack.kick_all()

    async def restart(self, part: Part) -> None:
        await self.stack.restart(part)

    def cpu_seconds(self) -> float | None:
        return None  # the stack's CPU is this process's

    async def fidelity(self) -> dict[str, Any]:
        if self.stack.broker is None:
            raise StackUnavailable("the broker is not running")
        return dict(self.stack.broker.fidelity().to_json())


class Environment:
    def __init__(
        self,
        endpoints: Endpoints,
        clock: Clock,
        admin: AdminClient,
        *,
        levers: Levers | None = None,
        stack: StackHandle | None = None,
        target: AppServerTarget | None = None,
        fidelity_url: str | None = None,
    ):
        self.endpoints = endpoints
        self.clock = clock
        self.admin = admin
        #: One HTTP session for the parts' public APIs too (the AppServer's /v1/tokens).
        self.http = admin.http
        self._levers = levers
        #: The stack when it runs in this process (its handles, idle(), wait_feed()).
        self.stack = stack
        #: The user's AppServer (asked through its adapter); None: ours.
        self.target = target
        #: An external broker's ``GET /fidelity`` (its metrics port), when given.
        self.fidelity_url = fidelity_url

    @property
    def our_appserver(self) -> bool:
        """Whether the AppServer is the reference one (admin API, metrics)."""
        return self.target is None

    @property
    def manual(self) -> bool:
        """Whether time moves only when the run advances it (the stack in this process)."""
        return isinstance(self.clock, ManualClock)

    @property
    def levers(self) -> Levers | None:
        """The levers of a stack this run started; None on external endpoints."""
        return self._levers

    @property
    def embedded(self) -> bool:
        """Whether the run started the stack (in this process or a child)."""
        return self._levers is not None

    # ------------------------------------------------------------------ counters
    async def authserver_metrics(self) -> MetricsSnapshot:
        return await self.admin.authserver.metrics()

    async def appserver_metrics(self) -> MetricsSnapshot:
        return await self.admin.appserver.metrics()

    async def upstream_applies(self) -> int:
        """Token applies the AuthServer has answered (any outcome), from its metrics."""
        m = await self.authserver_metrics()
        return int(m.total(APPLY_METRIC, operation="apply"))

    async def upstream_applies_ok(self) -> int:
        m = await self.authserver_metrics()
        return int(m.total(APPLY_METRIC, operation="apply", code="200"))

    async def appserver_token_requests(self) -> int | None:
        """``POST /v1/tokens`` the AppServer has answered (any outcome); None when the
        AppServer is not ours (it has no metrics we can read)."""
        if not self.our_appserver:
            return None
        return int(token_requests_of(await self.appserver_metrics()))

    async def fidelity(self) -> dict[str, Any]:
        """The broker's fidelity report (docs/fidelity.md): ``{"available": true, ...}``
        from a broker the run started (or an external one's ``/fidelity`` when given),
        ``{"available": false, "reason": ...}`` otherwise."""
        try:
            if self._levers is not None:
                doc = await self._levers.fidelity()
            elif self.fidelity_url is not None:
                async with self.http.get(self.fidelity_url) as resp:
                    if resp.status != 200:
                        raise StackUnavailable(f"{self.fidelity_url} answered {resp.status}")
                    doc = dict(await resp.json(content_type=None))
            else:
                return {
                    "available": False,
                    "reason": "an external broker: give its GET /fidelity URL with "
                    "--set broker_fidelity_url=http://HOST:METRICS_PORT/fidelity",
                }
        except (StackUnavailable, aiohttp.ClientError, OSError, ValueError) as exc:
            return {"available": False, "reason": f"the broker's report could not be read: {exc}"}
        return {"available": True, **doc}

    # ------------------------------------------------------------------ time
    async def advance(self, seconds: float) -> None:
        """Advance a manual clock (every part of the stack sees it)."""
        if self.stack is not None and isinstance(self.clock, ManualClock):
            await self.stack.advance(seconds)
            return
        try:
            await self.admin.authserver.advance_clock(seconds)
        except AdminRefused as exc:
            raise Unsupported(f"the stack's clock cannot be advanced: {exc}") from None

    # ------------------------------------------------------------------ levers
    def _need_levers(self, what: str) -> Levers:
        if self._levers is None:
            raise Unsupported(
                f"{what} needs a stack this run started (run without "
                "--authserver/--appserver/--broker)"
            )
        return self._levers

    async def kick_all(self) -> int:
        """Every broker client dropped at once; how many."""
        return await self._need_levers("kicking every broker client").kick_all()

    async def restart(self, part: Part) -> None:
        """Restart a part on its port and data dir; the user's AppServer by its command."""
        if part == "appserver" and self.target is not None:
            await self._restart_target(self.target)
            return
        await self._need_levers(f"restarting the {part}").restart(part)

    @staticmethod
    async def _restart_target(target: AppServerTarget) -> None:
        if target.restart_cmd is None:
            raise Unsupported(
                "restarting your AppServer needs the command that does it: "
                "--set appserver_restart_cmd='CMD' (it must return once the old process "
                "is gone)"
            )
        proc = await asyncio.create_subprocess_shell(target.restart_cmd)
        try:
            code = await asyncio.wait_for(proc.wait(), RESTART_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise StackUnavailable(
                f"the AppServer restart command did not return within {RESTART_TIMEOUT_S:g} s"
            ) from None
        if code != 0:
            raise StackUnavailable(f"the AppServer restart command exited with {code}")

    def stack_cpu_seconds(self) -> float | None:
        """CPU seconds used so far by the stack's own process, when it has one that is
        not this process (a child stack); None otherwise."""
        return None if self._levers is None else self._levers.cpu_seconds()


def token_requests_of(m: MetricsSnapshot) -> float:
    """The AppServer's count of token requests, whatever the exact metric name (it is
    the AppServer's to choose; CONTRACTS.md only promises ``/admin/metrics``)."""
    for name in (
        "mqtt_appserver_token_requests_total",
        "appserver_token_requests_total",
        "mqtt_appserver_requests_total",
    ):
        if name in m.names():
            return m.total(name)
    return 0.0


def endpoints_of(stack: StackHandle) -> Endpoints:
    """The stack's endpoints (no AppServer URL when it runs without ours)."""
    ours = "appserver" not in stack.config.without
    return Endpoints(stack.authserver_url, stack.appserver_url if ours else "", stack.broker_url)


def endpoints_for(stack_endpoints: Endpoints, target: AppServerTarget | None) -> Endpoints:
    """The run's endpoints: the user's AppServer in place of ours when there is one."""
    if target is None:
        return stack_endpoints
    return Endpoints(stack_endpoints.authserver_url, target.url, stack_endpoints.broker_url)


def for_target(config: StackConfig, target: AppServerTarget | None, port: int) -> StackConfig:
    """The stack to start beside the user's AppServer: no AppServer of ours, and the
    AuthServer on ``port`` -- the one the user's AppServer is configured to call
    (docs/your-appserver.md: 18080 by default)."""
    if target is None:
        return config
    return replace(config, without=config.without | {"appserver"}).with_authserver(port=port)


@contextlib.asynccontextmanager
async def embedded_environment(
    config: StackConfig | None = None,
    *,
    clock: Clock | None = None,
    target: AppServerTarget | None = None,
) -> AsyncIterator[Environment]:
    """The stack in this process (:func:`scenario_stack` unless ``config`` is given), on
    ``clock`` (the system clock by default); beside the user's AppServer with a
    ``target`` (then ``config`` should leave ours out: :func:`for_target`)."""
    config = config or scenario_stack()
    async with run_stack(config, clock=clock or SystemClock()) as stack:
        yield Environment(
            endpoints_for(endpoints_of(stack), target),
            stack.clock,
            stack.admin,
            levers=_InProcess(stack),
            stack=stack,
            target=target,
        )


@contextlib.asynccontextmanager
async def external_environment(
    endpoints: Endpoints,
    *,
    clock: Clock | None = None,
    target: AppServerTarget | None = None,
    fidelity_url: str | None = None,
) -> AsyncIterator[Environment]:
    """Use a stack that is already running (``mqtt-token-sim up`` or separate parts).

    Without a ``clock``, the stack's own is followed (``GET /admin/clock``): a stack on a
    scaled clock gets clients that refresh on the same virtual time."""
    ours = None if target is not None else endpoints.appserver_url
    async with AdminClient(endpoints.authserver_url, ours) as admin:
        try:
            remote = await admin.authserver.clock()
            env = Environment(
                endpoints,
                clock or _follow(remote),
                admin,
                target=target,
                fidelity_url=fidelity_url,
            )
            await env.authserver_metrics()
        except AdminError as exc:
            raise StackUnavailable(
                f"the AuthServer admin API at {endpoints.authserver_url} is not reachable: {exc}"
            ) from exc
        yield env


def _follow(remote: Any) -> Clock:
    """A local clock that reads the same virtual time as the stack's (to a few ms)."""
    import time

    from sim.shared.clock import ScaledClock

    if remote.mode == "scaled":
        return ScaledClock(remote.scale, epoch=remote.now_ms / 1000.0, wall0=time.time())
    if remote.mode == "manual":
        raise StackUnavailable(
            "the stack runs on a manual clock: scenarios need a system or scaled clock "
            "(POST /admin/clock/advance drives a manual one)"
        )
    return SystemClock()
