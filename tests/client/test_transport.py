"""The MQTT transport (gmqtt adapter): refusals apart from network errors, no hangs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from sim.customer.client.errors import NetworkError, NotAuthorized
from sim.customer.client.transport import BrokerAddress, Connection, parse_broker_url
from sim.harness.pytest_plugin import SimStack

pytestmark = pytest.mark.timeout(30)


async def _server(handler) -> tuple[asyncio.AbstractServer, BrokerAddress]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, BrokerAddress("127.0.0.1", port)


async def test_closed_before_connack_is_a_network_error_at_once() -> None:
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)  # the CONNECT
        writer.close()

    server, address = await _server(slam)
    async with server:
        conn = Connection("GID_test@@@b", on_message=lambda _m: None)
        t = time.monotonic()
        with pytest.raises(NetworkError, match="before CONNACK"):
            await conn.open(address, username=None, password=None, connect_timeout=10)
        assert time.monotonic() - t < 5
        assert conn.lost.done() and not conn.is_open


async def test_silent_server_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    server, address = await _server(silent)
    async with server:
        conn = Connection("GID_test@@@b", on_message=lambda _m: None)
        with pytest.raises(NetworkError, match=r"no CONNACK within 0\.3"):
            await conn.open(address, username=None, password=None, connect_timeout=0.3)


async def test_refused_port_is_a_network_error() -> None:
    server, address = await _server(lambda r, w: None)
    server.close()
    await server.wait_closed()
    conn = Connection("GID_test@@@b", on_message=lambda _m: None)
    with pytest.raises(NetworkError, match="ConnectionRefused"):
        await conn.open(address, username=None, password=None)


async def test_bad_token_is_not_authorized_not_a_network_error(mqtt_stack: SimStack) -> None:
    address = parse_broker_url(mqtt_stack.broker_url)
    for _ in range(5):  # the refusal must never turn into a network error (race on close)
        conn = Connection("GID_test@@@b", on_message=lambda _m: None)
        with pytest.raises(NotAuthorized) as info:
            await conn.open(address, username="Token|dev-ak|mqtt-dev", password="RW|bogus")
        assert info.value.return_code in (4, 5)


async def test_cancelling_open_from_outside_still_cancels() -> None:
    got_connect = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # the CONNECT has begun to arrive: the open waits for a CONNACK
        got_connect.set()
        await reader.read()

    server, address = await _server(silent)
    async with server:
        conn = Connection("GID_test@@@b", on_message=lambda _m: None)
        task = asyncio.ensure_future(conn.open(address, username=None, password=None))
        await asyncio.wait_for(got_connect.wait(), 5)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_a_lost_connection_spawns_no_gmqtt_reconnect_task() -> None:
    # A mass kick loses thousands of connections at once: gmqtt would wrap a (no-op)
    # reconnect coroutine in a Task for each; the SDK hands it a resolved future instead.
    drop = asyncio.Event()

    async def accept_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)  # the CONNECT
        writer.write(b"\x20\x02\x00\x00")  # CONNACK, accepted
        await drop.wait()
        writer.close()

    server, address = await _server(accept_then_drop)
    loop = asyncio.get_running_loop()
    created: list[str] = []

    def factory(loop_: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
        created.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop_, **kw)

    async with server:
        conn = Connection("GID_test@@@b", on_message=lambda _m: None)
        await conn.open(address, username=None, password=None)
        loop.set_task_factory(factory)
        try:
            drop.set()
            assert await asyncio.wait_for(conn.lost, 5) == "disconnected"
            for _ in range(3):
                await asyncio.sleep(0)  # what the loss scheduled has run
        finally:
            loop.set_task_factory(None)
    assert not [name for name in created if "reconnect" in name], created
