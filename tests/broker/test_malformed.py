"""Malformed MQTT closes the connection (MQTT 3.1.1 §4.8: "if either the Server or Client
encounters a protocol violation, it MUST close the Network Connection", MQTT-4.8.0-1),
and a malformed ``$SYS/uploadToken`` gets the invalid notice, then the disconnect
(SPEC §4: a bad upload is notice code 1, no PUBACK).

Each row is one kind of malformed packet sent, raw, by an authenticated client, with the
conformance statement it breaks.  After it the broker must close the connection at once
(no answer to it, nothing else read), keep serving others, and log no error.
"""

from __future__ import annotations

import json
import struct

import pytest

from mock_broker.broker import BrokerHandle

from .conftest import USER, Minter, connect_raw, until
from .rawmqtt import (
    CONNACK,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    PUBLISH,
    PUBREL,
    SUBACK,
    SUBSCRIBE,
    UNSUBSCRIBE,
    connect_packet,
    packet,
)

pytestmark = pytest.mark.timeout(30)


def _s(raw: bytes) -> bytes:
    return struct.pack("!H", len(raw)) + raw


PID = struct.pack("!H", 7)


def pub(flags: int, topic: bytes, rest: bytes = b"x") -> bytes:
    return packet(PUBLISH, flags, _s(topic) + rest)


def sub(body: bytes, flags: int = 2) -> bytes:
    return packet(SUBSCRIBE, flags, body)


def unsub(body: bytes, flags: int = 2) -> bytes:
    return packet(UNSUBSCRIBE, flags, body)


# (conformance statement, what is wrong, the bytes); MQTT 3.1.1 sections where the rule
# has no statement id of its own (a protocol violation then falls under MQTT-4.8.0-1).
MALFORMED: list[tuple[str, str, bytes]] = [
    # The fixed header: reserved flags, types and the remaining length.
    ("MQTT-2.2.2-2", "PINGREQ with a flag set", packet(PINGREQ, 1, b"")),
    ("MQTT-2.2.2-2", "PUBACK with a flag set", packet(PUBACK, 2, PID)),
    ("MQTT-2.2.2-2", "DISCONNECT with a flag set", packet(DISCONNECT, 8, b"")),
    ("MQTT-3.6.1-1", "PUBREL without its 0010 flags", packet(PUBREL, 0, PID)),
    ("MQTT-3.8.1-1", "SUBSCRIBE without its 0010 flags", sub(PID + _s(b"a") + b"\0", flags=0)),
    ("MQTT-3.10.1-1", "UNSUBSCRIBE without its 0010 flags", unsub(PID + _s(b"a"), flags=0)),
    ("§2.2.3", "remaining length in five bytes", b"\x30\xff\xff\xff\xff\x01"),
    ("§2.2.1", "reserved packet type 0", b"\x00\x00"),
    ("§2.2.1", "reserved packet type 15", b"\xf0\x00"),
    ("MQTT-4.8.0-1", "CONNACK, a packet only a server sends", packet(CONNACK, 0, b"\0\0")),
    ("MQTT-4.8.0-1", "SUBACK, a packet only a server sends", packet(SUBACK, 0, PID + b"\0")),
    ("§3.4.1", "PUBACK of three bytes", packet(PUBACK, 0, PID + b"\0")),
    ("§3.12", "PINGREQ with a body", packet(PINGREQ, 0, b"\0")),
    ("MQTT-3.1.0-2", "a second CONNECT", connect_packet("GID_malformed@@@again", USER, "RW|x")),
    # PUBLISH.
    ("MQTT-3.3.1-4", "PUBLISH with QoS 3", pub(6, b"a/b", PID + b"x")),
    ("MQTT-3.3.1-2", "QoS 0 PUBLISH with DUP set", pub(8, b"a/b")),
    ("MQTT-2.3.1-1", "QoS 1 PUBLISH with packet id 0", pub(2, b"a/b", b"\0\0x")),
    ("MQTT-3.3.2-2", "PUBLISH to a topic with '+'", pub(0, b"a/+")),
    ("MQTT-3.3.2-2", "PUBLISH to a topic with '#'", pub(0, b"a/#")),
    ("MQTT-4.7.3-1", "PUBLISH to an empty topic", pub(0, b"")),
    ("MQTT-1.5.3-1", "PUBLISH topic not UTF-8", pub(0, b"a/\xff\xfe")),
    ("MQTT-1.5.3-1", "PUBLISH topic with a UTF-16 surrogate", pub(0, b"a/\xed\xa0\x80")),
    ("MQTT-1.5.3-2", "PUBLISH topic with U+0000", pub(0, b"a/\x00")),
    ("§3.3.2.1", "PUBLISH shorter than its topic", packet(PUBLISH, 0, b"\x00\x09a/b")),
    # SUBSCRIBE.
    ("MQTT-3.8.3-3", "SUBSCRIBE with no topic filter", sub(PID)),
    ("MQTT-2.3.1-1", "SUBSCRIBE with packet id 0", sub(b"\0\0" + _s(b"a") + b"\0")),
    ("MQTT-3.8.3-4", "SUBSCRIBE asking QoS 3", sub(PID + _s(b"a") + b"\x03")),
    ("MQTT-3.8.3-4", "SUBSCRIBE with reserved QoS bits", sub(PID + _s(b"a") + b"\x81")),
    ("§3.8.3", "SUBSCRIBE filter without its QoS byte", sub(PID + _s(b"a"))),
    ("MQTT-1.5.3-1", "SUBSCRIBE filter not UTF-8", sub(PID + _s(b"\xc3(") + b"\0")),
    ("MQTT-4.7.1-2", "SUBSCRIBE '#' not last", sub(PID + _s(b"a/#/b") + b"\0")),
    ("MQTT-4.7.1-3", "SUBSCRIBE '+' inside a level", sub(PID + _s(b"a/b+") + b"\0")),
    ("MQTT-4.7.3-1", "SUBSCRIBE an empty filter", sub(PID + _s(b"") + b"\0")),
    # UNSUBSCRIBE.
    ("MQTT-3.10.3-2", "UNSUBSCRIBE with no topic filter", unsub(PID)),
    ("MQTT-2.3.1-1", "UNSUBSCRIBE with packet id 0", unsub(b"\0\0" + _s(b"a"))),
    ("MQTT-1.5.3-1", "UNSUBSCRIBE filter not UTF-8", unsub(PID + _s(b"\xff"))),
    ("MQTT-4.7.1-2", "UNSUBSCRIBE '#' not last", unsub(PID + _s(b"#/a"))),
]


