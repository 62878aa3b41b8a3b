"""Many token-aware clients in one process (SPEC §6): ``Fleet(FleetConfig(...), clock=...)``.

Identities come from Faker (seeded, so a fleet is the same fleet on every run): each
device gets a client id ``GID_<group>@@@<name>-<n>``, a secret, and its own topic
space ``<prefix>/<name>-<n>/#``.  Their AppServer accounts are created in bulk through
the AppServer's admin API (``POST /admin/accounts:bulk``), in chunks.

Against another AppServer (``FleetConfig.adapter``, docs/your-appserver.md) the clients
ask the adapter's way and are the adapter's ``[clients]`` (numbers ``first``,
``first + 1``, ...); their accounts are the AppServer's own, created only if the adapter
names a ``provision`` callable.

Clients share one HTTP connection pool and one clock; they are started with at most
``concurrency`` first connects in flight, so a fleet's start is a ramp, not a SYN flood
(reconnects after a kick are spread by each client's own full-jitter backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp

from sim.customer.adapter import Adapter, ClientIdentity, provision_clients
from sim.customer.adapter.builtin import provision as provision_reference
from sim.shared.clock import Clock

from .client import ClientConfig, TokenClient
from .client.events import Counters
from .client.policy import Backoff, RefreshPolicy
from .client.transport import IncomingMessage

__all__ = ["Fleet", "FleetConfig", "Identity", "make_identities"]

log = logging.getLogger(__name__)

FleetMode = Literal["upload", "reconnect", "mixed"]
#: Device ids and topic levels: letters, digits, '-', '_' (SPEC §4 client ids, §4a topics).
_DEVICE_SAFE = re.compile(r"[^A-Za-z0-9_\-]")


@dataclass(frozen=True)
class Identity:
    client_id: str
    secret: str = field(repr=False)
    resources: tuple[str, ...]
    #: the AppServer login, when not the client id (adapter ``[clients] account``)
    account: str | None = None
    #: what it asks for; None: ``FleetConfig.actions``
    actions: str | None = None


def make_identities(n: int, *, group: str, prefix: str, seed: int) -> list[Identity]:
    """``n`` Faker identities, the same for the same seed."""
    from faker import Faker

    fake = Faker()
    fake.seed_instance(seed)
    out = []
    for i in range(n):
        name = _DEVICE_SAFE.sub("", fake.user_name())[:24] or "device"
        device = f"{name}-{i}"
        out.append(
            Identity(
                client_id=f"GID_{group}@@@{device}",
                secret=fake.password(length=20, special_chars=False),
                resources=(f"{prefix}/{device}/#",),
            )
        )
    return out


@dataclass(frozen=True)
class FleetConfig:
    clients: int
    appserver_url: str
    broker_url: str
    store_dir: Path | None = None
    group: str = "fleet"
    topic_prefix: str = "fleet"
    actions: str = "R,W"
    #: how clients refresh: all by upload, all by reconnect, or alternating
    mode: FleetMode = "mixed"
    #: refresh this long before expiry...
    refresh_margin_s: float = 180.0
    #: ...or up to this much earlier, per client at random: no refresh stampede.  Keep
    #: margin + spread within the AppServer's cache margin (300 s by default), else it
    #: answers with the token the client already has.
    refresh_spread_s: float = 120.0
    backoff: Backoff = field(default_factory=Backoff)
    create_accounts: bool = True
    accounts_chunk: int = 500
    #: first connects in flight at once while the fleet starts
    concurrency: int = 200
    keepalive: int = 120
    clean_session: bool = True
    #: each client publishes QoS 1 to its own topic this often (virtual s); None: idle
    publish_interval_s: float | None = None
    #: each client subscribes to its own topic space (so its publishes come back)
    subscribe_own: bool = False
    fsync: bool = True
    seed: int = 0
    #: how clients ask the AppServer (docs/your-appserver.md); None or the built-in
    #: adapter: the reference AppServer, Faker identities whose accounts the fleet creates
    adapter: Adapter | None = None

    @property
    def uses_adapter_clients(self) -> bool:
        return self.adapter is not None and not self.adapter.is_builtin

    def __post_init__(self) -> None:
        if not 1 <= self.clients <= 1_000_000:
            raise ValueError("clients must be 1..1000000")
        if self.mode not in ("upload", "reconnect", "mixed"):
            raise ValueError("mode must be upload, reconnect or mixed")
        # GID_<group> is the Group ID: 7-64 characters (SPEC §4), so at least 3 here;
        # 20 at most keeps GID_<group>@@@<name>-<n> within the 64 of a client id.
        if not re.fullmatch(r"[A-Za-z0-9_\-]{3,20}", self.group):
            raise ValueError("group must be 3..20 of [A-Za-z0-9_-] (GID_<group> is 7-64, SPEC §4)")
        if self.concurrency < 1 or self.accounts_chunk < 1:
            raise ValueError("concurrency and accounts_chunk must be >= 1")
        if self.publish_interval_s is not None and not self.publish_interval_s > 0:
            raise ValueError("publish_interval_s must be > 0")
        if self.uses_adapter_clients:
            assert self.adapter is not None
            if self.adapter.clients is None:
                raise ValueError(f"the adapter {self.adapter.source} has no [clients] to run")
            if self.adapter.clients.count < self.clients:
                raise ValueError(
                    f"the adapter's [clients] count is {self.adapter.clients.count}: "
                    f"fewer than the {self.clients} clients asked for"
                )


def adapter_identities(adapter: Adapter, n: int) -> list[Identity]:
    """The first ``n`` clients of the adapter's ``[clients]``."""
    assert adapter.clients is not None
    out = []
    for number in list(adapter.clients.numbers())[:n]:
        c = adapter.clients.identity(number)
        out.append(Identity(c.client_id, c.secret, c.resources, c.account, c.actions))
    return out


