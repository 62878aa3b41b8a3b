"""Everything of amqtt 0.12.1 the hardened broker uses, in one place, checked at import.

amqtt stays for what it does well: its MQTT packet encoders, its stream adapters, and its
``Broker`` as the host of the listeners (TCP, TLS, WebSocket; start and stop).  Packets
from clients are parsed by :mod:`mock_broker.packets` (amqtt's decoders let malformed
packets through, F12).  What a
connection does once accepted is ours (the other modules of this package), so amqtt's
private names are needed only where its listeners hand a connection over:

    Broker._create_server_instance   builds each listener's server: we build the TCP
                                     ones (F11's backlog, the raw stream kept)
    Broker._client_connected         where its WebSocket server hands a connection over
    Broker._servers, Server.instance the listeners' servers (their bound ports)

:func:`check_amqtt` runs when this module is imported: an amqtt whose names, signatures
or call sites differ from what this module assumes fails the import, and so the
collection of the broker's tests, with :class:`AmqttDrift` naming each difference,
instead of an ``AttributeError`` inside a connection or an override amqtt no longer
calls.  The other modules of the package reach amqtt only through this one (an
import-linter contract in ``pyproject.toml``).
"""

from __future__ import annotations

import asyncio
import inspect
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamReaderAdapter, StreamWriterAdapter, WriterAdapter
from amqtt.broker import Broker, Server
from amqtt.contexts import ListenerType
from amqtt.mqtt.connack import ConnackPacket
from amqtt.mqtt.pingresp import PingRespPacket
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.pubcomp import PubcompPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.pubrec import PubrecPacket
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.mqtt.suback import SubackPacket
from amqtt.mqtt.unsuback import UnsubackPacket
from websockets.exceptions import ConnectionClosed

__all__ = [
    "WIRE_GONE",
    "AmqttDrift",
    "ConnackPacket",
    "ListenerHost",
    "PingRespPacket",
    "PubackPacket",
    "PubcompPacket",
    "PublishPacket",
    "PubrecPacket",
    "PubrelPacket",
    "ReaderAdapter",
    "StreamReaderAdapter",
    "StreamWriterAdapter",
    "SubackPacket",
    "UnsubackPacket",
    "WriterAdapter",
    "check_amqtt",
    "listener_server",
]

#: What writing to a client raises once it is gone (TCP, TLS or WebSocket).
WIRE_GONE: tuple[type[BaseException], ...] = (ConnectionError, OSError, ConnectionClosed)

Accept = Callable[[str, ReaderAdapter, WriterAdapter], Awaitable[None]]
TcpServer = Callable[[str, "str | None", int, "ssl.SSLContext | None"], Awaitable[asyncio.Server]]


class AmqttDrift(ImportError):
    """The installed amqtt is not the one the hardened broker was written against."""


# -- the private names ------------------------------------------------------------------


class ListenerHost(Broker):  # type: ignore[misc]
    """amqtt's Broker kept as the host of the listeners, nothing else: no plugins, no
    sessions of its own.  TCP servers are made by ``tcp_server``; a connection accepted
    by any other listener (WebSocket) goes to ``accept``."""

    def __init__(
        self, listeners: Mapping[str, Mapping[str, Any]], accept: Accept, tcp_server: TcpServer
    ) -> None:
        super().__init__({"listeners": {k: dict(v) for k, v in listeners.items()}, "plugins": {}})
        self.hand_over = accept
        self.make_tcp_server = tcp_server

    async def _create_server_instance(
        self,
        listener_name: str,
        listener_type: Any,
        address: str | None,
        port: int,
        ssl_context: ssl.SSLContext | None,
    ) -> Any:
        if listener_type == ListenerType.TCP:
            return await self.make_tcp_server(listener_name, address, port, ssl_context)
        return await super()._create_server_instance(
            listener_name, listener_type, address, port, ssl_context
        )

    async def _client_connected(
        self, listener_name: str, reader: ReaderAdapter, writer: WriterAdapter
    ) -> None:
        await self.hand_over(listener_name, reader, writer)


def listener_server(broker: Broker, listener_name: str = "default") -> Any:
    """The server object of one listener of any amqtt broker (stock or ours), which
    knows its bound sockets."""
    return broker._servers[listener_name].instance


# -- the check --------------------------------------------------------------------------

# (owner, name, parameters after self/cls) of every amqtt callable whose signature we rely
# on; packet builders are called positionally, so their parameter order matters too.
_SIGNATURES: tuple[tuple[Any, str, tuple[str, ...]], ...] = (
    (Broker, "_create_server_instance",
     ("listener_name", "listener_type", "address", "port", "ssl_context")),
    (Broker, "_client_connected", ("listener_name", "reader", "writer")),
    (Broker, "__init__", ("config", "loop", "plugin_namespace")),
    (PublishPacket, "build", ("topic_name", "message", "packet_id", "dup_flag", "qos", "retain")),
    (ConnackPacket, "build", ("session_parent", "return_code")),
    (SubackPacket, "build", ("packet_id", "return_codes")),
    (UnsubackPacket, "build", ("packet_id",)),
    (PubackPacket, "build", ("packet_id",)),
    (PubrecPacket, "build", ("packet_id",)),
    (PubrelPacket, "build", ("packet_id",)),
    (PubcompPacket, "build", ("packet_id",)),
    (PingRespPacket, "build", ()),
    (StreamReaderAdapter, "__init__", ("reader",)),
    (StreamWriterAdapter, "__init__", ("writer",)),
    (WriterAdapter, "get_peer_info", ()),
    (StreamWriterAdapter, "get_peer_info", ()),
)  # fmt: skip

# (owner, function, name): amqtt must still reach our overrides and keep its state where
# we read it; a rename inside amqtt would otherwise bypass the override silently.
_USES: tuple[tuple[Any, str, str], ...] = (
    (Broker, "_start_listeners", "_create_server_instance"),
    (Broker, "ws_connected", "_client_connected"),
    (Broker, "__init__", "_servers"),
    (Broker, "_start_listeners", "_servers"),
    (Server, "__init__", "instance"),
)


def _params(target: Any) -> tuple[str, ...]:
    names = tuple(inspect.signature(target).parameters)
    return names[1:] if names[:1] in (("self",), ("cls",)) else names


def _code_names(target: Any) -> tuple[str, ...]:
    code = getattr(inspect.unwrap(target), "__code__", None)
    return code.co_names if code is not None else ()


def check_amqtt() -> None:
    """Raise :class:`AmqttDrift` unless amqtt has every name, signature and call site
    listed above."""
    problems: list[str] = []
    for owner, name, params in _SIGNATURES:
        target = getattr(owner, name, None)
        if target is None:
            problems.append(f"{owner.__name__}.{name} is gone")
            continue
        found = _params(target)
        if found != params:
            problems.append(f"{owner.__name__}.{name} takes {found}, expected {params}")
    for owner, function, name in _USES:
        target = getattr(owner, function, None)
        if target is None:
            problems.append(f"{owner.__name__}.{function} is gone")
        elif name not in _code_names(target):
            problems.append(f"{owner.__name__}.{function} no longer uses {name}")
    if not (hasattr(ListenerType, "TCP") and hasattr(ListenerType, "WS")):
        problems.append("amqtt.contexts.ListenerType lost TCP or WS")
    if problems:
        raise AmqttDrift(
            "amqtt differs from what mock_broker.hardened was written against"
            " (pyproject.toml pins amqtt==0.12.1): " + "; ".join(problems)
        )


check_amqtt()
