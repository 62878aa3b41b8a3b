"""The whole stack in one process: AuthServer, broker and AppServer (SPEC §1, §6).

``run_stack(StackConfig(...), clock=...)`` starts the three parts of docs/CONTRACTS.md
with ONE clock object and ONE data dir: advancing a :class:`~sim.shared.clock.ManualClock`
(directly, or through ``POST /admin/clock/advance`` on the AuthServer) moves every
part at once.  The broker follows the in-process AuthServer over its admin feed, as
it would in separate processes.  A part given by URL (``authserver_url`` /
``broker_url``) is not started: the others use the external one.

The fresh stack has the documented dev account (AuthServer ``dev-ak``/``dev-sk``,
instance ``mqtt-dev``) and, on the AppServer, a dev client account
(:data:`DEV_CLIENT_ID`/:data:`DEV_CLIENT_SECRET`, resources ``dev/#``, ``R,W``).

Layout of the data dir: ``authserver/`` (SQLite: tokens, revocations, accounts) and
``appserver/`` (SQLite: accounts, token cache).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from sim.shared.clock import Clock, ClockSpec, ManualClock, clock_from_spec

__all__ = [
    "DEV_CLIENT_ID",
    "DEV_CLIENT_RESOURCES",
    "DEV_CLIENT_SECRET",
    "StackConfig",
    "StackHandle",
    "run_stack",
]

log = logging.getLogger(__name__)

DEV_ACCESS_KEY = "dev-ak"
DEV_SECRET_KEY = "dev-sk"  # noqa: S105 - the documented dev account (SPEC §3c)
DEV_INSTANCE = "mqtt-dev"
DEV_CLIENT_ID = "GID_dev@@@dev-1"
DEV_CLIENT_SECRET = "dev-secret"  # noqa: S105 - documented, loopback dev stack only
DEV_CLIENT_RESOURCES = ("dev/#",)


@dataclass(frozen=True)
class StackConfig:
    """One stack.  Ports 0 pick free ports (tests); the CLI's defaults are fixed ports."""

    host: str = "127.0.0.1"
    data_dir: Path = Path("data")
    authserver_port: int = 18080
    broker_port: int = 1883
    appserver_port: int = 18081
    clock: ClockSpec = field(default_factory=ClockSpec)
    #: use this AuthServer instead of starting one (broker and AppServer follow it)
    authserver_url: str | None = None
    #: use this broker instead of starting one (only reported to clients)
    broker_url: str | None = None
    #: AppServer token lifetime and cache margin (SPEC §5)
    token_ttl_s: float = 3600.0
    appserver_refresh_margin_s: float = 300.0
    #: broker: lead of ``$SYS/tokenExpireNotice`` before expiry
    expire_notice_lead_s: float = 300.0
    #: scrypt cost of AppServer client secrets; fleets and tests lower it
    password_hash_cost: int = 14
    #: AppServer upstream applies per second and burst (its bounded drain, SPEC §5);
    #: a fleet's first start needs one apply per client: raise them for big fleets
    appserver_drain_rate_per_s: float = 50.0
    appserver_drain_burst: int = 20
    #: create the AppServer dev client account at start-up
    dev_client: bool = True
    #: the AuthServer account the AppServer applies with
    access_key: str = DEV_ACCESS_KEY
    secret_key: str = field(default=DEV_SECRET_KEY, repr=False)
    instance_id: str = DEV_INSTANCE
    seed: int | None = None
    #: AuthServer rate limits that differ from the provider's (SPEC §3b), as text:
    #: ``{"legacy_apply": "off"}``, ``{"all": "off"}`` (RateLimits.with_overrides)
    authserver_rate_limits: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("authserver_port", "broker_port", "appserver_port"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 65535:
                raise ValueError(f"{name} must be 0..65535, got {value!r}")
        if not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if not self.token_ttl_s >= 60:
            raise ValueError("token_ttl_s must be >= 60 s (SPEC §3a minimum)")
        for name, url, schemes in (
            ("authserver_url", self.authserver_url, ("http://", "https://")),
            ("broker_url", self.broker_url, ("mqtt://", "tcp://")),
        ):
            if url is not None and not url.startswith(schemes):
                raise ValueError(f"{name} must start with {' or '.join(schemes)}, got {url!r}")
        from mock_authserver.ratelimit import RateLimits  # pure and small: checked early

        RateLimits().with_overrides(self.authserver_rate_limits)


@dataclass
class StackHandle:
    config: StackConfig
    clock: Clock
    authserver_url: str
    broker_url: str
    appserver_url: str
    authserver: Any = None  # AuthServerHandle when started here
    broker: Any = None  # BrokerHandle when started here
    appserver: Any = None  # AppServerHandle
    http: aiohttp.ClientSession | None = None

    @property
    def manual_clock(self) -> ManualClock:
        if not isinstance(self.clock, ManualClock):
            raise TypeError("this stack does not run on the manual clock")
        return self.clock

    def advance(self, seconds: float) -> int:
        """Move every part's time forward (manual clock); return timers fired."""
        return self.manual_clock.advance(seconds)

    def endpoints(self) -> dict[str, str]:
        return {
            "authserver": self.authserver_url,
            "broker": self.broker_url,
            "appserver": self.appserver_url,
        }

    async def create_accounts(self, accounts: list[dict[str, Any]]) -> dict[str, Any]:
        """Bulk-create AppServer client accounts (``client_id``, ``secret``, ``grants``)."""
        assert self.http is not None
        async with self.http.post(
            f"{self.appserver_url}/admin/accounts:bulk", json={"accounts": accounts}
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"AppServer bulk import failed: {resp.status} {body}")
            return dict(body)

    async def add_fault(self, fault: dict[str, Any]) -> str:
        """Inject an AuthServer fault (``/admin/faults``, CONTRACTS.md); return its id."""
        assert self.http is not None
        async with self.http.post(f"{self.authserver_url}/admin/faults", json=fault) as resp:
            body = await resp.json(content_type=None)
            if resp.status >= 300:
                raise RuntimeError(f"fault refused: {resp.status} {body}")
            return str(body["id"])

    async def clear_faults(self) -> None:
        assert self.http is not None
        async with self.http.delete(f"{self.authserver_url}/admin/faults") as resp:
            if resp.status >= 300:
                raise RuntimeError(f"clearing faults failed: {resp.status}")

    async def kick_all(self) -> None:
        """Drop every broker client at once (in-process broker only)."""
        if self.broker is None:
            raise RuntimeError("the broker is external: it cannot be kicked from here")
        await self.broker.kick_all()


@contextlib.asynccontextmanager
async def run_stack(
    config: StackConfig, *, clock: Clock | None = None
) -> AsyncIterator[StackHandle]:
    """Start the parts, yield a :class:`StackHandle`, stop them (data flushed) on exit."""
    # Lazy imports: `import sim.harness.stack` stays cheap (the plugin imports it lazily).
    from mock_authserver.config import AuthServerConfig
    from mock_authserver.ratelimit import RateLimits
    from mock_authserver.runner import run_authserver
    from mock_broker.broker import run_broker
    from mock_broker.config import BrokerConfig
    from sim.customer.appserver.config import AppServerConfig
    from sim.customer.appserver.runner import run_appserver

    clock = clock if clock is not None else clock_from_spec(config.clock)
    data = config.data_dir
    data.mkdir(parents=True, exist_ok=True)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())
        auth = None
        auth_url = config.authserver_url
        if auth_url is None:
            auth = await stack.enter_async_context(
                run_authserver(
                    AuthServerConfig(
                        host=config.host,
                        port=config.authserver_port,
                        data_dir=data / "authserver",
                        clock=config.clock,
                        rate_limits=RateLimits().with_overrides(config.authserver_rate_limits),
                    ),
                    clock=clock,
                )
            )
            auth_url = auth.url
        broker = None
        broker_url = config.broker_url
        if broker_url is None:
            broker = await stack.enter_async_context(
                run_broker(
                    BrokerConfig(
                        host=config.host,
                        port=config.broker_port,
                        authserver_url=auth_url,
                        expire_notice_lead=config.expire_notice_lead_s,
                    ),
                    clock,
                )
            )
            broker_url = broker.url
        app = await stack.enter_async_context(
            run_appserver(
                AppServerConfig(
                    host=config.host,
                    port=config.appserver_port,
                    authserver_url=auth_url,
                    access_key=config.access_key,
                    secret_key=config.secret_key,
                    instance_id=config.instance_id,
                    data_dir=data / "appserver",
                    token_ttl_s=config.token_ttl_s,
                    refresh_margin_s=config.appserver_refresh_margin_s,
                    password_hash_cost=config.password_hash_cost,
                    drain_rate_per_s=config.appserver_drain_rate_per_s,
                    drain_burst=config.appserver_drain_burst,
                    seed=config.seed,
                ),
                clock=clock,
            )
        )
        handle = StackHandle(
            config=config,
            clock=clock,
            authserver_url=auth_url,
            broker_url=broker_url,
            appserver_url=app.url,
            authserver=auth,
            broker=broker,
            appserver=app,
            http=http,
        )
        if config.dev_client:
            await handle.create_accounts(
                [
                    {
                        "client_id": DEV_CLIENT_ID,
                        "secret": DEV_CLIENT_SECRET,
                        "grants": [{"resources": list(DEV_CLIENT_RESOURCES), "actions": "R,W"}],
                        "enabled": True,
                    }
                ]
            )
        yield handle
