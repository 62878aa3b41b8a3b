"""The packets a client sends after its CONNECT, parsed from their bytes (pure; MQTT 3.1.1
§2, §3).

amqtt's decoders are lenient where MQTT says the server MUST close: they ignore reserved
flags and QoS 3, turn a topic that is not UTF-8 into the text ``"b'\\xff'"``, accept a
SUBSCRIBE or UNSUBSCRIBE without topics, and read past a packet whose fields are longer
than the packet.  Here each packet is read whole (its fixed header says how long it is)
and parsed strictly; anything MQTT calls malformed raises :class:`MalformedPacket`,
naming the conformance statement it breaks, and the broker closes the connection
(MQTT-4.8.0-1) without answering it.

Topic names and filters are checked for what MQTT itself requires (UTF-8, no NUL, not
empty, wildcards only in filters and in their places); what the token rules or the
provider's limits allow is the policy's question, asked later.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sim.shared.protocol import InvalidTopic, validate_filter, validate_topic

__all__ = [
    "Ack",
    "Bare",
    "ClientPacket",
    "MalformedPacket",
    "PacketType",
    "Publish",
    "Subscribe",
    "Unsubscribe",
    "check_fixed_header",
    "parse_packet",
]


class PacketType(enum.IntEnum):
    """Control packet types (MQTT 3.1.1 §2.2.1); 0 and 15 are reserved."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14


class MalformedPacket(ValueError):
    """A packet MQTT 3.1.1 calls malformed or a protocol violation: close (MQTT-4.8.0-1)."""

    def __init__(self, rule: str, what: str) -> None:
        super().__init__(f"{what} ({rule})")
        self.rule = rule


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    data: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int  # 0 for QoS 0 (which carries none)


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    filters: tuple[tuple[str, int], ...]  # (filter, requested QoS), at least one


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    filters: tuple[str, ...]  # at least one


@dataclass(frozen=True, slots=True)
class Ack:
    """PUBACK, PUBREC, PUBREL or PUBCOMP."""

    kind: PacketType
    packet_id: int


@dataclass(frozen=True, slots=True)
class Bare:
    """PINGREQ or DISCONNECT: a fixed header and nothing else."""

    kind: PacketType


ClientPacket = Publish | Subscribe | Unsubscribe | Ack | Bare

# The flags each type must carry (MQTT-2.2.2-1); PUBLISH's are its DUP, QoS and RETAIN.
_FLAGS = {
    PacketType.PUBREL: 0b0010,  # MQTT-3.6.1-1
    PacketType.SUBSCRIBE: 0b0010,  # MQTT-3.8.1-1
    PacketType.UNSUBSCRIBE: 0b0010,  # MQTT-3.10.1-1
}
_FLAG_RULES = {
    PacketType.PUBREL: "MQTT-3.6.1-1",
    PacketType.SUBSCRIBE: "MQTT-3.8.1-1",
    PacketType.UNSUBSCRIBE: "MQTT-3.10.1-1",
}
_FROM_CLIENT = frozenset(PacketType) - {
    PacketType.CONNACK, PacketType.SUBACK, PacketType.UNSUBACK, PacketType.PINGRESP,
}  # fmt: skip


def check_fixed_header(first: int) -> PacketType:
    """The type of a packet from a client, by its first byte; :class:`MalformedPacket`
    for a reserved type, a packet only a server sends, or flags MQTT forbids.  Checked
    before the rest of the packet is read."""
    raw_type, flags = first >> 4, first & 0x0F
    if raw_type in (0, 15):
        raise MalformedPacket("MQTT-4.8.0-1", f"reserved packet type {raw_type} (§2.2.1)")
    kind = PacketType(raw_type)
    if kind not in _FROM_CLIENT:
        raise MalformedPacket("MQTT-4.8.0-1", f"{kind.name} is a packet only a server sends")
    if kind is PacketType.PUBLISH:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise MalformedPacket("MQTT-3.3.1-4", "PUBLISH with QoS 3")
        if qos == 0 and flags & 0x08:
            raise MalformedPacket("MQTT-3.3.1-2", "QoS 0 PUBLISH with DUP set")
    elif flags != _FLAGS.get(kind, 0):
        rule = _FLAG_RULES.get(kind, "MQTT-2.2.2-2")
        raise MalformedPacket(rule, f"{kind.name} with reserved flags {flags:04b}")
    return kind


