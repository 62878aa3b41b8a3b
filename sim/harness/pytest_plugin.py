"""What the pytest plugin's fixtures do (the fixtures themselves are in the top-level
``mqtt_token_sim_pytest`` module, entry point ``pytest11: mqtt_token_sim``, which imports
this only when a test uses one; docs/stack.md "pytest plugin"):

* :func:`stack_config` -- the :class:`~sim.harness.stack.StackConfig` of a test's stack;
* :func:`open_stack` -- AuthServer, broker and AppServer in the test's loop on a
  :class:`~sim.shared.clock.ManualClock`, as a :class:`SimStack` with the levers tests
  need (advance time, faults, accounts, kicks, restarts);
* :func:`client_factory` / :func:`fleet_factory` -- started, connected SDK clients and
  fleets on it, closed at the end;
* :func:`open_session_stack` -- one stack for a whole session, on its own loop in a
  background thread and the real clock: a :class:`SessionStack` any test (sync or async,
  any loop) reaches over its sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ClientNotConnected, StackError
from .stack import HandleView

if TYPE_CHECKING:  # pragma: no cover
    from mock_broker.audit import AuditReport
    from mock_broker.broker import BrokerHandle
    from mock_broker.fidelity import FidelityReport
    from sim.customer.client import TokenClient
    from sim.customer.fleet import Fleet
    from sim.harness.admin import AdminClient
    from sim.harness.stack import Part, StackConfig, StackHandle
    from sim.shared.clock import ManualClock

__all__ = [
    "SessionStack",
    "SimStack",
    "client_factory",
    "fleet_factory",
    "open_session_stack",
    "open_stack",
    "stack_config",
]

T = TypeVar("T")
#: Real seconds a client of the factory may take to connect (a hang guard: the factory
#: says sooner when nothing can change without the clock).
CONNECT_GUARD_S = 15.0


class SimStack(HandleView):
    """The in-process stack of a test, with the levers tests need.

    ``handle`` is the :class:`~sim.harness.stack.StackHandle` (URLs, the parts' handles,
    ``restart(part)``, ``wait_feed()``); ``admin`` its admin client.
    """

    def __init__(self, handle: StackHandle):
        self._handle = handle

    @property
    def handle(self) -> StackHandle:
        return self._handle

    @property
    def clock(self) -> ManualClock:
        """The stack's manual clock (:class:`StackError` on a stack with another)."""
        return self.handle.manual_clock

    @property
    def admin(self) -> AdminClient:
        return self.handle.admin

    # -- time -----------------------------------------------------------------------
    async def advance(self, seconds: float) -> int:
        """Advance every part's clock; return once what it woke has run: the timers'
        callbacks, the tasks they woke, what those sent to the other parts, the timers
        that fell due meanwhile (:meth:`~sim.harness.stack.StackHandle.idle`).  Returns
        the number of timers fired."""
        return await self.handle.advance(seconds)

    async def idle(self) -> None:
        """Wait until nothing in this process can progress without a timer or a peer."""
        await self.handle.idle()

    async def eventually(
        self,
        predicate: Callable[[], bool],
        *,
        within: float = 10.0,
        advance: float = 0.0,
        what: str = "condition",
    ) -> None:
        """Poll ``predicate`` until true (``within`` real seconds: a guard, not a
        verdict); with ``advance``, move the clock that much between polls (to let
        backoff timers fire)."""
        from sim.shared.waiting import wait_until

        await wait_until(
            predicate,
            timeout=within,
            what=what,
            between=(lambda: self.clock.advance(advance)) if advance else None,
        )

    # -- accounts, faults, the broker ---------------------------------------------------
    async def create_account(
        self,
        client_id: str,
        secret: str,
        resources: tuple[str, ...] | list[str] = ("#",),
        actions: str = "R,W",
        *,
        enabled: bool = True,
    ) -> None:
        """Create (or update) an AppServer client account with one grant."""
        from sim.harness.admin import ClientAccount

        await self.admin.appserver.import_accounts(
            [ClientAccount(client_id, secret, tuple(resources), actions, enabled)]
        )

    async def disable_account(self, client_id: str) -> None:
        """Disable an AppServer account (it stays, refused with 403): its tokens are
        revoked upstream (SPEC §5)."""
        await self.admin.appserver.disable_account(client_id)

    async def delete_account(self, client_id: str) -> None:
        """Delete an AppServer account (then unknown, 401); its tokens are revoked too."""
        await self.admin.appserver.delete_account(client_id)

    async def add_fault(self, **fault: Any) -> str:
        """An AuthServer fault, e.g. ``add_fault(operation="apply", kind="outage",
        seconds=60)`` (CONTRACTS.md); returns its id."""
        fault.setdefault("probability", 1.0)
        return await self.admin.authserver.add_fault(fault)

    async def clear_faults(self) -> None:
        await self.admin.authserver.clear_faults()

    async def kick_all(self) -> int:
        """Drop every broker connection at once (wills are published)."""
        return await self.handle.kick_all()

    async def restart(self, part: Part) -> None:
        """Restart ``"broker"``, ``"appserver"`` or ``"authserver"`` on its port."""
        await self.handle.restart(part)

    async def audit(self) -> AuditReport:
        """The device audit (docs/your-appserver.md): which clients broke the seed's
        client rules, with the evidence and the AuthServer's facts on the tokens named;
        ``(await stack.audit()).assert_clean()`` in a test."""
        from sim.harness.audit import with_authserver

        return await with_authserver(self._broker().audit(), self.admin.authserver)

    async def fidelity(self) -> FidelityReport:
        """The broker's fidelity report (docs/fidelity.md)."""
        return self._broker().fidelity()

    def _broker(self) -> BrokerHandle:
        broker = self.handle.broker
        if broker is None:
            raise StackError("this stack's broker is not running")
        return broker

    async def metric(self, part: str, name: str, **labels: str) -> float:
        """Sum of the Prometheus samples ``name`` (or ``name_total``) of ``part``
        ("authserver"/"appserver") whose labels include ``labels``."""
        api = self.admin.authserver if part == "authserver" else self.admin.appserver
        return (await api.metrics()).total(name, **labels)


