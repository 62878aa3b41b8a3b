"""Where a scenario runs: the embedded stack, or endpoints given on the command line.

:class:`Environment` is everything a scenario may touch besides its own clients: the
three endpoints, the clock, and the operator's levers, each through the parts' public
or admin HTTP APIs so that the same scenario runs against an external stack:

* counters: ``/admin/metrics`` of the AuthServer (upstream applies) and of the AppServer
  (token requests);
* faults: ``/admin/faults`` of the AuthServer;
* time: ``ManualClock.advance`` in process, else ``POST /admin/clock/advance``;
* accounts: the AppServer's bulk import.

Levers only an embedded stack has (kick every broker client, restart the broker or the
AppServer on the same port and data dir) raise :class:`Unsupported` on external
endpoints; the scenario then says which figure it could not measure.

:func:`embedded_environment` builds the stack from the three runners of
``docs/CONTRACTS.md`` itself (rather than through ``sim.harness.stack``) because scenarios
restart parts one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from sim.shared.clock import Clock, ManualClock, SystemClock

from .metrics import MetricsSnapshot, parse_metrics

__all__ = [
    "APPLY_METRIC",
    "BULK_APPLIES",
    "UNTHROTTLED",
    "EmbeddedOptions",
    "Endpoints",
    "Environment",
    "EnvironmentError_",
    "Unsupported",
    "embedded_environment",
    "external_environment",
]

#: The AuthServer's request counter (CONTRACTS.md); applies are ``operation="apply"``.
APPLY_METRIC = "mqtt_authserver_requests_total"


#: AppServer overrides for scenarios whose fleets start all at once (not the subject).
UNTHROTTLED: Mapping[str, Any] = {"drain_rate_per_s": 1_000_000.0, "drain_burst": 1_000_000}
#: ... and the AuthServer's side of it: a fleet's first start is one apply per client,
#: past the provider's legacy apply limit (1,000/s, SPEC §3b) for the big sizes.
BULK_APPLIES: Mapping[str, str] = {"legacy_apply": "off"}


class EnvironmentError_(RuntimeError):
    """The stack is not usable (down, wrong URL, admin API refused)."""


class Unsupported(EnvironmentError_):
    """A lever only the embedded stack has was asked of external endpoints."""


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


@dataclass(frozen=True)
class EmbeddedOptions:
    """How :func:`embedded_environment` configures the parts for a scenario."""

    data_dir: Path | None = None
    #: AppServer token lifetime (virtual seconds) and cache refresh margin.
    token_ttl_s: float = 3600.0
    refresh_margin_s: float = 300.0
    #: scrypt cost of AppServer account secrets: fleets of simulated accounts use a low
    #: one, or creating 2,000 accounts would be the scenario.
    password_hash_cost: int = 4
    #: Broker lead of ``$SYS/tokenExpireNotice`` (virtual seconds); None: its default.
    expire_notice_lead_s: float | None = None
    appserver_overrides: Mapping[str, Any] = field(default_factory=dict)
    broker_overrides: Mapping[str, Any] = field(default_factory=dict)
    #: AuthServer rate limits that differ from the provider's (SPEC §3b), as text:
    #: ``{"legacy_revoke": "off"}``, ``{"all": "off"}`` (RateLimits.with_overrides).  A
    #: scenario that applies or revokes in bulk says so here.
    authserver_rate_limits: Mapping[str, str] = field(default_factory=dict)
    seed: int | None = None


class Environment:
    def __init__(
        self, endpoints: Endpoints, clock: Clock, http: aiohttp.ClientSession, *, embedded: bool
    ):
        self.endpoints = endpoints
        self.clock = clock
        self.http = http
        self.embedded = embedded

    # ------------------------------------------------------------------ counters
    async def _get_text(self, url: str) -> str:
        async with self.http.get(url) as resp:
            if resp.status != 200:
                raise EnvironmentError_(f"GET {url} answered {resp.status}")
            return await resp.text()

    async def authserver_metrics(self) -> MetricsSnapshot:
        return parse_metrics(await self._get_text(f"{self.endpoints.authserver_url}/admin/metrics"))

    async def appserver_metrics(self) -> MetricsSnapshot:
        return parse_metrics(await self._get_text(f"{self.endpoints.appserver_url}/admin/metrics"))

    async def upstream_applies(self) -> int:
        """Token applies the AuthServer has answered (any outcome), from its metrics."""
        m = await self.authserver_metrics()
        return int(m.total(APPLY_METRIC, operation="apply"))

    async def upstream_applies_ok(self) -> int:
        m = await self.authserver_metrics()
        return int(m.total(APPLY_METRIC, operation="apply", code="200"))

    async def appserver_token_requests(self) -> int:
        """``POST /v1/tokens`` the AppServer has answered (any outcome)."""
        return int(token_requests_of(await self.appserver_metrics()))

    # ------------------------------------------------------------------ faults
    async def add_fault(self, fault: Mapping[str, Any]) -> str:
        async with self.http.post(
            f"{self.endpoints.authserver_url}/admin/faults", json=dict(fault)
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status not in (200, 201):
                raise EnvironmentError_(f"adding fault {fault} answered {resp.status}: {body}")
            return str(body.get("id", ""))

    async def clear_faults(self) -> None:
        async with self.http.delete(f"{self.endpoints.authserver_url}/admin/faults") as resp:
            if resp.status not in (200, 204):
                raise EnvironmentError_(f"clearing faults answered {resp.status}")

    # ------------------------------------------------------------------ time
    async def advance(self, seconds: float) -> None:
        """Advance a manual clock (every part of the stack sees it)."""
        if isinstance(self.clock, ManualClock):
            self.clock.advance(seconds)
            return
        async with self.http.post(
            f"{self.endpoints.authserver_url}/admin/clock/advance", json={"seconds": seconds}
        ) as resp:
            if resp.status != 200:
                raise Unsupported(f"the stack's clock cannot be advanced ({resp.status})")

    # ------------------------------------------------------------------ accounts
    async def create_accounts(self, accounts: Sequence[Mapping[str, Any]]) -> None:
        """Bulk-import AppServer accounts ``{"client_id", "secret", "grants", "enabled"}``."""
        for i in range(0, len(accounts), 1000):
            chunk = [dict(a) for a in accounts[i : i + 1000]]
            async with self.http.post(
                f"{self.endpoints.appserver_url}/admin/accounts:bulk", json={"accounts": chunk}
            ) as resp:
                if resp.status not in (200, 201, 204):
                    text = await resp.text()
                    raise EnvironmentError_(f"bulk import answered {resp.status}: {text[:200]}")

    async def disable_account(self, client_id: str) -> None:
        """``DELETE /admin/accounts/{id}``: revokes the account's tokens upstream."""
        async with self.http.delete(
            f"{self.endpoints.appserver_url}/admin/accounts/{client_id}"
        ) as resp:
            if resp.status not in (200, 204):
                raise EnvironmentError_(f"deleting account answered {resp.status}")

    # ------------------------------------------------------------------ embedded-only levers
    async def kick_all(self) -> int:
        raise Unsupported("kicking every broker client needs the embedded stack")

    async def restart_broker(self) -> None:
        raise Unsupported("restarting the broker needs the embedded stack")

    async def restart_appserver(self) -> None:
        raise Unsupported("restarting the AppServer needs the embedded stack")

    @property
    def broker(self) -> Any:
        """The in-process broker handle (embedded only), e.g. for its counters."""
        return None

    def stack_cpu_seconds(self) -> float | None:
        """CPU seconds used so far by the stack's own process, when it has one that is
        not this process (a child stack); None otherwise."""
        return None


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


