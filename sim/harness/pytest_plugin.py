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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from sim.customer.client import TokenClient
    from sim.customer.fleet import Fleet
    from sim.harness.stack import StackConfig, StackHandle

__all__ = ["SimStack"]


class SimStack:
    """The in-process stack of a test, with the levers tests need.

    ``handle`` is the :class:`~sim.harness.stack.StackHandle` (URLs, the parts' handles).
    """

    def __init__(self, handle: StackHandle):
        self.handle = handle
        self.clock = handle.manual_clock

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
        return self.handle.config.data_dir

    # -- time -----------------------------------------------------------------------
    async def advance(self, seconds: float, *, settle: int = 20) -> int:
        """Advance every part's clock, then let the loop run what woke up."""
        fired = self.clock.advance(seconds)
        for _ in range(settle):
            await asyncio.sleep(0)
        return fired

    async def eventually(
        self,
        predicate: Callable[[], bool],
        *,
        within: float = 10.0,
        advance: float = 0.0,
        what: str = "condition",
    ) -> None:
        """Poll ``predicate`` until true (``within`` real seconds); with ``advance``,
        move the clock that much between polls (to let backoff timers fire)."""
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            if advance:
                self.clock.advance(advance)
            await asyncio.sleep(0.005)

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
        await self.handle.create_accounts(
            [
                {
                    "client_id": client_id,
                    "secret": secret,
                    "grants": [{"resources": list(resources), "actions": actions}],
                    "enabled": enabled,
                }
            ]
        )

    async def disable_account(self, client_id: str) -> None:
        """Disable an AppServer account: its tokens are revoked upstream (SPEC §5)."""
        assert self.handle.http is not None
        url = f"{self.appserver_url}/admin/accounts/{client_id}"
        async with self.handle.http.delete(url) as resp:
            if resp.status >= 300:
                raise RuntimeError(f"disabling {client_id} failed: {resp.status}")

    async def add_fault(self, **fault: Any) -> str:
        """An AuthServer fault, e.g. ``add_fault(operation="apply", kind="outage",
        seconds=60)`` (CONTRACTS.md); returns its id."""
        fault.setdefault("probability", 1.0)
        return await self.handle.add_fault(fault)

    async def clear_faults(self) -> None:
        await self.handle.clear_faults()

    async def kick_all(self) -> None:
        """Drop every broker connection at once (wills are published)."""
        await self.handle.kick_all()

    async def metric(self, part: str, name: str, **labels: str) -> float:
        """Sum of a Prometheus sample of ``part`` ("authserver"/"appserver") whose
        labels include ``labels``."""
        assert self.handle.http is not None
        base = self.authserver_url if part == "authserver" else self.appserver_url
        async with self.handle.http.get(f"{base}/admin/metrics") as resp:
            text = await resp.text()
        return sum_metric(text, name, labels)


def sum_metric(text: str, name: str, labels: dict[str, str]) -> float:
    """Sum the samples ``name{...}`` of a Prometheus text whose labels include ``labels``
    (``name_total`` is accepted for counters)."""
    total = 0.0
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric not in (name, f"{name}_total"):
            continue
        found = dict(part.split("=", 1) for part in rest.rstrip("}").split(",") if "=" in part)
        if all(found.get(k, "").strip('"') == v for k, v in labels.items()):
            total += float(value)
    return total


@pytest.fixture
def mqtt_stack_config(tmp_path: Path) -> StackConfig:
    """Override to change the stack (TTL, notice lead, ...); ports stay free ports."""
    from sim.harness.stack import StackConfig

    return StackConfig(
        data_dir=tmp_path / "stack",
        authserver_port=0,
        broker_port=0,
        appserver_port=0,
        password_hash_cost=4,  # tests do not need slow hashes
        # The AppServer's bounded drain waits on the (manual) clock: out of the way
        # unless a test wants it.
        appserver_drain_rate_per_s=1e6,
        appserver_drain_burst=100_000,
        seed=0,
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
