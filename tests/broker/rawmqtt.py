"""A tiny MQTT 3.1.1 client over asyncio streams, for tests that need exact control
(no automatic acks or pings, arbitrary bytes in credentials, malformed packets)."""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = (
    8, 9, 10, 11, 12, 13, 14,
)  # fmt: skip


def _len(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(b: bytes | str) -> bytes:
    raw = b.encode() if isinstance(b, str) else b
    return struct.pack("!H", len(raw)) + raw


def packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes([(kind << 4) | flags]) + _len(len(body)) + body


def connect_packet(
    client_id: bytes | str,
    username: bytes | str | None = None,
    password: bytes | str | None = None,
    *,
    clean: bool = True,
    keep_alive: int = 0,
    will: tuple[str, bytes, int, bool] | None = None,
) -> bytes:
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(message)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
    if password is not None:
        flags |= 0x40
        payload += _str(password)
    body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keep_alive) + payload
    return packet(CONNECT, 0, body)


@dataclass
class Packet:
    kind: int
    flags: int
    body: bytes

    @property
    def packet_id(self) -> int:
        if self.kind == PUBLISH:
            (n,) = struct.unpack("!H", self.body[:2])
            return int(struct.unpack("!H", self.body[2 + n : 4 + n])[0])
        return int(struct.unpack("!H", self.body[:2])[0])

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 0x08)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 0x01)

    @property
    def topic(self) -> str:
        (n,) = struct.unpack("!H", self.body[:2])
        return self.body[2 : 2 + n].decode()

    @property
    def payload(self) -> bytes:
        (n,) = struct.unpack("!H", self.body[:2])
        start = 2 + n + (2 if self.qos else 0)
        return self.body[start:]


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self._next_id = 0
        self.backlog: list[Packet] = []  # packets skipped by expect(), read() sees them first

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    @classmethod
    async def connected(
        cls,
        port: int,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        **kw: object,
    ) -> tuple[RawClient, int, int]:
        """Open, CONNECT, read CONNACK: (client, return code, session present)."""
        client = await cls.open(port)
        await client.send(connect_packet(client_id, username, password, **kw))  # type: ignore[arg-type]
        ack = await client.expect(CONNACK)
        return client, ack.body[1], ack.body[0] & 1

    def next_id(self) -> int:
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self, within: float = 5.0) -> Packet | None:
        """The next packet, or ``None`` at EOF."""
        if self.backlog:
            return self.backlog.pop(0)
        return await self._read_wire(within)

    async def _read_wire(self, within: float) -> Packet | None:

        async def _read() -> Packet | None:
            try:
                first = await self.reader.readexactly(1)
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            mult, length = 1, 0
            while True:
                (b,) = await self.reader.readexactly(1)
                length += (b & 0x7F) * mult
                mult *= 128
                if not b & 0x80:
                    break
            body = await self.reader.readexactly(length) if length else b""
            return Packet(first[0] >> 4, first[0] & 0x0F, body)

        return await asyncio.wait_for(_read(), within)

    async def expect(self, kind: int, within: float = 5.0) -> Packet:
        for index, waiting in enumerate(self.backlog):
            if waiting.kind == kind:
                return self.backlog.pop(index)
        while True:
            got = await self._read_wire(within)
            if got is None:
                raise ConnectionError(f"closed while waiting for packet type {kind}")
            if got.kind == kind:
                return got
            self.backlog.append(got)

    async def closed(self, within: float = 5.0) -> bool:
        """Read (and drop) packets until EOF; ``True`` if the broker closed in time."""
        try:
            while await self.read(within) is not None:
                pass
        except (TimeoutError, ConnectionError):
            return False
        return True

    async def subscribe(
        self, *filters: tuple[str, int], wait: bool = True, within: float = 5.0
    ) -> list[int]:
        pid = self.next_id()
        body = struct.pack("!H", pid) + b"".join(_str(f) + bytes([q]) for f, q in filters)
        await self.send(packet(SUBSCRIBE, 0x02, body))
        if not wait:
            return []
        ack = await self.expect(SUBACK, within)
        return list(ack.body[2:])

    async def publish(
        self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, wait: bool = True
    ) -> int | None:
        pid = self.next_id() if qos else None
        body = _str(topic) + (struct.pack("!H", pid) if pid else b"") + payload
        await self.send(packet(PUBLISH, (qos << 1) | int(retain), body))
        if qos == 1 and wait:
            await self.expect(PUBACK)
        return pid

    async def ack(self, p: Packet) -> None:
        if p.qos == 1:
            await self.send(packet(PUBACK, 0, struct.pack("!H", p.packet_id)))
        elif p.qos == 2:
            await self.send(packet(PUBREC, 0, struct.pack("!H", p.packet_id)))

    async def disconnect(self) -> None:
        await self.send(packet(DISCONNECT, 0, b""))
        self.close()

    def close(self) -> None:
        self.writer.close()
