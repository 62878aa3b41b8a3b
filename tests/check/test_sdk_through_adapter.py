"""The SDK and the fleet ask a foreign AppServer through its adapter, then connect."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sim.customer.adapter import Credentials, load_adapter
from sim.customer.client import ClientConfig, TokenClient
from sim.customer.client.appserver_api import grant_from_credentials
from sim.customer.client.errors import BadAppServerAnswer
from sim.customer.fleet import Fleet, FleetConfig
from sim.harness.stack import StackHandle
from sim.shared.clock import SystemClock
from sim.shared.devaccount import DEV_INSTANCE
from tests.clirun import cli_async

from .conftest import ADAPTER, foreign_appserver, stack


async def shop_parent_topic(handle: StackHandle) -> None:
    """The provider's broker wants the parent topic ``shop`` on the instance (SPEC §4a)."""
    await handle.admin.authserver.add_parent_topic(DEV_INSTANCE, "shop")


async def test_a_token_client_asks_through_the_adapter_and_connects(tmp_path: Path) -> None:
    adapter = load_adapter(ADAPTER)
    async with (
        stack(tmp_path, SystemClock()) as handle,
        foreign_appserver(handle, tmp_path / "f.sqlite", manual=False) as foreign,
    ):
        await shop_parent_topic(handle)
        config = ClientConfig(
            client_id="GID_shop@@@dev-5",
            secret="secret-5",
            appserver_url=foreign.url,
            broker_url=handle.broker_url,
            resources=("shop/dev-5/#",),
            store_dir=tmp_path / "tokens",
            adapter=adapter,
        )
        async with TokenClient(config, clock=SystemClock()) as client:
            assert await client.subscribe("shop/dev-5/in") == 1
            await client.publish("shop/dev-5/in", b"hello")
            msg = await asyncio.wait_for(client.messages.get(), 10)
            assert msg.payload == b"hello"
            token = client.token
            assert token is not None and token.username == "Token|dev-ak|mqtt-dev"
        # restarted, the client connects with its persisted token: no second ask
        async with TokenClient(config, clock=SystemClock()) as again:
            assert again.counters.tokens_from_store == 1 and again.counters.token_requests == 0


async def test_a_fleet_runs_the_adapters_clients(tmp_path: Path) -> None:
    adapter = load_adapter(ADAPTER)
    async with (
        stack(tmp_path, SystemClock()) as handle,
        foreign_appserver(handle, tmp_path / "f.sqlite", manual=False) as foreign,
    ):
        await shop_parent_topic(handle)
        config = FleetConfig(
            clients=4,
            appserver_url=foreign.url,
            broker_url=handle.broker_url,
            adapter=adapter,
            fsync=False,
        )
        async with Fleet(config, clock=SystemClock()) as fleet:
            await asyncio.wait_for(fleet.wait_connected(), 60)
            assert fleet.connected_count == 4, fleet.states()
            assert [c.client_id for c in fleet.clients] == [
                f"GID_shop@@@dev-{n}" for n in range(1, 5)
            ]
            assert await fleet.create_accounts() == 0  # its accounts are the AppServer's own


def test_a_fleet_needs_the_adapters_clients() -> None:
    adapter = load_adapter(ADAPTER)
    with pytest.raises(ValueError, match="count is 200: fewer than the 500 clients"):
        FleetConfig(clients=500, appserver_url="http://x", broker_url="mqtt://x", adapter=adapter)


async def test_fleet_cli_refuses_a_bad_adapter_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[request]\nurl = 3\n")
    status, _, err = await cli_async("fleet", "--clients", "1", "--adapter", str(bad))
    assert status == 2
    assert (
        err == f"mqtt-token-sim fleet: {bad}:2: [request] url: must be a string, got an integer\n"
    )


def test_the_sdk_needs_one_token_and_its_expiry() -> None:
    """Seed, client rules: the client must know its token's validity period."""
    with pytest.raises(BadAppServerAnswer, match="validity period"):
        grant_from_credentials(
            Credentials("Token|ak|i", "RW|t", None), actions="R,W", resources=("a/#",)
        )
    with pytest.raises(BadAppServerAnswer, match="carries 2 tokens"):
        grant_from_credentials(
            Credentials("Token|ak|i", "R|t1|W|t2", 1), actions="R,W", resources=("a/#",)
        )
    grant = grant_from_credentials(
        Credentials("Token|ak|inst", "W|t", 5, stale=True), actions="W", resources=("b", "a")
    )
    assert (grant.token.token, grant.token.instance_id, grant.stale) == ("t", "inst", True)
    assert grant.token.resources == ("a", "b")
