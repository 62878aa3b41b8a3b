"""Raw HTTP/1.1 over a loopback socket: the requests a well-behaved client library
refuses to send (malformed lines, slow heads and bodies, silence).  Used by the HTTP
layer tests of both servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawConn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.received = b""

    @classmethod
    async def open(cls, port: int) -> RawConn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> bool:
        """Send; False once the server has closed the connection."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def response(self, within: float = 10.0) -> RawResponse:
        """The next response on the connection."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), within)
        status, headers = _head(head)
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), within)
        return RawResponse(status, headers, body)

    async def closed_by_server(self, within: float = 10.0) -> bool:
        """Read (into :attr:`received`) until the server closes; False if it is still open after
        ``within`` seconds.  ``within`` is a generous bound, not the limit under test."""
        try:
            async with asyncio.timeout(within):
                while chunk := await self.reader.read(65536):
                    self.received += chunk
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    async def dribble(self, data: bytes, every: float = 0.02, within: float = 10.0) -> bool:
        """Send ``data`` one byte per ``every`` seconds (a slow client), over and over,
        until the server closes the connection (True) or ``within`` seconds pass (False).
        What the server sent meanwhile is in :attr:`received`."""
        deadline = time.monotonic() + within
        i = 0
        while time.monotonic() < deadline:
            at = i % len(data)
            if not await self.send(data[at : at + 1]):
                return await self.closed_by_server(within=max(0.0, deadline - time.monotonic()))
            i += 1
            # Pacing the slow client is the behaviour under test, not synchronisation.
            try:
                async with asyncio.timeout(every):
                    chunk = await self.reader.read(65536)
            except TimeoutError:
                continue
            except ConnectionError:  # closed with our bytes unread: a reset
                return True
            if not chunk:
                return True
            self.received += chunk
        return False

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def exchange(port: int, request: bytes) -> RawResponse:
    """One request on a fresh connection; the answer."""
    conn = await RawConn.open(port)
    try:
        await conn.send(request)
        return await conn.response()
    finally:
        await conn.close()


def _head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


def parse_response(raw: bytes) -> RawResponse:
    """The first response in ``raw`` (bytes a raw connection received)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status, headers = _head(head)
    return RawResponse(status, headers, rest[: int(headers.get("content-length", "0"))])
