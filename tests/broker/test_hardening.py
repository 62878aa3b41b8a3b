"""amqtt 0.12.1's flaws (issue 3), each shown on stock amqtt and fixed in ours.

Every test runs twice on the same plugin configuration (our token plugin, loaded by
amqtt's own plugin manager): against ``amqtt.broker.Broker`` as released, where it is
an expected failure (``xfail(strict=True)``: if amqtt ever fixes the flaw the test
says so), and against :class:`mock_broker.hardening.HardenedBroker`.
"""

from __future__ import annotations

import asyncio
import select
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from amqtt.broker import Broker

from mock_broker.broker import PLUGIN_PATH
from mock_broker.hardening import HardenedBroker

from .conftest import USER, Minter
from .rawmqtt import PUBLISH, SUBACK, RawClient

pytestmark = pytest.mark.timeout(30)

STOCK = pytest.param("stock", marks=pytest.mark.xfail(strict=True, reason="amqtt 0.12.1 flaw"))
KINDS = [STOCK, "hardened"]


@dataclass
class Target:
    broker: Any
    port: int
    minter: Minter

    async def client(
        self, client_id: str, resources: tuple[str, ...] = ("#",), **kw: Any
    ) -> RawClient:
        password = self.minter.password("RW", resources)
        client, rc, _ = await RawClient.connected(self.port, client_id, USER, password, **kw)
        assert rc == 0
        return client


def _port(broker: Broker) -> int:
    return int(broker._servers["default"].instance.sockets[0].getsockname()[1])


@pytest.fixture(params=KINDS)
async def target(
    request: pytest.FixtureRequest, authority: Any, clock: Any, minter: Minter
) -> AsyncIterator[Target]:
    config = {
        "listeners": {"default": {"type": "tcp", "bind": "127.0.0.1:0"}},
        "plugins": {PLUGIN_PATH: {"authority": authority, "clock": clock, "enabled": True}},
    }
    broker = Broker(config) if request.param == "stock" else HardenedBroker(config)
    await broker.start()
    try:
        yield Target(broker, _port(broker), minter)
    finally:
        await asyncio.wait_for(broker.shutdown(), 15)


async def _receives(client: RawClient, topic: str, within: float = 2.0) -> bytes | None:
    try:
        while True:
            packet = await client.read(within)
            if packet is None:
                return None
            if packet.kind == PUBLISH and packet.topic == topic:
                await client.ack(packet)
                return packet.payload
    except TimeoutError:
        return None


async def test_f1_wrong_password_cannot_touch_a_victims_session(target: Target) -> None:
    victim = await target.client("GID_t@@@victim")
    assert await victim.subscribe(("a/b", 1)) == [1]
    attacker, rc, _ = await RawClient.connected(target.port, "GID_t@@@victim", USER, "RW|forged")
    assert rc == 5
    attacker.close()
    publisher = await target.client("GID_t@@@pub")
    await publisher.publish("a/b", b"still here", qos=1)
    assert await _receives(victim, "a/b") == b"still here"


async def test_f2_refused_login_leaves_no_session(target: Target) -> None:
    for attempt in range(3):
        client, rc, _ = await RawClient.connected(
            target.port, f"GID_t@@@x{attempt}", USER, "RW|nope"
        )
        assert rc == 5
        assert await client.closed()
    _legit, rc, present = await RawClient.connected(
        target.port, "GID_t@@@x0", USER, target.minter.password(), clean=False
    )
    assert (rc, present) == (0, 0)  # no phantom session to resume
    assert not any(cid.startswith("GID_t@@@x1") for cid in target.broker._sessions)


async def test_f3_silent_client_is_dropped_after_one_and_a_half_keepalives(target: Target) -> None:
    watcher = await target.client("GID_t@@@watch")
    await watcher.subscribe(("will/silent", 0))
    silent = await target.client(
        "GID_t@@@silent", keep_alive=1, will=("will/silent", b"gone", 0, False)
    )
    assert await silent.closed(within=4.0)
    assert await _receives(watcher, "will/silent") == b"gone"


async def test_f4_dollar_publish_does_not_stop_the_client(target: Target) -> None:
    client = await target.client("GID_t@@@dollar")
    await client.publish("$SYS/anything", b"x", qos=1)  # PUBACK: the broker has read it
    await client.publish("$foo/bar", b"x", qos=1)
    assert await asyncio.wait_for(client.subscribe(("a/b", 0)), 3) == [0]