def stack_config(data_dir: Path | None, profile: str = "provider") -> StackConfig:
    """The stack of a test: free ports, ``data_dir`` (None: a temporary one, removed at
    the end), the broker's ``profile``, cheap AppServer password hashes and its bounded
    drain out of the way (it waits on the manual clock) unless a test sets one."""
    from sim.harness.stack import StackConfig

    return (
        StackConfig(data_dir=data_dir)
        .with_free_ports()
        .with_broker(profile=profile)
        .with_appserver(
            password_hash_cost=4,  # tests do not need slow hashes
            drain_rate_per_s=1e6,
            drain_burst=100_000,
            seed=0,
        )
    )


@contextlib.asynccontextmanager
async def open_stack(config: StackConfig, *, start: float | None = None) -> AsyncIterator[SimStack]:
    """The whole stack in this loop on a manual clock starting at ``start`` (None: the
    real now)."""
    from sim.harness.stack import run_stack
    from sim.shared.clock import ManualClock

    async with run_stack(config, clock=ManualClock(start)) as handle:
        yield SimStack(handle)


def _describe(client: TokenClient) -> str:
    recent = list(client.events.events)[-4:]
    events = "; ".join(
        f"{e.kind.value}" + (f" ({e.detail['error']})" if "error" in e.detail else "")
        for e in recent
    )
    return f"its state is {client.state!r}" + (f", last events: {events}" if events else "")


async def wait_connected(stack: SimStack, client: TokenClient, guard_s: float) -> None:
    """Until ``client`` is connected; :class:`ClientNotConnected` as soon as nothing in
    the stack can change that without the clock (it waits in backoff on the manual
    clock) or the AppServer refused it for good -- naming what it waited for, the
    client's state and last events, and the AuthServer faults in force."""
    from sim.shared.waiting import WaitTimeout, wait_until

    async def settled() -> bool:
        if client.connected or client.state == "refused":
            return True
        await stack.idle()
        return client.connected or client.state in ("refused", "backoff")

    what = f"client {client.client_id} to connect"
    try:
        await wait_until(settled, timeout=guard_s, what=what)
    except WaitTimeout:
        raise ClientNotConnected(
            f"timed out after {guard_s:g} s waiting for {what}: {_describe(client)}"
        ) from None
    if client.connected:
        return
    why = f"{what} failed: {_describe(client)}"
    if client.state == "backoff":
        why += (
            "; it retries on the stack's manual clock, which only moves when told"
            " (await mqtt_stack.advance(seconds))"
        )
    with contextlib.suppress(Exception):
        faults = await stack.admin.authserver.faults()
        if faults:
            kinds = ", ".join(f"{f.get('operation')} {f.get('kind')}" for f in faults)
            why += f"; AuthServer faults in force: {kinds}"
    why += "; make it with connect=False to start it without waiting"
    raise ClientNotConnected(why)


