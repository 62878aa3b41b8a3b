"""The clients of a scenario: N SDK clients (``TokenClient``) with their own accounts.

Scenarios need more control than a fleet's summary: stop every client and start new
client objects on the same token store (a device restart), wipe the stores, and the
real time of each client's events (connect latency, when each came back).  So this is
a thin collection of :class:`sim.customer.client.client.TokenClient` with a listener on each
client's event log that stamps events with ``time.monotonic()``.

Identities are ``GID_<group>@@@d<i>``, one AppServer account each (bulk import), each
with its own topic ``devices/<group>/d<i>/...`` (``devices``: a parent topic of the dev
instance).  Beside the user's AppServer (``env.target``) they are the adapter's
``[clients]`` instead, asked for through the adapter, created by its ``provision`` if
it has one (else they must exist), and their parent topics are created on the mock.

Two defect switches (docs/scenarios.md "Defects") make the clients misbehave as a
scenario must catch: ``persist=False`` (no token kept between sessions or restarts) and
``heed_expire_notice=False`` (``$SYS/tokenExpireNotice`` dropped on arrival).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

from sim.customer.adapter import ClientIdentity, provision_clients
from sim.customer.client.client import ClientConfig, TokenClient
from sim.customer.client.events import ClientEvent, Counters, EventKind
from sim.customer.client.policy import Backoff, RefreshPolicy
from sim.customer.client.transport import (
    Connection,
    IncomingMessage,
    MqttConnection,
    Will,
)
from sim.harness.admin import ClientAccount
from sim.harness.errors import AdminError
from sim.shared.protocol import SYS_EXPIRE_NOTICE

from .env import Environment
from .errors import StackUnavailable

__all__ = ["Population", "StampedEvent"]

SECRET = "scenario-secret"
#: The parent topic every client's topics are under (the dev instance has it).
PARENT_TOPIC = "devices"


@dataclass(frozen=True)
class StampedEvent:
    index: int
    kind: EventKind
    t: float  # Population.now(): time.monotonic(), or virtual on a manual clock
    detail: dict[str, Any]


@dataclass
class Population:
    env: Environment
    n: int
    store_dir: Path
    group: str = "scn"
    refresh: RefreshPolicy = field(default_factory=RefreshPolicy)
    backoff: Backoff = field(default_factory=Backoff)
    actions: str = "R,W"
    subscribe: bool = False
    keepalive: int = 60
    seed: int = 0
    #: the SDK's "a session that held" threshold (``ClientConfig.stable_session_s``)
    stable_session_s: float = 10.0
    #: one shared HTTP session towards the AppServer (as one process of devices would)
    http: aiohttp.ClientSession | None = None
    #: beside the user's AppServer: the index of client 0 among the run's [clients]
    #: numbers (two populations of one run take disjoint ranges)
    offset: int = 0
    #: defect switch: False = no token kept between sessions or restarts
    persist: bool = True
    #: defect switch: False = ``$SYS/tokenExpireNotice`` dropped on arrival
    heed_expire_notice: bool = True
    clients: list[TokenClient] = field(default_factory=list)
    events: list[StampedEvent] = field(default_factory=list)
    received: list[list[IncomingMessage]] = field(default_factory=list)
    retired: Counters = field(default_factory=Counters)  # counters of stopped clients
    #: after :meth:`arm`: first CONNECTED time (monotonic) of each client since then
    back: dict[int, float] = field(default_factory=dict)
    _armed: float | None = None
    _all_back: asyncio.Event | None = None
    identities: list[ClientIdentity] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        target = self.env.target
        if target is None:
            self.identities = [
                ClientIdentity(
                    f"GID_{self.group}@@@d{i}",
                    SECRET,
                    (f"{PARENT_TOPIC}/{self.group}/d{i}/+",),
                    self.actions,
                )
                for i in range(self.n)
            ]
            return
        templates = target.adapter.clients
        assert templates is not None  # AppServerTarget checks it
        first = target.first + self.offset
        last = templates.first + templates.count - 1
        if first + self.n - 1 > last:
            raise StackUnavailable(
                f"the adapter's [clients] go up to number {last}; this run needs "
                f"{first}..{first + self.n - 1} (fewer --clients, or a larger count)"
            )
        self.identities = [templates.identity(first + i) for i in range(self.n)]

    def client_id(self, i: int) -> str:
        return self.identities[i].client_id

    def topic(self, i: int, leaf: str = "data") -> str:
        """A topic of client ``i``'s own: under ``devices`` (a parent topic of the dev
        instance, SPEC §4a) for ours; inside its first resource for an adapter's."""
        if self.env.target is None:
            return f"{PARENT_TOPIC}/{self.group}/d{i}/{leaf}"
        levels = self.identities[i].resources[0].split("/")
        return "/".join(leaf if level in ("+", "#") else level for level in levels)

    def resources(self, i: int) -> tuple[str, ...]:
        return self.identities[i].resources

    def config(self, i: int) -> ClientConfig:
        ident = self.identities[i]
        target = self.env.target
        if self.subscribe:
            subscriptions = (
                ((self.topic(i, "+"), 1),)
                if target is None
                else tuple((r, 1) for r in ident.resources)
            )
        else:
            subscriptions = ()
        return ClientConfig(
            client_id=ident.client_id,
            secret=ident.secret,
            account=ident.account,
            appserver_url=self.env.endpoints.appserver_url,
            broker_url=self.env.endpoints.broker_url,
            resources=ident.resources,
            actions=ident.actions,
            store_dir=self.store_dir if self.persist else None,
            fsync=False,  # throwaway stores: atomic rename is kept, the fsync is not
            refresh=self.refresh if self.persist else replace(self.refresh, reuse=False),
            backoff=self.backoff,
            keepalive=self.keepalive,
            subscriptions=subscriptions,
            seed=self.seed,
            stable_session_s=self.stable_session_s,
            adapter=None if target is None else target.adapter,
            transport=Connection if self.heed_expire_notice else _deaf_to_expire_notices,
        )

    async def create_accounts(self) -> list[str]:
        """Make the clients exist: our AppServer's accounts, or the adapter's
        ``provision``; and (beside the user's AppServer) the parent topics their
        resources need on every instance of the mock.  What was done, for the notes."""
        target = self.env.target
        if target is None:
            await self.env.admin.appserver.import_accounts(
                [
                    ClientAccount(c.client_id, c.secret, c.resources, c.actions)
                    for c in self.identities
                ]
            )
            return []
        notes = []
        if self.http is None:
            self.http = aiohttp.ClientSession()
        if await provision_clients(self.http, target.adapter, target.url, self.identities):
            notes.append(f"created {self.n} client accounts ({target.adapter.provision})")
        return notes + await self._parent_topics()

    async def _parent_topics(self) -> list[str]:
        """The provider's broker refuses topics outside the instance's parent topics
        (SPEC §4a); the user creates them in the console, the run on the mock."""
        wanted = {
            r.split("/", 1)[0]
            for c in self.identities
            for r in c.resources
            if r.split("/", 1)[0] not in ("+", "#")
        }
        made = []
        try:
            for inst in await self.env.admin.authserver.instances():
                instance_id = str(inst["instance_id"])
                have = set(inst.get("parent_topics", ()))
                for parent in sorted(wanted - have):
                    await self.env.admin.authserver.add_parent_topic(instance_id, parent)
                    made.append(f"created parent topic {parent!r} on instance {instance_id}")
        except AdminError as exc:
            made.append(f"parent topics not checked: {exc}")
        return made

    def now(self) -> float:
        """When events are stamped: the manual clock's virtual seconds on a manual stack
        (real time does not describe such a run), the real monotonic clock otherwise."""
        return self.env.clock.now() if self.env.manual else time.monotonic()

    def _listener(self, i: int) -> Callable[[ClientEvent], None]:
        def on_event(ev: ClientEvent) -> None:
            now = self.now()
            self.events.append(StampedEvent(i, ev.kind, now, ev.detail))  # detail: per event
            if ev.kind == EventKind.CONNECTED and self._armed is not None and i not in self.back:
                self.back[i] = now
                if len(self.back) >= self.n and self._all_back is not None:
                    self._all_back.set()

        return on_event

    def _new_client(self, i: int, **overrides: Any) -> TokenClient:
        cfg = self.config(i)
        if overrides:
            cfg = replace(cfg, **overrides)
        inbox = self.received[i]
        client = TokenClient(
            cfg, clock=self.env.clock, http=self.http, on_message=inbox.append, max_events=64
        )
        client.events.subscribe(self._listener(i))
        return client

    async def start(
        self,
        indices: Iterable[int] | None = None,
        *,
        concurrency: int = 100,
        wait: bool = True,
        on_connected: Callable[[int], None] | None = None,
        **overrides: Any,
    ) -> None:
        """Start clients (all by default), at most ``concurrency`` at once; with ``wait``
        return once each is connected (a refused client raises)."""
        if self.http is None:
            self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))
        if not self.clients:
            self.clients = [None] * self.n  # type: ignore[list-item]
            self.received = [[] for _ in range(self.n)]
        sem = asyncio.Semaphore(concurrency)
        done = 0

        async def one(i: int) -> None:
            nonlocal done
            async with sem:
                client = self._new_client(i, **overrides)
                self.clients[i] = client
                await client.start()
                if wait:
                    await client.wait_connected()
                    done += 1
                    if on_connected is not None:
                        on_connected(done)

        await asyncio.gather(*(one(i) for i in (range(self.n) if indices is None else indices)))

    async def stop(self, indices: Iterable[int] | None = None) -> None:
        """Close clients (their stored tokens stay), keeping their counters."""
        chosen = [c for c in self._pick(indices) if c is not None]
        for i in range(0, len(chosen), 500):
            await asyncio.gather(*(c.close() for c in chosen[i : i + 500]), return_exceptions=True)
        for c in chosen:
            self.retired.add(c.counters)
        ids = {id(c) for c in chosen}
        self.clients = [None if (c is not None and id(c) in ids) else c for c in self.clients]  # type: ignore[misc]

    def wipe_stores(self) -> None:
        """Forget every persisted token (a factory reset of each device)."""
        if self.store_dir.exists():
            shutil.rmtree(self.store_dir)
        self.store_dir.mkdir(parents=True, exist_ok=True)

    def forget(self, indices: Iterable[int]) -> None:
        """Delete the persisted token of some clients only."""
        from sim.customer.client.store import TokenStore

        store = TokenStore(self.store_dir, fsync=False)
        for i in indices:
            store.delete(self.client_id(i))

    async def close(self) -> None:
        await self.stop()
        if self.http is not None:
            await self.http.close()
            self.http = None

    def _pick(self, indices: Iterable[int] | None) -> list[TokenClient]:
        if indices is None:
            return list(self.clients)
        return [self.clients[i] for i in indices]

    # -- what they did -----------------------------------------------------------------
    def connected(self) -> int:
        return sum(1 for c in self.clients if c is not None and c.connected)

    def counters(self) -> Counters:
        total = Counters().add(self.retired)
        for c in self.clients:
            if c is not None:
                total.add(c.counters)
        return total

    def arm(self, t0: float) -> None:
        """Start recording, per client, the first CONNECTED from now on (:attr:`back`)."""
        self.back = {}
        self._armed = t0
        self._all_back = asyncio.Event()

    async def wait_all_back(self, deadline_s: float) -> bool:
        """After :meth:`arm`: until every client connected again (an event, no polling)."""
        assert self._all_back is not None, "arm() first"
        try:
            await asyncio.wait_for(self._all_back.wait(), deadline_s)
        except TimeoutError:
            return False
        return True

    def events_since(self, t0: float, kind: EventKind | None = None) -> list[StampedEvent]:
        return [e for e in self.events if e.t >= t0 and (kind is None or e.kind == kind)]


def _deaf_to_expire_notices(
    client_id: str,
    *,
    on_message: Callable[[IncomingMessage], object],
    clean_session: bool,
    will: Will | None,
) -> MqttConnection:
    """The SDK's own connection, but ``$SYS/tokenExpireNotice`` never reaches the client
    (the ignore-expire-notice defect: a device that does not handle the notice)."""

    def deliver(msg: IncomingMessage) -> object:
        return None if msg.topic == SYS_EXPIRE_NOTICE else on_message(msg)

    return Connection(client_id, on_message=deliver, clean_session=clean_session, will=will)


@contextlib.asynccontextmanager
async def population(env: Environment, n: int, store_dir: Path, **kw: Any) -> Any:
    pop = Population(env, n, store_dir, **kw)
    try:
        yield pop
    finally:
        await pop.close()