@pytest.mark.parametrize(
    ("rule", "data"),
    [pytest.param(rule, data, id=f"{rule} {what}") for rule, what, data in MALFORMED],
)
async def test_malformed_packet_closes_the_connection(
    broker: BrokerHandle, minter: Minter, rule: str, data: bytes
) -> None:
    client = await connect_raw(broker.port, "GID_malformed@@@bad", minter.password())
    assert await client.subscribe(("a/b", 1)) == [1]  # a working connection first
    await client.send(data)
    answered = []
    while (got := await client.read(within=5.0)) is not None:  # TimeoutError: left open
        answered.append(got.kind)
    assert answered == [], f"{rule}: answered {answered} instead of closing"
    reason = "second_connect" if rule == "MQTT-3.1.0-2" else "protocol"
    await until(lambda: broker.metrics.value("mqtt_broker_disconnects_total", reason=reason) == 1)
    # The broker goes on serving.
    other = await connect_raw(broker.port, "GID_malformed@@@good", minter.password())
    assert await other.subscribe(("a/b", 0)) == [0]


async def test_a_malformed_disconnect_publishes_the_will(
    broker: BrokerHandle, minter: Minter
) -> None:
    """A DISCONNECT with reserved flags is no DISCONNECT (MQTT-2.2.2-2): the connection
    ends abnormally, so the will goes out (MQTT-3.1.2-8)."""
    watcher = await connect_raw(broker.port, "GID_malformed@@@watch", minter.password())
    assert await watcher.subscribe(("will/#", 0)) == [0]
    client = await connect_raw(
        broker.port, "GID_malformed@@@will", minter.password(), will=("will/m", b"gone", 0, False)
    )
    await client.send(packet(DISCONNECT, 8, b""))
    assert await client.closed()
    got = await watcher.expect(PUBLISH)
    assert (got.topic, got.payload) == ("will/m", b"gone")


# -- $SYS/uploadToken ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[" * 30_000 + b"]" * 30_000, id="nested arrays"),
        pytest.param(
            b'{"token": ' + b"[" * 20_000 + b"]" * 20_000 + b', "type": "R"}', id="deep token"
        ),
        pytest.param(b'{"type": "R", "token": {"a": ' * 2_000 + b"1" + b"}" * 2_000, id="objects"),
    ],
)
async def test_malformed_upload_gets_the_invalid_notice_then_the_disconnect(
    broker: BrokerHandle, minter: Minter, payload: bytes
) -> None:
    client = await connect_raw(
        broker.port, "GID_malformed@@@upload", minter.password("R", ("a/#",))
    )
    await client.publish("$SYS/uploadToken", payload, qos=1, wait=False)
    packets = []
    while (got := await client.read()) is not None:
        packets.append(got)
    assert [(p.kind, p.topic) for p in packets] == [(PUBLISH, "$SYS/tokenInvalidNotice")]
    assert json.loads(packets[0].payload) == {"code": 1, "type": None}  # and no PUBACK
    assert broker.metrics.value("mqtt_broker_uploads_total", outcome="malformed") == 1
