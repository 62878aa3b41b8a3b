"""amqtt 0.12.1's flaws (docs/broker.md, F1-F11), each shown on stock amqtt and fixed in ours.

Every test runs twice under the same token rules (one :class:`TokenPolicy`): against
``amqtt.broker.Broker`` as released, the rules loaded as our amqtt plugin, where it is an
expected failure (``xfail(strict=True)``: if amqtt ever fixes the flaw the test says so),
and against :class:`mock_broker.hardened.HardenedBroker` given the policy itself.
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from amqtt.broker import Broker

from mock_broker.config import BrokerConfig
from mock_broker.hardened import HardenedBroker
from mock_broker.hardened.amqtt_boundary import listener_server
from mock_broker.plugin import PLUGIN_PATH
from mock_broker.token_policy import TokenPolicy

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
    patience: float
    """Real seconds to wait for what must happen.  Long for ours, where only load could
    delay it; short on stock amqtt, where each test is expected to fail anyway."""

    async def client(
        self, client_id: str, resources: tuple[str, ...] = ("#",), **kw: Any
    ) -> RawClient:
        password = self.minter.password("RW", resources)
        client, rc, _ = await RawClient.connected(self.port, client_id, USER, password, **kw)
        assert rc == 0
        return client


def _listening_socket(broker: Any) -> Any:
    server = listener_server(broker) if isinstance(broker, Broker) else broker.listener()
    return server.sockets[0]


@pytest.fixture(params=KINDS)
async def target(
    request: pytest.FixtureRequest, authority: Any, clock: Any, minter: Minter
) -> AsyncIterator[Target]:
    policy = TokenPolicy(BrokerConfig(port=0, profile="mqtt"), clock=clock, authority=authority)
    listeners = {"default": {"type": "tcp", "bind": "127.0.0.1:0"}}
    broker: Any
    if request.param == "stock":
        broker = Broker({"listeners": listeners, "plugins": {PLUGIN_PATH: {"policy": policy}}})
    else:
        broker = HardenedBroker(listeners, policy)
    await broker.start()
    try:
        port = int(_listening_socket(broker).getsockname()[1])
        yield Target(broker, port, minter, 2.0 if request.param == "stock" else 10.0)
    finally:
        await asyncio.wait_for(broker.shutdown(), 15)
        policy.close()


async def _receives(client: RawClient, topic: str, within: float) -> bytes | None:
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
    victim = await target.client("GID_test@@@victim")
    assert await victim.subscribe(("a/b", 1)) == [1]
    attacker, rc, _ = await RawClient.connected(target.port, "GID_test@@@victim", USER, "RW|forged")
    assert rc == 5
    attacker.close()
    publisher = await target.client("GID_test@@@pub")
    await publisher.publish("a/b", b"still here", qos=1)
    assert await _receives(victim, "a/b", target.patience) == b"still here"


async def test_f2_refused_login_leaves_no_session(target: Target) -> None:
    for attempt in range(3):
        client, rc, _ = await RawClient.connected(
            target.port, f"GID_test@@@x{attempt}", USER, "RW|nope"
        )
        assert rc == 5
        assert await client.closed(target.patience)
    _legit, rc, present = await RawClient.connected(
        target.port, "GID_test@@@x0", USER, target.minter.password(), clean=False
    )
    assert (rc, present) == (0, 0)  # no phantom session to resume
    assert "GID_test@@@x1" not in target.broker.sessions


async def test_f3_silent_client_is_dropped_after_one_and_a_half_keepalives(target: Target) -> None:
    watcher = await target.client("GID_test@@@watch")
    await watcher.subscribe(("will/silent", 0))
    silent = await target.client(
        "GID_test@@@silent", keep_alive=1, will=("will/silent", b"gone", 0, False)
    )
    assert await silent.closed(target.patience)  # due at 1.5 s; never on stock
    assert await _receives(watcher, "will/silent", target.patience) == b"gone"


async def test_f4_dollar_publish_does_not_stop_the_client(target: Target) -> None:
    client = await target.client("GID_test@@@dollar", resources=("#", "$foo/bar"))
    await client.publish("$foo/bar", b"x", qos=1)  # PUBACK: the broker has read it
    assert await client.subscribe(("a/b", 0), within=target.patience) == [0]  # still answers


async def test_f5_same_client_id_with_clean_session_takes_over(target: Target) -> None:
    first = await target.client("GID_test@@@twin")
    second = await target.client("GID_test@@@twin")
    assert await first.closed(target.patience)
    assert await second.subscribe(("a/b", 0)) == [0]


async def test_f6_persistent_session_resumes_with_queued_messages(target: Target) -> None:
    sub = await target.client("GID_test@@@durable", clean=False)
    assert await sub.subscribe(("a/b", 1)) == [1]
    await sub.disconnect()
    publisher = await target.client("GID_test@@@pub")
    await publisher.publish("a/b", b"while away", qos=1)
    password = target.minter.password()
    back, rc, present = await RawClient.connected(
        target.port, "GID_test@@@durable", USER, password, clean=False
    )
    assert (rc, present) == (0, 1)
    assert await _receives(back, "a/b", target.patience) == b"while away"
    # A token refresh by reconnecting, the old connection still up: the session must
    # go on with the new connection (stock amqtt marks it disconnected: messages lost).
    fresh, rc, present = await RawClient.connected(
        target.port, "GID_test@@@durable", USER, target.minter.password(), clean=False
    )
    assert (rc, present) == (0, 1)
    assert await back.closed(target.patience)
    await publisher.publish("a/b", b"after refresh", qos=1)
    assert await _receives(fresh, "a/b", target.patience) == b"after refresh"


async def test_f7_unacknowledged_qos1_is_redelivered_after_reconnect(target: Target) -> None:
    sub = await target.client("GID_test@@@noack", clean=False)
    assert await sub.subscribe(("a/b", 1)) == [1]
    publisher = await target.client("GID_test@@@pub")
    await publisher.publish("a/b", b"ack me", qos=1)
    first = await sub.expect(PUBLISH)
    assert first.payload == b"ack me"
    sub.close()  # gone without PUBACK
    password = target.minter.password()
    back, rc, _ = await RawClient.connected(
        target.port, "GID_test@@@noack", USER, password, clean=False
    )
    assert rc == 0
    again = await back.expect(PUBLISH, target.patience)
    assert (again.payload, again.dup) == (b"ack me", True)


async def test_f8_delivery_qos_is_the_minimum_and_resubscribe_replaces(target: Target) -> None:
    sub = await target.client("GID_test@@@qos")
    assert await sub.subscribe(("a/b", 1)) == [1]
    publisher = await target.client("GID_test@@@pub")
    await publisher.publish("a/b", b"q0", qos=0)
    got = await sub.expect(PUBLISH, target.patience)
    assert got.qos == 0  # MQTT-3.8.4-6: min(0, 1)
    assert await sub.subscribe(("a/c", 0)) == [0]
    assert await sub.subscribe(("a/c", 1)) == [1]
    await publisher.publish("a/c", b"q1", qos=1)
    got = await sub.expect(PUBLISH, target.patience)
    assert got.qos == 1  # MQTT-3.8.4-3: the second SUBSCRIBE replaced the QoS


async def test_f9_connect_does_not_leak_retained_messages_of_other_filters(target: Target) -> None:
    owner = await target.client("GID_test@@@owner")
    await owner.subscribe(("secret/#", 0))
    await owner.publish("secret/t", b"for owner only", qos=1, retain=True)
    outsider = await target.client("GID_test@@@outsider", resources=("a/#",))
    await outsider.subscribe(("a/b", 0), wait=False)
    before_suback: list[Any] = []
    while (packet := await outsider.read(target.patience)) is not None and packet.kind != SUBACK:
        before_suback.append(packet)
    assert packet is not None, "the connection closed before the SUBACK"
    # Still connected: its own message comes back, and is the first PUBLISH since the
    # CONNECT (a leaked retained message would have been sent before it).
    await outsider.publish("a/b", b"marker", qos=1)
    after = await outsider.expect(PUBLISH, target.patience)
    leaked = [p.topic for p in before_suback if p.kind == PUBLISH]
    assert (leaked, after.topic, after.payload) == ([], "a/b", b"marker")


def _somaxconn() -> int:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return 0


def _accept_queue(sock: Any) -> int:
    """Handshakes completed and waiting to be accepted (Linux ``tcp_info.tcpi_unacked``
    of a listening socket)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 24)[0])


@pytest.mark.skipif(sys.platform != "linux", reason="reads the accept queue via TCP_INFO")
async def test_f11_listen_backlog_absorbs_a_storm(target: Target) -> None:
    # The event loop does not run while we connect: only the kernel's accept queue (the
    # listen backlog) holds the handshakes.  With asyncio's 100 the kernel drops the
    # SYNs beyond it, and the queue never holds them all (it is never drained here).
    somaxconn = _somaxconn()
    if somaxconn < 200:
        pytest.skip(f"the kernel caps every backlog at {somaxconn}")
    storm = min(400, somaxconn)
    listening = _listening_socket(target.broker)
    socks = []
    try:
        for _ in range(storm):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", target.port))
            socks.append(sock)
        deadline = asyncio.get_running_loop().time() + target.patience
        while _accept_queue(listening) < storm:  # poll with a deadline, the loop blocked
            assert asyncio.get_running_loop().time() < deadline, _accept_queue(listening)
            select.select([], [], [], 0.01)
    finally:
        for sock in socks:
            sock.close()
