"""The CONNECT: read whole, parsed in memory, refused in MQTT's words where MQTT says so.

amqtt reads a CONNECT field by field; a token password makes that the slow part of a
connect (F10).  Here the fixed header is read, then the whole packet in one read
(bounded by :data:`~mock_broker.connect.MAX_CONNECT_BYTES`) within the connect timeout
(F3), and parsed by the pure :func:`~mock_broker.connect.parse_connect`.
"""

from __future__ import annotations

import asyncio

from sim.shared.protocol import InvalidTopic, validate_topic

from ..connect import (
    MAX_CONNECT_BYTES,
    ConnackCode,
    ConnectInfo,
    MalformedConnect,
    UnsupportedLevel,
    parse_connect,
)
from ..packets import MalformedPacket
from .amqtt_boundary import WIRE_GONE, ConnackPacket
from .wire import Wire, read_exactly, read_remaining_length

__all__ = ["read_connect", "refuse"]

# A stream that ends, stalls or says something else than a CONNECT.
_NOT_A_CONNECT: tuple[type[BaseException], ...] = (
    TimeoutError, MalformedConnect, MalformedPacket, asyncio.IncompleteReadError, ValueError,
    *WIRE_GONE,
)  # fmt: skip


async def _read_connect_packet(wire: Wire) -> ConnectInfo:
    reader = wire.reader
    first = await reader.read(1)
    if not first or first[0] != 0x10:
        raise MalformedConnect("the first packet must be a CONNECT")  # MQTT-3.1.0-1
    length = await read_remaining_length(reader)
    if length > MAX_CONNECT_BYTES:
        raise MalformedConnect("CONNECT is too large")
    body = await read_exactly(reader, length) if length else b""
    return parse_connect(body, source=wire.peer)


async def read_connect(wire: Wire, within: float) -> ConnectInfo | None:
    """The client's CONNECT, or ``None`` when the connection is to be closed: silently
    if it never spoke MQTT 3.1.1's CONNECT, after a CONNACK refusal where MQTT says one."""
    try:
        connect = await asyncio.wait_for(_read_connect_packet(wire), within)
    except UnsupportedLevel:  # MQTT-3.1.2-2: CONNACK 0x01, never a silent close
        await refuse(wire, ConnackCode.UNACCEPTABLE_PROTOCOL)
        return None
    except _NOT_A_CONNECT:
        return None
    if connect.protocol not in ("MQTT", "MQIsdp"):
        return None  # MQTT-3.1.2-1
    code = ConnackCode.ACCEPTED
    if connect.password_flag and not connect.username_flag:
        code = ConnackCode.BAD_CREDENTIALS  # MQTT-3.1.2-22
    elif not connect.clean_session and not connect.client_id:
        code = ConnackCode.IDENTIFIER_REJECTED  # MQTT-3.1.3-8
    if code == ConnackCode.ACCEPTED and connect.will_flag:
        try:
            validate_topic(connect.will_topic or "")
        except InvalidTopic:
            return None
    if code != ConnackCode.ACCEPTED:
        await refuse(wire, code)
        return None
    return connect


async def refuse(wire: Wire, code: int) -> None:
    """CONNACK ``code`` and close: nothing of the connection is kept (F1, F2)."""
    await wire.send(ConnackPacket.build(0, code))
    await wire.close()