async def test_f5_same_client_id_with_clean_session_takes_over(target: Target) -> None:
    first = await target.client("GID_t@@@twin")
    second = await target.client("GID_t@@@twin")
    assert await first.closed(within=3.0)
    assert await second.subscribe(("a/b", 0)) == [0]


async def test_f6_persistent_session_resumes_with_queued_messages(target: Target) -> None:
    sub = await target.client("GID_t@@@durable", clean=False)
    assert await sub.subscribe(("a/b", 1)) == [1]
    await sub.disconnect()
    publisher = await target.client("GID_t@@@pub")
    await publisher.publish("a/b", b"while away", qos=1)
    password = target.minter.password()
    back, rc, present = await RawClient.connected(
        target.port, "GID_t@@@durable", USER, password, clean=False
    )
    assert (rc, present) == (0, 1)
    assert await _receives(back, "a/b") == b"while away"
    # A token refresh by reconnecting, the old connection still up: the session must
    # go on with the new connection (stock amqtt marks it disconnected: messages lost).
    fresh, rc, present = await RawClient.connected(
        target.port, "GID_t@@@durable", USER, target.minter.password(), clean=False
    )
    assert (rc, present) == (0, 1)
    assert await back.closed(within=3.0)
    await publisher.publish("a/b", b"after refresh", qos=1)
    assert await _receives(fresh, "a/b") == b"after refresh"


async def test_f7_unacknowledged_qos1_is_redelivered_after_reconnect(target: Target) -> None:
    sub = await target.client("GID_t@@@noack", clean=False)
    assert await sub.subscribe(("a/b", 1)) == [1]
    publisher = await target.client("GID_t@@@pub")
    await publisher.publish("a/b", b"ack me", qos=1)
    first = await sub.expect(PUBLISH)
    assert first.payload == b"ack me"
    sub.close()  # gone without PUBACK
    password = target.minter.password()
    back, rc, _ = await RawClient.connected(
        target.port, "GID_t@@@noack", USER, password, clean=False
    )
    assert rc == 0
    again = await back.expect(PUBLISH, within=3.0)
    assert (again.payload, again.dup) == (b"ack me", True)


async def test_f8_delivery_qos_is_the_minimum_and_resubscribe_replaces(target: Target) -> None:
    sub = await target.client("GID_t@@@qos")
    assert await sub.subscribe(("a/b", 1)) == [1]
    publisher = await target.client("GID_t@@@pub")
    await publisher.publish("a/b", b"q0", qos=0)
    got = await sub.expect(PUBLISH)
    assert got.qos == 0  # MQTT-3.8.4-6: min(0, 1)
    assert await sub.subscribe(("a/c", 0)) == [0]
    assert await sub.subscribe(("a/c", 1)) == [1]
    await publisher.publish("a/c", b"q1", qos=1)
    got = await sub.expect(PUBLISH)
    assert got.qos == 1  # MQTT-3.8.4-3: the second SUBSCRIBE replaced the QoS


async def test_f9_connect_does_not_leak_retained_messages_of_other_filters(target: Target) -> None:
    owner = await target.client("GID_t@@@owner")
    await owner.subscribe(("secret/#", 0))
    await owner.publish("secret/t", b"for owner only", qos=1, retain=True)
    outsider = await target.client("GID_t@@@outsider", resources=("a/#",))
    await outsider.subscribe(("a/b", 0), wait=False)
    while (packet := await outsider.read()) is not None and packet.kind != SUBACK:
        assert packet.kind != PUBLISH, f"leaked {packet.topic}"


def _somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return 0


async def test_f11_listen_backlog_absorbs_a_storm(target: Target) -> None:
    # The loop is not running while we connect: only the kernel's accept queue (the
    # listen backlog) holds the handshakes.  Stock asyncio's 100 drops the rest.
    somaxconn = _somaxconn()
    if somaxconn < 200:
        pytest.skip(f"the kernel caps every backlog at {somaxconn}")
    socks = []
    try:
        for _ in range(min(400, somaxconn)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", target.port))
            socks.append(sock)
        deadline = time.monotonic() + 1.0
        connected: set[int] = set()
        while time.monotonic() < deadline and len(connected) < len(socks):
            _, writable, _ = select.select(
                [], [s for s in socks if s.fileno() not in connected], [], 0.05
            )
            connected |= {
                s.fileno()
                for s in writable
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            }
        assert len(connected) == len(socks)
    finally:
        for sock in socks:
            sock.close()