class _Embedded(Environment):
    def __init__(self, *args: Any, stack: _EmbeddedStack, **kw: Any):
        super().__init__(*args, **kw)
        self._stack = stack

    async def kick_all(self) -> int:
        result = await self._stack.broker.kick_all()
        return int(result) if isinstance(result, int) else 0

    async def restart_broker(self) -> None:
        await self._stack.restart_broker()

    async def restart_appserver(self) -> None:
        await self._stack.restart_appserver()

    @property
    def broker(self) -> Any:
        return self._stack.broker


class _EmbeddedStack:
    """The three parts, each in its own exit stack so that one can be restarted."""

    def __init__(self, options: EmbeddedOptions, clock: Clock, data_dir: Path):
        self.options = options
        self.clock = clock
        self.data_dir = data_dir
        self._auth_cm: Any = None
        self._broker_cm: Any = None
        self._app_cm: Any = None
        self.auth: Any = None
        self.broker: Any = None
        self.app: Any = None
        self._broker_config: Any = None
        self._app_config: Any = None

    async def start(self) -> None:
        from mock_authserver.config import AuthServerConfig
        from mock_authserver.ratelimit import RateLimits
        from mock_authserver.runner import run_authserver
        from mock_broker.config import BrokerConfig
        from sim.customer.appserver.config import AppServerConfig

        auth_dir = self.data_dir / "authserver"
        app_dir = self.data_dir / "appserver"
        auth_dir.mkdir(parents=True, exist_ok=True)
        app_dir.mkdir(parents=True, exist_ok=True)
        limits = RateLimits().with_overrides(self.options.authserver_rate_limits)
        self._auth_cm = run_authserver(
            AuthServerConfig(host="127.0.0.1", port=0, data_dir=auth_dir, rate_limits=limits),
            clock=self.clock,
        )
        self.auth = await self._auth_cm.__aenter__()
        broker_kw: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "authserver_url": self.auth.url,
            **self.options.broker_overrides,
        }
        if self.options.expire_notice_lead_s is not None:
            broker_kw["expire_notice_lead"] = self.options.expire_notice_lead_s
        self._broker_config = BrokerConfig(**broker_kw)
        await self._start_broker()
        self._app_config = AppServerConfig(
            **{
                "host": "127.0.0.1",
                "port": 0,
                "authserver_url": self.auth.url,
                "data_dir": app_dir,
                "token_ttl_s": self.options.token_ttl_s,
                "refresh_margin_s": self.options.refresh_margin_s,
                "password_hash_cost": self.options.password_hash_cost,
                "seed": self.options.seed,
                **self.options.appserver_overrides,
            }
        )
        await self._start_app()

    async def _start_broker(self) -> None:
        from mock_broker.broker import run_broker

        self._broker_cm = run_broker(self._broker_config, clock=self.clock)
        self.broker = await self._broker_cm.__aenter__()
        # Restarts come back on the same port: clients reconnect to the address they know.
        self._broker_config = replace(self._broker_config, port=self.broker.port)

    async def _start_app(self) -> None:
        from sim.customer.appserver.runner import run_appserver

        self._app_cm = run_appserver(self._app_config, clock=self.clock)
        self.app = await self._app_cm.__aenter__()
        self._app_config = replace(self._app_config, port=self.app.port)

    async def restart_broker(self) -> None:
        cm, self._broker_cm = self._broker_cm, None
        await cm.__aexit__(None, None, None)
        await _retry_bind(self._start_broker)

    async def restart_appserver(self) -> None:
        cm, self._app_cm = self._app_cm, None
        await cm.__aexit__(None, None, None)
        await _retry_bind(self._start_app)

    async def stop(self) -> None:
        for name in ("_app_cm", "_broker_cm", "_auth_cm"):
            cm = getattr(self, name)
            setattr(self, name, None)
            if cm is not None:
                with contextlib.suppress(Exception):
                    await cm.__aexit__(None, None, None)

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(self.auth.url, self.app.url, f"mqtt://127.0.0.1:{self.broker.port}")


