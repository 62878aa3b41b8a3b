"""A CONNECT packet, parsed from its bytes in one go (pure; MQTT 3.1.1 §3.1).

amqtt reads a CONNECT field by field, a stream read per field; a token password makes
that the slow part of a connect.  The broker reads the whole packet (bounded) and
parses it here.  Anything malformed raises :class:`MalformedConnect`: the broker then
closes the connection without a CONNACK (MQTT-4.8.0-1); a CONNECT of a protocol level
it does not speak raises :class:`UnsupportedLevel` as soon as the level is read (the rest
is another protocol's, MQTT 5's properties for one), and is answered CONNACK 0x01.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "MAX_CONNECT_BYTES",
    "SUPPORTED_LEVELS",
    "ConnackCode",
    "ConnectInfo",
    "MalformedConnect",
    "UnsupportedLevel",
    "parse_connect",
]

MAX_CONNECT_BYTES = 256 * 1024  # a will message can be large; anything more is abuse


#: Protocol name and level of what the broker speaks: MQTT 3.1.1 and MQTT 3.1 (SPEC §4a).
SUPPORTED_LEVELS = frozenset({("MQTT", 4), ("MQIsdp", 3)})


class MalformedConnect(ValueError):
    pass


class UnsupportedLevel(MalformedConnect):
    """An MQTT CONNECT of a protocol level the broker does not speak (MQTT 5 is level 5):
    answered CONNACK 0x01, then closed (MQTT-3.1.2-2)."""

    def __init__(self, level: int) -> None:
        super().__init__(f"protocol level {level} is not spoken here")
        self.level = level


class ConnackCode(enum.IntEnum):
    """CONNACK return codes (MQTT 3.1.1 §3.2.2.3)."""

    ACCEPTED = 0x00
    UNACCEPTABLE_PROTOCOL = 0x01
    IDENTIFIER_REJECTED = 0x02
    SERVER_UNAVAILABLE = 0x03
    BAD_CREDENTIALS = 0x04
    NOT_AUTHORIZED = 0x05


@dataclass(frozen=True)
class ConnectInfo:
    protocol: str
    level: int
    clean_session: bool
    keep_alive: int
    client_id: str
    will_flag: bool = False
    will_qos: int = 0
    will_retain: bool = False
    will_topic: str | None = None
    will_message: bytes | None = None
    username: str | None = None
    password: str | bytes | None = None
    username_flag: bool = False
    password_flag: bool = False
    source: str = ""
    """The client's network address (no port), as the listener saw it; ``""`` unknown."""


def parse_connect(body: bytes, source: str = "") -> ConnectInfo:
    """The variable header and payload of a CONNECT (everything after the fixed header);
    ``source`` is the address it came from."""
    view = memoryview(body)
    pos = 0

    def field() -> bytes:
        nonlocal pos
        if pos + 2 > len(view):
            raise MalformedConnect("CONNECT ends inside a length")
        size = (view[pos] << 8) | view[pos + 1]
        end = pos + 2 + size
        if end > len(view):
            raise MalformedConnect("CONNECT field runs past the packet")
        data = bytes(view[pos + 2 : end])
        pos = end
        return data

    def text() -> str:
        data = field()
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedConnect("CONNECT string is not UTF-8") from None  # MQTT-1.5.3-1
        if "\x00" in value:
            raise MalformedConnect("CONNECT string contains NUL")  # MQTT-1.5.3-2
        return value

    protocol = text()
    if pos + 4 > len(view):
        raise MalformedConnect("CONNECT variable header is short")
    level, flags = view[pos], view[pos + 1]
    if protocol in ("MQTT", "MQIsdp") and (protocol, level) not in SUPPORTED_LEVELS:
        raise UnsupportedLevel(level)
    keep_alive = (view[pos + 2] << 8) | view[pos + 3]
    pos += 4
    if flags & 0x01:
        raise MalformedConnect("CONNECT reserved flag is set")  # MQTT-3.1.2-3
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 0x03
    will_retain = bool(flags & 0x20)
    if not will_flag and (will_qos or will_retain):
        raise MalformedConnect("will QoS/retain without a will")  # MQTT-3.1.2-13/15
    if will_qos == 3:
        raise MalformedConnect("will QoS 3")  # MQTT-3.1.2-14
    client_id = text()
    will_topic = will_message = None
    if will_flag:
        will_topic = text()
        will_message = field()
    username: str | None = None
    password: str | bytes | None = None
    username_flag, password_flag = bool(flags & 0x80), bool(flags & 0x40)
    if username_flag:
        username = text()
    if password_flag:
        raw = field()
        try:
            password = raw.decode("utf-8")
        except UnicodeDecodeError:
            password = raw  # binary data is allowed; no token or signature is binary
    if pos != len(view):
        raise MalformedConnect("CONNECT has trailing bytes")
    return ConnectInfo(
        protocol, level, bool(flags & 0x02), keep_alive, client_id, will_flag, will_qos,
        will_retain, will_topic, will_message, username, password, username_flag, password_flag,
        source,
    )  # fmt: skip