class _Reader:
    """Fields of one packet's body, in order; running past its end is malformed."""

    __slots__ = ("body", "pos")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    @property
    def left(self) -> int:
        return len(self.body) - self.pos

    def u16(self, what: str) -> int:
        if self.left < 2:
            raise MalformedPacket("MQTT-4.8.0-1", f"packet ends inside its {what}")
        value = (self.body[self.pos] << 8) | self.body[self.pos + 1]
        self.pos += 2
        return value

    def byte(self, what: str) -> int:
        if self.left < 1:
            raise MalformedPacket("MQTT-4.8.0-1", f"packet ends before its {what}")
        value = self.body[self.pos]
        self.pos += 1
        return value

    def text(self, what: str) -> str:
        size = self.u16(what)
        if size > self.left:
            raise MalformedPacket("MQTT-4.8.0-1", f"{what} runs past the end of the packet")
        raw = self.body[self.pos : self.pos + size]
        self.pos += size
        try:
            value = raw.decode("utf-8")  # strict: no surrogates either
        except UnicodeDecodeError:
            raise MalformedPacket("MQTT-1.5.3-1", f"{what} is not well-formed UTF-8") from None
        if "\x00" in value:
            # MQTT-1.5.3-2 lets the server close on U+0000; it does.
            raise MalformedPacket("MQTT-1.5.3-2", f"{what} contains U+0000")
        return value

    def packet_id(self) -> int:
        value = self.u16("packet identifier")
        if value == 0:
            raise MalformedPacket("MQTT-2.3.1-1", "packet identifier 0")
        return value

    def rest(self) -> bytes:
        data = self.body[self.pos :]
        self.pos = len(self.body)
        return data


def _topic_filter(text: str) -> str:
    try:
        return validate_filter(text)
    except InvalidTopic as exc:
        # An empty filter breaks MQTT-4.7.3-1; a misplaced '#' MQTT-4.7.1-2, '+' -3.
        rule = "MQTT-4.7.3-1" if not text else "MQTT-4.7.1-2" if "#" in text else "MQTT-4.7.1-3"
        raise MalformedPacket(rule, str(exc)) from None


def parse_packet(kind: PacketType, flags: int, body: bytes) -> ClientPacket:
    """A packet of ``kind`` (already passed :func:`check_fixed_header`) from its body
    (everything after the fixed header).  CONNECT is not parsed here: a second one is
    a protocol violation of its own (MQTT-3.1.0-2), decided by the caller."""
    reader = _Reader(body)
    if kind is PacketType.PUBLISH:
        topic = reader.text("topic name")
        try:
            validate_topic(topic)
        except InvalidTopic as exc:
            rule = "MQTT-4.7.3-1" if not topic else "MQTT-3.3.2-2"
            raise MalformedPacket(rule, str(exc)) from None
        qos = (flags >> 1) & 0x03
        packet_id = reader.packet_id() if qos else 0
        return Publish(topic, reader.rest(), qos, bool(flags & 0x01), bool(flags & 0x08), packet_id)
    if kind is PacketType.SUBSCRIBE:
        packet_id = reader.packet_id()
        requested: list[tuple[str, int]] = []
        while reader.left:
            topic_filter = _topic_filter(reader.text("topic filter"))
            qos = reader.byte("requested QoS")
            if qos > 2:  # QoS 3, or a reserved bit set
                raise MalformedPacket("MQTT-3.8.3-4", f"requested QoS byte {qos:#04x}")
            requested.append((topic_filter, qos))
        if not requested:
            raise MalformedPacket("MQTT-3.8.3-3", "SUBSCRIBE without a topic filter")
        return Subscribe(packet_id, tuple(requested))
    if kind is PacketType.UNSUBSCRIBE:
        packet_id = reader.packet_id()
        filters: list[str] = []
        while reader.left:
            filters.append(_topic_filter(reader.text("topic filter")))
        if not filters:
            raise MalformedPacket("MQTT-3.10.3-2", "UNSUBSCRIBE without a topic filter")
        return Unsubscribe(packet_id, tuple(filters))
    if kind in (PacketType.PUBACK, PacketType.PUBREC, PacketType.PUBREL, PacketType.PUBCOMP):
        packet_id = reader.u16("packet identifier")
        _end(reader, kind)
        return Ack(kind, packet_id)
    if kind in (PacketType.PINGREQ, PacketType.DISCONNECT):
        _end(reader, kind)
        return Bare(kind)
    raise MalformedPacket("MQTT-4.8.0-1", f"{kind.name} is not parsed here")


def _end(reader: _Reader, kind: PacketType) -> None:
    if reader.left:
        raise MalformedPacket("MQTT-4.8.0-1", f"{kind.name} longer than MQTT defines it")