async def _retry_bind(start: Any, deadline_s: float = 10.0) -> None:
    """Re-listen on the port just released (a lingering socket can hold it briefly)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while True:
        try:
            await start()
            return
        except OSError:
            if loop.time() > end:
                raise
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def embedded_environment(
    options: EmbeddedOptions | None = None, *, clock: Clock | None = None
) -> AsyncIterator[Environment]:
    """Start AuthServer, broker and AppServer in this process on free loopback ports,
    one clock, one data dir (a temporary one unless given)."""
    options = options or EmbeddedOptions()
    clock = clock or SystemClock()
    with contextlib.ExitStack() as tmp:
        data_dir = options.data_dir or Path(
            tmp.enter_context(tempfile.TemporaryDirectory(prefix="mqtt-token-sim-scenario-"))
        )
        stack = _EmbeddedStack(options, clock, data_dir)
        try:
            await stack.start()
            async with aiohttp.ClientSession() as http:
                yield _Embedded(stack.endpoints, clock, http, embedded=True, stack=stack)
        finally:
            await stack.stop()


@contextlib.asynccontextmanager
async def external_environment(
    endpoints: Endpoints, *, clock: Clock | None = None
) -> AsyncIterator[Environment]:
    """Use a stack that is already running (``mqtt-token-sim up`` or separate parts).

    Without a ``clock``, the stack's own is followed (``GET /admin/clock``): a stack on a
    scaled clock gets clients that refresh on the same virtual time."""
    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(f"{endpoints.authserver_url}/admin/clock") as resp:
                remote = await resp.json(content_type=None) if resp.status == 200 else {}
            env = Environment(endpoints, clock or _follow(remote), http, embedded=False)
            await env.authserver_metrics()
        except (aiohttp.ClientError, EnvironmentError_, ValueError) as exc:
            raise EnvironmentError_(
                f"the AuthServer admin API at {endpoints.authserver_url} is not reachable: {exc}"
            ) from exc
        yield env


def _follow(remote: Mapping[str, Any]) -> Clock:
    """A local clock that reads the same virtual time as the stack's (to a few ms)."""
    import time

    from sim.shared.clock import ScaledClock

    mode, scale, now_ms = remote.get("mode"), remote.get("scale"), remote.get("now_ms")
    if mode == "scaled" and isinstance(scale, int | float) and isinstance(now_ms, int):
        return ScaledClock(float(scale), epoch=now_ms / 1000.0, wall0=time.time())
    if mode == "manual":
        raise EnvironmentError_(
            "the stack runs on a manual clock: scenarios need a system or scaled clock "
            "(POST /admin/clock/advance drives a manual one)"
        )
    return SystemClock()
