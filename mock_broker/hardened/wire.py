"""One client's byte stream: read and send whole packets, close without waiting on the
client."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ..packets import MalformedPacket
from .amqtt_boundary import WIRE_GONE, ReaderAdapter, WriterAdapter

__all__ = ["CLOSE_GRACE", "Wire", "read_exactly", "read_remaining_length"]

CLOSE_GRACE = 2.0  # real seconds a WebSocket gets to close before it is abandoned


async def read_exactly(reader: ReaderAdapter, n: int) -> bytes:
    """``n`` bytes; :class:`asyncio.IncompleteReadError` if the stream ends first (a
    WebSocket reader returns what it has instead of raising)."""
    data: bytes = await reader.read(n)
    if len(data) != n:
        raise asyncio.IncompleteReadError(data, n)
    return data


async def read_remaining_length(reader: ReaderAdapter) -> int:
    """The fixed header's Remaining Length: at most four bytes (MQTT 3.1.1 §2.2.3)."""
    length, shift = 0, 0
    for _ in range(4):
        (byte,) = await read_exactly(reader, 1)
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return length
    raise MalformedPacket("MQTT-4.8.0-1", "remaining length longer than four bytes (§2.2.3)")


class Wire:
    """amqtt's reader and writer adapters of one connection, and for TCP its transport
    (so a close is one call that flushes what is buffered, and waits for nobody)."""

    __slots__ = ("closed", "lock", "reader", "transport", "writer")

    def __init__(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.transport = transport
        self.closed = False
        # A WebSocket writer buffers until drain() and resets the buffer after sending:
        # two senders must not interleave a write with another's drain.
        self.lock = asyncio.Lock()

    @property
    def peer(self) -> str:
        """The client's address (no port), ``""`` when the transport does not say."""
        try:
            info = self.writer.get_peer_info()
        except Exception:  # a transport already gone, or one without peer details
            return ""
        return str(info[0]) if info else ""

    async def send(self, packet: Any) -> bool:
        """Write one packet; ``False`` (nothing raised) when the client is gone."""
        if self.closed:
            return False
        data = packet.to_bytes()
        try:
            async with self.lock:
                self.writer.write(data)
                await self.writer.drain()
        except WIRE_GONE:
            self.closed = True
            return False
        return True

    def close_now(self) -> bool:
        """Close a TCP stream at once (buffered bytes still go out); ``False`` if this is
        not one (a WebSocket needs :meth:`close`)."""
        if self.transport is None:
            return False
        self.closed = True
        self.transport.close()
        return True

    async def close(self) -> None:
        if self.close_now() or self.closed:
            return
        self.closed = True
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, *WIRE_GONE):
            await asyncio.wait_for(self.writer.close(), CLOSE_GRACE)
