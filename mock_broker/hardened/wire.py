"""One client's byte stream: send whole packets, close without waiting on the client."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from .amqtt_boundary import WIRE_GONE, ReaderAdapter, WriterAdapter

__all__ = ["CLOSE_GRACE", "Wire"]

CLOSE_GRACE = 2.0  # real seconds a WebSocket gets to close before it is abandoned


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