class Fleet:
    def __init__(
        self,
        config: FleetConfig,
        *,
        clock: Clock,
    ) -> None:
        self.config = config
        self.clock = clock
        if config.uses_adapter_clients:
            assert config.adapter is not None
            self.identities = adapter_identities(config.adapter, config.clients)
        else:
            self.identities = make_identities(
                config.clients, group=config.group, prefix=config.topic_prefix, seed=config.seed
            )
        self.clients: list[TokenClient] = []
        self.received = 0
        self.connect_latencies: list[float] = []  # real seconds, start → first CONNACK
        self.started_at: float | None = None
        self.all_connected_after: float | None = None  # real seconds
        self._http: aiohttp.ClientSession | None = None
        self._starter: asyncio.Future[Any] | None = None
        self._publishers: list[asyncio.Task[None]] = []
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Create the accounts, then start every client (ramped); returns once all are
        started, not necessarily connected (see :meth:`wait_connected`)."""
        cfg = self.config
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(10, min(cfg.concurrency, 100)))
        )
        if cfg.create_accounts:
            await self.create_accounts()
        self.started_at = time.perf_counter()
        for i, ident in enumerate(self.identities):
            mode = cfg.mode if cfg.mode != "mixed" else ("upload", "reconnect")[i % 2]
            client = TokenClient(
                ClientConfig(
                    client_id=ident.client_id,
                    secret=ident.secret,
                    appserver_url=cfg.appserver_url,
                    broker_url=cfg.broker_url,
                    resources=ident.resources,
                    actions=ident.actions or cfg.actions,
                    account=ident.account,
                    store_dir=cfg.store_dir,
                    fsync=cfg.fsync,
                    refresh=RefreshPolicy(
                        mode=mode, margin=cfg.refresh_margin_s, spread=cfg.refresh_spread_s
                    ),
                    backoff=cfg.backoff,
                    clean_session=cfg.clean_session,
                    keepalive=cfg.keepalive,
                    subscriptions=((ident.resources[0], 1),) if cfg.subscribe_own else (),
                    seed=cfg.seed,
                    adapter=cfg.adapter,
                ),
                clock=self.clock,
                http=self._http,
                on_message=self._count_message,
                max_events=32,
            )
            self.clients.append(client)
        sem = asyncio.Semaphore(cfg.concurrency)

        async def ramp(client: TokenClient) -> None:
            async with sem:
                t0 = time.perf_counter()
                await client.start()
                with contextlib.suppress(Exception):
                    await client.wait_connected()
                if client.connected:
                    self.connect_latencies.append(time.perf_counter() - t0)
            # O(1) per client: counting connected clients here would make the ramp O(N²)
            if len(self.connect_latencies) == len(self.clients):
                assert self.started_at is not None
                self.all_connected_after = time.perf_counter() - self.started_at

        self._starter = asyncio.ensure_future(asyncio.gather(*(ramp(c) for c in self.clients)))
        if cfg.publish_interval_s is not None:
            self._publishers = [
                asyncio.ensure_future(self._publish_loop(c, i)) for i, c in enumerate(self.clients)
            ]

    async def wait_connected(self) -> None:
        """Until every client has been through its first connect (connected or refused)."""
        if self._starter is not None:
            await asyncio.shield(self._starter)

    async def create_accounts(self) -> int:
        """Create the fleet's AppServer accounts (the reference AppServer's bulk import,
        or the adapter's ``provision``); returns how many were created (0: the adapter
        cannot, the AppServer has them)."""
        cfg = self.config
        assert self._http is not None
        clients = [
            ClientIdentity(
                client_id=i.client_id,
                secret=i.secret,
                resources=i.resources,
                actions=i.actions or cfg.actions,
                account=i.account,
            )
            for i in self.identities
        ]
        if not cfg.uses_adapter_clients:
            await provision_reference(
                self._http, cfg.appserver_url, clients, chunk=cfg.accounts_chunk
            )
            return len(clients)
        assert cfg.adapter is not None
        done = await provision_clients(self._http, cfg.adapter, cfg.appserver_url, clients)
        return len(clients) if done else 0

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._publishers:
            task.cancel()
        if self._starter is not None and not self._starter.done():
            self._starter.cancel()
            with contextlib.suppress(BaseException):
                await self._starter
        for i in range(0, len(self.clients), 500):
            await asyncio.gather(
                *(c.close() for c in self.clients[i : i + 500]), return_exceptions=True
            )
        if self._http is not None:
            await self._http.close()

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ figures

    @property
    def connected_count(self) -> int:
        return sum(1 for c in self.clients if c.connected)

    def states(self) -> Counter[str]:
        return Counter(c.state for c in self.clients)

    def counters(self) -> Counters:
        return Counters.total(c.counters for c in self.clients)

    # ------------------------------------------------------------------ inside

    def _count_message(self, msg: IncomingMessage) -> None:
        self.received += 1

    async def _publish_loop(self, client: TokenClient, i: int) -> None:
        interval = self.config.publish_interval_s
        assert interval is not None
        topic = client.config.resources[0].removesuffix("#") + "telemetry"
        # spread the first publish over one interval
        await self.clock.sleep(interval * ((i * 0.618034) % 1.0))
        n = 0
        while True:
            with contextlib.suppress(Exception):
                await client.publish(topic, f"{n}".encode(), qos=1)
            n += 1
            await self.clock.sleep(interval)
