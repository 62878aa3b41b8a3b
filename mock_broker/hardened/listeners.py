"""The broker's listeners: amqtt hosts them (TCP, TLS, WebSocket), we make the TCP ones.

F11  The TCP listen backlog is 4096, not asyncio's 100: in a reconnect storm of
     thousands of clients the kernel would otherwise drop SYNs, which clients retry only
     after 1, 3, 7 s (a fleet that could be back in one second takes ten).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterator, Mapping
from functools import partial
from typing import Any

from .amqtt_boundary import (
    ListenerHost,
    ReaderAdapter,
    StreamReaderAdapter,
    StreamWriterAdapter,
    WriterAdapter,
    listener_server,
)
from .wire import Wire

__all__ = ["LISTEN_BACKLOG", "Listeners"]

LISTEN_BACKLOG = 4096  # capped by the kernel (net.core.somaxconn)

Serve = Callable[[str, Wire], Awaitable[None]]


def _not_amqtt_startup_failure(record: logging.LogRecord) -> bool:
    return record.getMessage() != "Broker startup failed"


@contextlib.contextmanager
def _startup_failure_unlogged() -> Iterator[None]:
    """amqtt logs a failed start (a port taken) with a traceback before it raises; the
    error reaches our caller, who says it in one line (``mqtt-token-sim``: "the broker
    cannot listen on ..."), so amqtt's own record of it is dropped."""
    logger = logging.getLogger("amqtt.broker")
    logger.addFilter(_not_amqtt_startup_failure)
    try:
        yield
    finally:
        logger.removeFilter(_not_amqtt_startup_failure)


class Listeners:
    """Every listener of one broker; each accepted connection goes to ``serve``."""

    def __init__(self, config: Mapping[str, Mapping[str, Any]], serve: Serve) -> None:
        self._serve = serve
        self._host = ListenerHost(config, self._accepted, self._tcp_server)

    async def start(self) -> None:
        with _startup_failure_unlogged():
            await self._host.start()

    def stop_accepting(self) -> None:
        for name in self._host.listeners_config:
            server = self.server(name)
            if server is not None:
                server.close()

    async def shutdown(self) -> None:
        await self._host.shutdown()

    def port(self, name: str = "default") -> int:
        """The port a listener really bound (for ``port 0``)."""
        server = self.server(name)
        for sock in getattr(server, "sockets", None) or []:
            return int(sock.getsockname()[1])
        raise RuntimeError(f"listener {name!r} has no socket")

    def server(self, name: str = "default") -> Any:
        """A listener's server object (an ``asyncio.Server`` for TCP), or ``None``."""
        try:
            return listener_server(self._host, name)
        except KeyError:
            return None

    async def _tcp_server(
        self, name: str, address: str | None, port: int, ssl_context: ssl.SSLContext | None
    ) -> asyncio.Server:
        return await asyncio.start_server(
            partial(self._tcp_accepted, name),
            address,
            port,
            reuse_address=True,
            ssl=ssl_context,
            backlog=LISTEN_BACKLOG,  # F11
        )

    async def _tcp_accepted(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        wire = Wire(StreamReaderAdapter(reader), StreamWriterAdapter(writer), writer.transport)
        await self._serve(name, wire)

    async def _accepted(self, name: str, reader: ReaderAdapter, writer: WriterAdapter) -> None:
        await self._serve(name, Wire(reader, writer))
