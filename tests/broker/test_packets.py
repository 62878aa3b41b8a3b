"""The pure packet parser (mock_broker.packets): valid packets come back as they were
built, anything else is :class:`MalformedPacket` naming its rule, never another error.
No event loop, no port."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mock_broker.packets import (
    Ack,
    Bare,
    MalformedPacket,
    PacketType,
    Publish,
    Subscribe,
    Unsubscribe,
    check_fixed_header,
    parse_packet,
)

from .rawmqtt import _str, packet


def parse(raw: bytes) -> object:
    """Parse one whole packet as the connection does (one-byte remaining length)."""
    kind = check_fixed_header(raw[0])
    length = raw[1]
    assert length < 128 and len(raw) == 2 + length
    return parse_packet(kind, raw[0] & 0x0F, raw[2:])


def test_valid_packets() -> None:
    pid = struct.pack("!H", 9)
    assert parse(packet(3, 0b1011, _str("a/b") + pid + b"hi")) == Publish(
        "a/b", b"hi", 1, True, True, 9
    )
    assert parse(packet(3, 0, _str("$SYS/uploadToken") + b"{}")) == Publish(
        "$SYS/uploadToken", b"{}", 0, False, False, 0
    )
    assert parse(packet(8, 2, pid + _str("a/+") + b"\x01" + _str("#") + b"\x02")) == Subscribe(
        9, (("a/+", 1), ("#", 2))
    )
    assert parse(packet(10, 2, pid + _str("a/#") + _str("b"))) == Unsubscribe(9, ("a/#", "b"))
    assert parse(packet(6, 2, pid)) == Ack(PacketType.PUBREL, 9)
    assert parse(packet(4, 0, b"\x00\x00")) == Ack(PacketType.PUBACK, 0)  # matches nothing
    assert parse(packet(12, 0, b"")) == Bare(PacketType.PINGREQ)
    assert parse(packet(14, 0, b"")) == Bare(PacketType.DISCONNECT)


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (packet(3, 6, _str("a") + b"\0\1"), "MQTT-3.3.1-4"),
        (packet(8, 2, b"\0\1"), "MQTT-3.8.3-3"),
        (packet(10, 2, b"\0\1"), "MQTT-3.10.3-2"),
        (packet(8, 0, b"\0\1" + _str("a") + b"\0"), "MQTT-3.8.1-1"),
        (packet(12, 4, b""), "MQTT-2.2.2-2"),
        (packet(3, 0, _str(b"\xc0\x80") + b"x"), "MQTT-1.5.3-1"),  # overlong NUL
        (packet(3, 0, _str("a/+")), "MQTT-3.3.2-2"),
        (packet(8, 2, b"\0\1" + _str("a+") + b"\0"), "MQTT-4.7.1-3"),
    ],
)
def test_each_malformation_names_its_rule(raw: bytes, rule: str) -> None:
    with pytest.raises(MalformedPacket) as caught:
        parse(raw)
    assert caught.value.rule == rule


@given(st.integers(0, 255), st.binary(max_size=64))
def test_any_bytes_parse_or_are_malformed(first: int, body: bytes) -> None:
    try:
        kind = check_fixed_header(first)
        if kind is not PacketType.CONNECT:
            parse_packet(kind, first & 0x0F, body)
    except MalformedPacket:
        pass


@given(
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00+#"),
        min_size=1,
        max_size=40,
    ),
    st.binary(max_size=40),
    st.integers(0, 2),
    st.booleans(),
    st.integers(1, 65535),
)
def test_publish_round_trip(topic: str, data: bytes, qos: int, retain: bool, pid: int) -> None:
    body = _str(topic) + (struct.pack("!H", pid) if qos else b"") + data
    got = parse_packet(PacketType.PUBLISH, (qos << 1) | int(retain), body)
    assert got == Publish(topic, data, qos, retain, False, pid if qos else 0)