@contextlib.asynccontextmanager
async def client_factory(
    stack: SimStack, store_dir: Path
) -> AsyncIterator[Callable[..., Awaitable[TokenClient]]]:
    """``await make(client_id=None, resources=("test/#",), *, mode="upload",
    connect=True, account=True, **config)`` -> a started TokenClient (connected unless
    ``connect=False``); every one closed at the end."""
    from sim.customer.client import ClientConfig, RefreshPolicy, TokenClient

    made: list[TokenClient] = []
    counter = itertools.count(1)

    async def make(
        client_id: str | None = None,
        resources: tuple[str, ...] = ("test/#",),
        *,
        secret: str = "secret",  # noqa: S107 - a test account
        mode: str = "upload",
        connect: bool = True,
        account: bool = True,
        refresh: RefreshPolicy | None = None,
        **config: Any,
    ) -> TokenClient:
        cid = client_id or f"GID_test@@@c{next(counter)}"
        if account:
            await stack.create_account(cid, secret, resources)
        cfg = ClientConfig(
            client_id=cid,
            secret=secret,
            appserver_url=stack.appserver_url,
            broker_url=stack.broker_url,
            resources=tuple(resources),
            store_dir=config.pop("store_dir", store_dir),
            refresh=refresh or RefreshPolicy(mode=mode),  # type: ignore[arg-type]
            seed=config.pop("seed", 0),
            **config,
        )
        client = TokenClient(cfg, clock=stack.clock)
        made.append(client)
        await client.start()
        if connect:
            await wait_connected(stack, client, CONNECT_GUARD_S)
        return client

    try:
        yield make
    finally:
        for client in made:
            with contextlib.suppress(Exception):
                await client.close()


@contextlib.asynccontextmanager
async def fleet_factory(
    stack: SimStack, store_dir: Path
) -> AsyncIterator[Callable[..., Awaitable[Fleet]]]:
    """``await make(n, **FleetConfig fields)`` -> a started Fleet, every client through
    its first connect; every one closed at the end."""
    from sim.customer.fleet import Fleet, FleetConfig

    made: list[Fleet] = []

    async def make(n: int, **kw: Any) -> Fleet:
        kw.setdefault("store_dir", store_dir / f"fleet{len(made)}")
        kw.setdefault("seed", 0)
        cfg = FleetConfig(
            clients=n, appserver_url=stack.appserver_url, broker_url=stack.broker_url, **kw
        )
        fleet = Fleet(cfg, clock=stack.clock)
        made.append(fleet)
        await fleet.start()
        await asyncio.wait_for(fleet.wait_connected(), 60)
        return fleet

    try:
        yield make
    finally:
        for fleet in made:
            with contextlib.suppress(Exception):
                await fleet.close()


class SessionStack(HandleView):
    """One stack shared by a test session: its own loop in a background thread, the real
    clock (:class:`~sim.harness.background.BackgroundStack`).  Every helper is
    synchronous, so sync and async tests alike use it; URLs for the tests' own clients.
    Time-dependent tests belong on the function-scoped ``mqtt_stack`` (a manual clock)."""

    def __init__(self, background: Any):
        self.background = background

    @property
    def handle(self) -> StackHandle:
        return self.background.handle  # type: ignore[no-any-return]

    def call(self, fn: Callable[[StackHandle], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run ``fn(handle)`` on the stack's loop (any lever of docs/stack.md)."""
        return self.background.call(fn, timeout)  # type: ignore[no-any-return]

    def _lever(self, fn: Callable[[SimStack], Awaitable[T]], timeout: float = 30.0) -> T:
        """One of :class:`SimStack`'s levers, run on the stack's loop."""
        return self.call(lambda h: fn(SimStack(h)), timeout)

    def create_account(
        self,
        client_id: str,
        secret: str,
        resources: tuple[str, ...] | list[str] = ("#",),
        actions: str = "R,W",
        *,
        enabled: bool = True,
    ) -> None:
        self._lever(
            lambda s: s.create_account(client_id, secret, resources, actions, enabled=enabled)
        )

    def disable_account(self, client_id: str) -> None:
        self._lever(lambda s: s.disable_account(client_id))

    def delete_account(self, client_id: str) -> None:
        self._lever(lambda s: s.delete_account(client_id))

    def add_fault(self, **fault: Any) -> str:
        return self._lever(lambda s: s.add_fault(**fault))

    def clear_faults(self) -> None:
        self._lever(lambda s: s.clear_faults())

    def kick_all(self) -> int:
        return self._lever(lambda s: s.kick_all())

    def restart(self, part: Part) -> None:
        self._lever(lambda s: s.restart(part), timeout=60.0)

    def metric(self, part: str, name: str, **labels: str) -> float:
        return self._lever(lambda s: s.metric(part, name, **labels))

    def audit(self) -> AuditReport:
        """The device audit (docs/your-appserver.md), as :meth:`SimStack.audit`."""
        return self._lever(lambda s: s.audit())

    def fidelity(self) -> FidelityReport:
        """The broker's fidelity report (docs/fidelity.md)."""
        return self._lever(lambda s: s.fidelity())


@contextlib.contextmanager
def open_session_stack(config: StackConfig) -> Iterator[SessionStack]:
    from sim.harness.background import BackgroundStack

    with BackgroundStack(config) as background:
        yield SessionStack(background)
