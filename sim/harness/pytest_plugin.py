"""pytest plugin of mqtt-token-sim (entry point ``pytest11: mqtt_token_sim``).

Any project that installs mqtt-token-sim gets these fixtures (docs/stack.md):

* ``mqtt_stack_config`` -- the :class:`~sim.harness.stack.StackConfig` used (override it);
* ``mqtt_stack`` -- AuthServer, broker and AppServer in this process on free ports, a
  temporary data dir and a :class:`~sim.shared.clock.ManualClock`; a :class:`SimStack` with
  helpers to advance time, wait for a condition and inject faults;
* ``mqtt_client_factory`` -- ``await make(...)`` → a started, connected
  :class:`~sim.customer.client.TokenClient` (its AppServer account created on the way);
* ``mqtt_fleet_factory`` -- ``await make(n, ...)`` → a started :class:`~sim.customer.fleet.Fleet`.

Everything is imported lazily, inside the fixtures: a session that uses none of them
pays nothing and cannot be broken by them.  Async fixtures need pytest-asyncio; without
it the fixtures are simply not defined.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from mock_broker.audit import AuditReport
    from sim.customer.client import TokenClient
    from sim.customer.fleet import Fleet
    from sim.harness.admin import AdminClient
    from sim.harness.stack import Part, StackConfig, StackHandle

__all__ = ["SimStack"]


class SimStack:
    """The in-process stack of a test, with the levers tests need.

    ``handle`` is the :class:`~sim.harness.stack.StackHandle` (URLs, the parts' handles,
    ``restart(part)``, ``wait_feed()``); ``admin`` its admin client.
    """

    def __init__(self, handle: StackHandle):
        self.handle = handle
        self.clock = handle.manual_clock

    @property
    def admin(self) -> AdminClient:
        return self.handle.admin

    @property
    def authserver_url(self) -> str:
        return self.handle.authserver_url

    @property
    def broker_url(self) -> str:
        return self.handle.broker_url

    @property
    def appserver_url(self) -> str:
        return self.handle.appserver_url

    @property
    def data_dir(self) -> Path:
        return self.handle.data_dir

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

        broker = self.handle.broker
        if broker is None:
            raise RuntimeError("this stack runs no broker of its own: nothing to audit")
        return await with_authserver(broker.audit(), self.admin.authserver)

    async def metric(self, part: str, name: str, **labels: str) -> float:
        """Sum of the Prometheus samples ``name`` (or ``name_total``) of ``part``
        ("authserver"/"appserver") whose labels include ``labels``."""
        api = self.admin.authserver if part == "authserver" else self.admin.appserver
        return (await api.metrics()).total(name, **labels)


@pytest.fixture
def mqtt_stack_config(tmp_path: Path) -> StackConfig:
    """Override to change the stack (TTL, notice lead, ...); ports stay free ports."""
    from sim.harness.stack import StackConfig

    return (
        StackConfig(data_dir=tmp_path / "stack")
        .with_free_ports()
        .with_appserver(
            password_hash_cost=4,  # tests do not need slow hashes
            # The AppServer's bounded drain waits on the (manual) clock: out of the way
            # unless a test wants it.
            drain_rate_per_s=1e6,
            drain_burst=100_000,
            seed=0,
        )
    )


try:
    import pytest_asyncio

    _HAVE_ASYNCIO = True
except ImportError:  # pragma: no cover - the fixtures need pytest-asyncio
    _HAVE_ASYNCIO = False

if _HAVE_ASYNCIO:

    @pytest_asyncio.fixture
    async def mqtt_stack(mqtt_stack_config: StackConfig) -> AsyncIterator[SimStack]:
        """The whole stack in this process on a manual clock."""
        from sim.harness.stack import run_stack
        from sim.shared.clock import ManualClock

        async with run_stack(mqtt_stack_config, clock=ManualClock()) as handle:
            yield SimStack(handle)

    @pytest_asyncio.fixture
    async def mqtt_client_factory(
        mqtt_stack: SimStack, tmp_path: Path
    ) -> AsyncIterator[Callable[..., Awaitable[TokenClient]]]:
        """``await make(client_id=None, resources=("test/#",), *, mode="upload",
        connect=True, account=True, **config)`` → a started TokenClient."""
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
                await mqtt_stack.create_account(cid, secret, resources)
            cfg = ClientConfig(
                client_id=cid,
                secret=secret,
                appserver_url=mqtt_stack.appserver_url,
                broker_url=mqtt_stack.broker_url,
                resources=tuple(resources),
                store_dir=config.pop("store_dir", tmp_path / "tokens"),
                refresh=refresh or RefreshPolicy(mode=mode),  # type: ignore[arg-type]
                seed=config.pop("seed", 0),
                **config,
            )
            client = TokenClient(cfg, clock=mqtt_stack.clock)
            made.append(client)
            await client.start()
            if connect:
                await asyncio.wait_for(client.wait_connected(), 15)
            return client

        yield make
        for client in made:
            with contextlib.suppress(Exception):
                await client.close()

    @pytest_asyncio.fixture
    async def mqtt_fleet_factory(
        mqtt_stack: SimStack, tmp_path: Path
    ) -> AsyncIterator[Callable[..., Awaitable[Fleet]]]:
        """``await make(n, **FleetConfig fields)`` → a started Fleet (all connected)."""
        from sim.customer.fleet import Fleet, FleetConfig

        made: list[Fleet] = []

        async def make(n: int, **kw: Any) -> Fleet:
            kw.setdefault("store_dir", tmp_path / f"fleet{len(made)}")
            kw.setdefault("seed", 0)
            cfg = FleetConfig(
                clients=n,
                appserver_url=mqtt_stack.appserver_url,
                broker_url=mqtt_stack.broker_url,
                **kw,
            )
            fleet = Fleet(cfg, clock=mqtt_stack.clock)
            made.append(fleet)
            await fleet.start()
            await asyncio.wait_for(fleet.wait_connected(), 60)
            return fleet

        yield make
        for fleet in made:
            with contextlib.suppress(Exception):
                await fleet.close()
