"""Where amqtt 0.12.1's own flaws are fixed: one place, one reason per fix (issue 3).

:class:`HardenedBroker` is a drop-in :class:`amqtt.broker.Broker` (same config, same
plugins) whose connection path is rewritten; amqtt's packet codecs, listeners,
subscription table, retained store and plugin manager are reused as they are.  Each fix
has a test in ``tests/broker/test_hardening.py`` that runs against stock amqtt (marked
``xfail(strict=True)``) and against this class.

F1  Authenticate before touching any session.  Stock amqtt handles an existing session
    *before* authenticating, so a CONNECT with a wrong password and a victim's client id
    wipes the victim's subscriptions (clean session) or kicks it (persistent session).
F2  A refused CONNECT leaves nothing behind.  Stock amqtt stores every failed login's
    session, marked connected, forever.
F3  Keep-alive is enforced: a client silent for 1.5 x its keep-alive is dropped
    (MQTT-3.1.2-24) and its will published.  Stock amqtt never drops it.  A connection
    that sends no CONNECT within ``connect_timeout`` is closed too.
F4  A PUBLISH to a ``$`` topic no longer stops the client's message loop (stock amqtt
    silently stops handling that client: later SUBSCRIBEs never get a SUBACK).  ``$SYS/``
    is the broker's namespace: never routed (the token broker handles ``$SYS/uploadToken``
    there); other ``$`` topics are ordinary topics that wildcards do not match.
F5  A second connection with the same client id takes over whatever the clean-session
    flag (MQTT-3.1.4-2): the first is closed (its will published) before the second's
    CONNACK.  Stock amqtt leaves both connected when the newcomer sets clean session.
F6  Persistent sessions resume: CONNACK session-present 1 (MQTT-3.2.2-2), subscriptions
    kept, QoS 1/2 messages published meanwhile delivered (with retain 0) -- also when the
    client reconnects while its old connection is still up (a token refresh by
    reconnecting): stock amqtt's old message loop then marks the shared session
    disconnected, and everything published afterwards is queued, never delivered.
F7  Unacknowledged QoS 1/2 messages stay in the session and are re-sent with DUP on
    reconnect (MQTT-4.4.0-1); stock amqtt drops them when the connection ends (and after
    a 5 s acknowledgement timeout).
F8  A message is delivered at min(publish QoS, subscription QoS) (MQTT-3.8.4-6), once
    per client at the highest QoS of its overlapping subscriptions (MQTT-3.3.5-1), and a
    repeated SUBSCRIBE replaces the QoS (MQTT-3.8.4-3).  Stock amqtt upgrades every
    message to the subscription's QoS and keeps the first QoS.
F9  Reconnecting does not resend every retained message of every filter anyone has
    subscribed (stock amqtt does that for each CONNECT, ACL unchecked: a leak).
F10 The connect path is lean: no ``transitions`` state machine per session (a third of
    stock connect CPU), no queue-and-four-waiters message loop per client, plugin calls
    without a task per call.
F11 The TCP listen backlog is 4096, not asyncio's 100: a reconnect storm is not slowed
    by dropped SYNs (clients retry them after 1, 3, 7 s).

Hooks for the token layer (defaults keep amqtt's plugin semantics):
:meth:`HardenedBroker.authenticate_connect`, :meth:`~HardenedBroker.screen_publish`,
:meth:`~HardenedBroker.authorize_subscribe`, :meth:`~HardenedBroker.may_deliver`,
:meth:`~HardenedBroker.on_connected`, :meth:`~HardenedBroker.on_disconnected`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import ssl
import time
from collections.abc import Coroutine
from functools import partial
from math import floor
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamWriterAdapter, WriterAdapter
from amqtt.broker import Broker, RetainedApplicationMessage
from amqtt.contexts import Action, ListenerType
from amqtt.errors import ProtocolHandlerError
from amqtt.events import BrokerEvents, MQTTEvents
from amqtt.mqtt import packet_class
from amqtt.mqtt.connack import ConnackPacket
from amqtt.mqtt.constants import QOS_0
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.packet import (
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBSCRIBE,
    UNSUBSCRIBE,
    MQTTFixedHeader,
)
from amqtt.mqtt.pingresp import PingRespPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.pubcomp import PubcompPacket
from amqtt.mqtt.pubrec import PubrecPacket
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.session import (
    OUTGOING,
    IncomingApplicationMessage,
    Session,
)
from amqtt.utils import gen_client_id

from sim.shared.protocol import (
    InvalidTopic,
    is_sys_topic,
    matches,
    validate_filter,
    validate_topic,
)

from .connect import MAX_CONNECT_BYTES, ConnectInfo, MalformedConnect, parse_connect

__all__ = ["HardenedBroker", "HardenedHandler", "LeanSession", "Screen"]

log = logging.getLogger(__name__)

_ACCEPTED = 0x00
_BAD_PROTOCOL = 0x01
_IDENTIFIER_REJECTED = 0x02
_BAD_CREDENTIALS = 0x04
_NOT_AUTHORIZED = 0x05
_SUBACK_FAILURE = 0x80
LISTEN_BACKLOG = 4096  # capped by the kernel (net.core.somaxconn)
_CLOSE_GRACE = 2.0  # real seconds to flush and close a socket before aborting it
_TAKEOVER_GRACE = 5.0


class Screen(enum.Enum):
    """What to do with a client PUBLISH after screening it."""

    ROUTE = "route"  # acknowledge and deliver to subscribers
    DROP = "drop"  # acknowledge, deliver to nobody
    CLOSE = "close"  # the connection is being closed: no acknowledgement


class SessionState:
    """The three states of a session, without ``transitions.Machine`` (F10).

    Quacks like the machine where amqtt looks (``state``, ``connect()``,
    ``disconnect()``, ``is_connected()``) and keeps the connect/disconnect times that
    amqtt's session-expiry monitor reads.
    """

    __slots__ = ("session", "state")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.state = "new"

    def connect(self) -> None:
        if self.state == "connected":
            raise ValueError("session is already connected")
        self.state = "connected"
        self.session.last_connect_time = floor(time.time())
        self.session.last_disconnect_time = None

    def disconnect(self) -> None:
        self.state = "disconnected"
        self.session.last_disconnect_time = floor(time.time())

    def is_connected(self) -> bool:
        return self.state == "connected"

    def is_disconnected(self) -> bool:
        return self.state == "disconnected"

    def is_new(self) -> bool:
        return self.state == "new"


class LeanSession(Session):  # type: ignore[misc]
    """amqtt's Session with :class:`SessionState` instead of a state machine (F10)."""

    def _init_states(self) -> None:
        self.transitions = SessionState(self)


class HardenedHandler(BrokerProtocolHandler):  # type: ignore[misc]
    """One client connection: reads packets in order and answers them (F3, F4, F7)."""

    def __init__(self, broker: HardenedBroker, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(broker.plugins_manager, loop=loop)
        self.broker = broker
        self.finished = asyncio.Event()
        self.close_reason: str | None = None
        self.closing = False
        self._stopped = False
        self._last_rx = 0.0
        self._read_timeout = 0.0
        self._ka_timer: asyncio.TimerHandle | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        assert self.session is not None
        self._disconnect_waiter = self._loop.create_future()
        self._reader_task = asyncio.create_task(self._reader_loop())
        keep_alive = self.session.keep_alive
        if keep_alive > 0:
            # F3: MQTT-3.1.2-24, one and a half times the keep-alive, in real time (the
            # client pings by its own clock, whatever virtual clock the broker uses).
            self._read_timeout = keep_alive * 1.5
            self._last_rx = self._loop.time()
            self._ka_timer = self._loop.call_later(self._read_timeout, self._check_keepalive)

    def _check_keepalive(self) -> None:
        idle = self._loop.time() - self._last_rx
        if idle >= self._read_timeout:
            self.request_close("keepalive")
        else:
            self._ka_timer = self._loop.call_later(self._read_timeout - idle, self._check_keepalive)

    def request_close(self, reason: str) -> None:
        """Close this connection as an abnormal disconnect (the will is published)."""
        if self.close_reason is None:
            self.close_reason = reason
        self.closing = True
        self._resolve_disconnect(None)

    def _resolve_disconnect(self, packet: DisconnectPacket | None) -> None:
        waiter = self._disconnect_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(packet)

    async def wait_disconnect(self) -> DisconnectPacket | None:
        waiter = self._disconnect_waiter
        return await waiter if waiter is not None else None

    async def stop(self) -> None:
        self._stopped = True
        self.closing = True
        self._stop_waiters()
        if self._ka_timer is not None:
            self._ka_timer.cancel()
        task = self._reader_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()  # it only reports; no need to wait for it
        self._resolve_disconnect(None)
        if self.writer is not None:
            await _close_writer(self.writer)

    # -- reading -------------------------------------------------------------------------

    async def _reader_loop(self) -> None:
        reader = self.reader
        assert reader is not None and self.session is not None
        listens = MQTTEvents.PACKET_RECEIVED in self.plugins_manager._event_plugin_callbacks
        try:
            while not self.closing:
                header = await MQTTFixedHeader.from_stream(reader)
                if header is None:
                    self.close_reason = self.close_reason or "lost"
                    break
                self._last_rx = self._loop.time()
                packet = await packet_class(header).from_stream(reader, fixed_header=header)
                if listens:
                    await self.plugins_manager.fire_event(
                        MQTTEvents.PACKET_RECEIVED, packet=packet, session=self.session
                    )
                if not await self._dispatch(header.packet_type, packet):
                    break
        except asyncio.CancelledError:
            pass
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            self.close_reason = self.close_reason or "lost"
        except Exception as exc:  # malformed input: close, never crash (MQTT-4.8.0-1)
            log.debug("closing %s: %r", self.session.client_id, exc)
            self.close_reason = self.close_reason or "protocol"
        finally:
            self._reader_stopped.set()
            self._resolve_disconnect(None)

    async def _dispatch(self, kind: int, packet: Any) -> bool:
        """Handle one packet in order; ``False`` ends the connection."""
        if kind == PUBLISH:
            return await self._on_publish(packet)
        if kind == PUBACK:
            await self.handle_puback(packet)
        elif kind == PUBREC:
            await self.handle_pubrec(packet)
        elif kind == PUBREL:
            assert self.session is not None
            self.session.inflight_in.pop(packet.packet_id, None)
            await self._send_packet(PubcompPacket.build(packet.packet_id))
        elif kind == PUBCOMP:
            await self.handle_pubcomp(packet)
        elif kind == SUBSCRIBE:
            vh, payload = packet.variable_header, packet.payload
            return await self.broker.client_subscribe(self, vh.packet_id, payload.topics)
        elif kind == UNSUBSCRIBE:
            vh, payload = packet.variable_header, packet.payload
            await self.broker.client_unsubscribe(self, vh.packet_id, payload.topics)
        elif kind == PINGREQ:
            await self._send_packet(PingRespPacket.build())
        elif kind == DISCONNECT:
            self.close_reason = self.close_reason or "client"
            self._resolve_disconnect(packet)
            return False
        else:
            # A second CONNECT (MQTT-3.1.0-2) or a packet only a server sends.
            self.close_reason = "protocol" if kind != CONNECT else "second_connect"
            return False
        return True

    async def _on_publish(self, packet: Any) -> bool:
        session = self.session
        assert session is not None
        topic, qos, packet_id = packet.topic_name, packet.qos, packet.packet_id
        data = packet.data or b""
        try:
            validate_topic(topic)  # MQTT-3.3.2-2, MQTT-4.7.3-1
        except InvalidTopic:
            self.close_reason = "protocol"
            return False
        if qos == 2 and packet_id in session.inflight_in:
            # A re-sent QoS 2 PUBLISH we already took: acknowledge, do not deliver twice.
            await self._send_packet(PubrecPacket.build(packet_id))
            return True
        verdict = await self.broker.screen_publish(self, topic, data, qos, packet.retain_flag)
        if verdict is Screen.CLOSE:
            return False
        if verdict is Screen.ROUTE:
            await self.broker.route_publish(session, topic, data, qos, packet.retain_flag)
        if qos == 1:
            await self._send_packet(PubackPacket.build(packet_id))
        elif qos == 2:
            # Method A of MQTT 3.1.1 §4.3.3: deliver now, remember the id until PUBREL.
            session.inflight_in[packet_id] = IncomingApplicationMessage(
                packet_id, topic, qos, b"", False
            )
            await self._send_packet(PubrecPacket.build(packet_id))
        return True

    # -- outgoing QoS flows that survive a disconnect (F7) --------------------------------

    async def _handle_qos1_message_flow(self, app_message: Any) -> None:
        if app_message.direction != OUTGOING:
            raise ProtocolHandlerError("incoming QoS 1 is handled by the reader")
        session = self.session
        assert session is not None
        packet_id = app_message.packet_id
        session.inflight_out[packet_id] = app_message
        if self._stopped:
            return  # the connection is gone: the message waits in the session
        waiter: asyncio.Future[Any] = self._loop.create_future()
        self._puback_waiters[packet_id] = waiter
        try:
            publish = app_message.build_publish_packet(dup=app_message.publish_packet is not None)
            await self._send_packet(publish)
            app_message.publish_packet = publish
            app_message.puback_packet = await waiter  # no timeout: MQTT retries on reconnect
        except (asyncio.CancelledError, ProtocolHandlerError, ConnectionError):
            return  # kept in inflight_out, re-sent with DUP when the session resumes
        finally:
            if self._puback_waiters.get(packet_id) is waiter:
                del self._puback_waiters[packet_id]
        session.inflight_out.pop(packet_id, None)

    async def _handle_qos2_message_flow(self, app_message: Any) -> None:
        if app_message.direction != OUTGOING:
            raise ProtocolHandlerError("incoming QoS 2 is handled by the reader")
        session = self.session
        assert session is not None
        packet_id = app_message.packet_id
        session.inflight_out[packet_id] = app_message
        if self._stopped:
            return
        try:
            if app_message.pubrec_packet is None:
                rec: asyncio.Future[Any] = self._loop.create_future()
                self._pubrec_waiters[packet_id] = rec
                publish = app_message.build_publish_packet(
                    dup=app_message.publish_packet is not None
                )
                await self._send_packet(publish)
                app_message.publish_packet = publish
                app_message.pubrec_packet = await rec
            comp: asyncio.Future[Any] = self._loop.create_future()
            self._pubcomp_waiters[packet_id] = comp
            app_message.pubrel_packet = PubrelPacket.build(packet_id)
            await self._send_packet(app_message.pubrel_packet)
            app_message.pubcomp_packet = await comp
        except (asyncio.CancelledError, ProtocolHandlerError, ConnectionError):
            return
        finally:
            self._pubrec_waiters.pop(packet_id, None)
            self._pubcomp_waiters.pop(packet_id, None)
        session.inflight_out.pop(packet_id, None)

    def _stop_waiters(self) -> None:
        for waiters in (self._puback_waiters, self._pubrec_waiters, self._pubcomp_waiters):
            for waiter in waiters.values():
                waiter.cancel()

    def resend_inflight(self) -> None:
        """MQTT-4.4.0-1: re-send unacknowledged PUBLISH (DUP) and PUBREL, in order."""
        assert self.session is not None
        for message in list(self.session.inflight_out.values()):
            self.broker.spawn(self._handle_message_flow(message))


async def _read_connect_packet(reader: ReaderAdapter) -> ConnectInfo:
    """Fixed header, then the whole CONNECT in one read, parsed in memory."""
    first = await reader.read(1)
    if not first or first[0] != 0x10:
        raise MalformedConnect("the first packet must be a CONNECT")  # MQTT-3.1.0-1
    length, shift = 0, 0
    for _ in range(4):
        (byte,) = await reader.read(1)
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    else:
        raise MalformedConnect("remaining length is longer than four bytes")
    if length > MAX_CONNECT_BYTES:
        raise MalformedConnect("CONNECT is too large")
    return parse_connect(await reader.read(length) if length else b"")


async def _close_writer(writer: WriterAdapter) -> None:
    if isinstance(writer, StreamWriterAdapter):
        # The common case, made cheap for mass disconnects: the transport flushes what
        # is buffered (a last notice) and closes; nothing to wait for.
        if not writer.is_closed:
            writer.is_closed = True
            writer._writer.transport.close()
        return
    try:
        await asyncio.wait_for(writer.close(), _CLOSE_GRACE)
    except (TimeoutError, OSError, ConnectionError, asyncio.CancelledError, RuntimeError):
        stream = getattr(writer, "_writer", None)
        transport = getattr(stream, "transport", None)
        if transport is not None:
            transport.abort()


class HardenedBroker(Broker):  # type: ignore[misc]
    """amqtt's Broker with the fixes above; same configuration and plugins."""

    def __init__(
        self,
        config: Any = None,
        loop: asyncio.AbstractEventLoop | None = None,
        plugin_namespace: str | None = None,
        *,
        connect_timeout: float = 10.0,
        max_offline_messages: int = 1000,
    ) -> None:
        super().__init__(config, loop, plugin_namespace)
        self.connect_timeout = connect_timeout
        self.max_offline_messages = max_offline_messages
        self._connect_locks: dict[str, list[Any]] = {}  # client id -> [Lock, users]
        self._background: set[asyncio.Future[Any]] = set()
        self._handlers: set[HardenedHandler] = set()

    # -- hooks (defaults: amqtt's plugin semantics) ---------------------------------------

    async def authenticate_connect(self, session: Session, listener_name: str) -> int:
        """CONNACK return code for an incoming session (0 accepts)."""
        listener = self.listeners_config[listener_name]
        return _ACCEPTED if await self._authenticate(session, listener) else _NOT_AUTHORIZED

    async def screen_publish(
        self, handler: HardenedHandler, topic: str, data: bytes, qos: int, retain: bool
    ) -> Screen:
        if is_sys_topic(topic):
            return Screen.DROP  # F4: the broker's namespace; never routed, loop goes on
        assert handler.session is not None
        if not await self._topic_filtering(handler.session, topic, Action.PUBLISH):
            return Screen.DROP
        return Screen.ROUTE

    async def authorize_subscribe(self, handler: HardenedHandler, topic_filter: str) -> bool | None:
        """``True`` grant, ``False`` SUBACK 0x80, ``None`` the connection is closing."""
        assert handler.session is not None
        return bool(await self._topic_filtering(handler.session, topic_filter, Action.SUBSCRIBE))

    def may_deliver(self, session: Session, topic: str) -> bool:
        return True

    async def on_connected(self, handler: HardenedHandler, session_present: bool) -> None:
        """After CONNACK and after the reader started."""

    async def on_disconnected(self, session: Session, handler: HardenedHandler) -> None:
        """After the connection is closed and the session settled."""

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run ``coro`` in the background; tracked, cancelled at shutdown, errors logged."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("background task failed: %r", task.exception())

    # -- connections ----------------------------------------------------------------------

    async def _client_connected(
        self, listener_name: str, reader: ReaderAdapter, writer: WriterAdapter
    ) -> None:
        server = self._servers.get(listener_name)
        if server is None:
            await _close_writer(writer)
            return
        await server.acquire_connection()
        try:
            await self._serve(listener_name, reader, writer)
        except Exception:  # never let one connection take the listener down
            log.warning("connection handling failed", exc_info=log.isEnabledFor(logging.DEBUG))
            await _close_writer(writer)
        finally:
            server.release_connection()

    async def _read_connect(
        self, reader: ReaderAdapter, writer: WriterAdapter
    ) -> ConnectInfo | None:
        try:
            connect = await asyncio.wait_for(_read_connect_packet(reader), self.connect_timeout)
        except Exception:  # timeout (F3), EOF or garbage: close without a word
            return None
        if connect.protocol not in ("MQTT", "MQIsdp"):
            return None  # MQTT-3.1.2-1
        code = _ACCEPTED
        if connect.level != 4:
            code = _BAD_PROTOCOL  # MQTT-3.1.2-2
        elif connect.password_flag and not connect.username_flag:
            code = _BAD_CREDENTIALS  # MQTT-3.1.2-22
        elif not connect.clean_session and not connect.client_id:
            code = _IDENTIFIER_REJECTED  # MQTT-3.1.3-8
        if code == _ACCEPTED and connect.will_flag:
            try:
                validate_topic(connect.will_topic or "")
            except InvalidTopic:
                return None
        if code != _ACCEPTED:
            await self._refuse(writer, code)
            return None
        return connect

    async def _refuse(self, writer: WriterAdapter, code: int) -> None:
        packet = ConnackPacket.build(0, code)
        with contextlib.suppress(Exception):
            await packet.to_stream(writer)
        await _close_writer(writer)

    def _new_session(self, connect: ConnectInfo, writer: WriterAdapter) -> LeanSession:
        session = LeanSession()
        session.client_id = connect.client_id or gen_client_id()  # MQTT-3.1.3-6
        session.clean_session = connect.clean_session
        session.will_flag = connect.will_flag
        session.will_retain = connect.will_retain
        session.will_qos = connect.will_qos
        session.will_topic = connect.will_topic
        session.will_message = connect.will_message
        session.username = connect.username
        session.password = connect.password
        session.keep_alive = connect.keep_alive
        peer = writer.get_peer_info()
        if peer is not None:
            session.remote_address, session.remote_port = peer
        session.ssl_object = writer.get_ssl_info()
        return session

    async def _serve(
        self, listener_name: str, reader: ReaderAdapter, writer: WriterAdapter
    ) -> None:
        connect = await self._read_connect(reader, writer)
        if connect is None:
            await _close_writer(writer)
            return
        incoming = self._new_session(connect, writer)
        # F1, F2: authenticate first; a refusal never reaches the session table.
        code = await self.authenticate_connect(incoming, listener_name)
        if code != _ACCEPTED:
            await self._refuse(writer, code)
            return
        client_id = incoming.client_id
        assert client_id is not None
        # One CONNECT per client id at a time: take-over and resume must not interleave.
        entry = self._connect_locks.get(client_id)
        if entry is None:
            entry = self._connect_locks[client_id] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                handler, present = await self._attach(incoming, reader, writer)
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._connect_locks.pop(client_id, None)
        if handler is None:
            return
        session = handler.session
        assert session is not None
        try:
            await handler.start()
            await self.on_connected(handler, present)
            if present:
                self._resume(handler)
            await self.plugins_manager.fire_event(
                BrokerEvents.CLIENT_CONNECTED, client_id=client_id, client_session=session
            )
            result = await handler.wait_disconnect()
            await self._end_connection(session, handler, result)
        finally:
            self._handlers.discard(handler)
            handler.finished.set()

    async def _attach(
        self, incoming: LeanSession, reader: ReaderAdapter, writer: WriterAdapter
    ) -> tuple[HardenedHandler | None, bool]:
        client_id = incoming.client_id
        assert client_id is not None
        existing = self._sessions.get(client_id)
        if existing is not None:
            old_handler = existing[1]
            if isinstance(old_handler, HardenedHandler) and not old_handler.finished.is_set():
                await self._take_over(old_handler)  # F5
            existing = self._sessions.get(client_id)
        session: Session = incoming
        present = False
        if existing is not None and not incoming.clean_session:
            # F6: resume the stored session with the new connection's parameters.
            session = existing[0]
            for name in (
                "will_flag", "will_retain", "will_qos", "will_topic", "will_message",
                "username", "password", "keep_alive", "remote_address", "remote_port",
                "ssl_object", "clean_session",
            ):  # fmt: skip
                setattr(session, name, getattr(incoming, name))
            session.attributes.update(incoming.attributes)
            present = True
        elif existing is not None:
            await self._delete_session(client_id)  # clean session: start afresh
        handler = HardenedHandler(self, self._loop)
        handler.attach(session, reader, writer)
        self._sessions[client_id] = (session, handler)
        self._handlers.add(handler)
        session.transitions.connect()
        try:
            await handler._send_packet(ConnackPacket.build(int(present), _ACCEPTED))
        except Exception:
            handler.request_close("lost")
        return handler, present

    async def _take_over(self, old: HardenedHandler) -> None:
        old.request_close("takeover")
        try:
            await asyncio.wait_for(old.finished.wait(), _TAKEOVER_GRACE)
        except TimeoutError:
            log.warning("take-over: the old connection did not close in time")
            await old.stop()

    def _resume(self, handler: HardenedHandler) -> None:
        """F6, F7: re-send what was in flight, then what was queued while away."""
        session = handler.session
        assert session is not None
        handler.resend_inflight()
        while not session.retained_messages.empty():
            queued = session.retained_messages.get_nowait()
            self.spawn(handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False))

    async def _end_connection(
        self, session: Session, handler: HardenedHandler, result: DisconnectPacket | None
    ) -> None:
        await handler.stop()
        client_id = session.client_id
        current = self._sessions.get(client_id) if client_id else None
        ours = current is not None and current[1] is handler
        if ours:
            session.transitions.disconnect()
        if not isinstance(result, DisconnectPacket) and session.will_flag and session.will_topic:
            # MQTT-3.1.2-8: any close but a DISCONNECT publishes the will.
            await self.publish_will(session)
        if ours and session.clean_session and client_id:
            self._sessions.pop(client_id, None)
            await self._del_all_subscriptions(session)
            session.clear_queues()
        await self.on_disconnected(session, handler)
        await self.plugins_manager.fire_event(
            BrokerEvents.CLIENT_DISCONNECTED, client_id=client_id, client_session=session
        )

    async def publish_will(self, session: Session) -> None:
        topic, message = session.will_topic, session.will_message or b""
        assert topic is not None
        qos = session.will_qos or 0
        if session.will_retain:
            await self.retain_message(session, topic, message, qos)
        self._dispatch(topic, bytes(message), qos)

    # -- subscriptions --------------------------------------------------------------------

    async def client_subscribe(
        self, handler: HardenedHandler, packet_id: int, topics: list[tuple[str, int]]
    ) -> bool:
        session = handler.session
        assert session is not None
        codes: list[int] = []
        for topic_filter, qos in topics:
            try:
                validate_filter(topic_filter)
            except InvalidTopic:
                codes.append(_SUBACK_FAILURE)
                continue
            if qos not in (0, 1, 2):
                handler.close_reason = "protocol"  # MQTT-3.8.3-4
                return False
            allowed = await self.authorize_subscribe(handler, topic_filter)
            if allowed is None:
                return False
            if not allowed:
                codes.append(_SUBACK_FAILURE)
                continue
            codes.append(self._store_subscription(session, topic_filter, qos))
        await handler.mqtt_acknowledge_subscription(packet_id, codes)
        granted = [(f, c) for (f, _), c in zip(topics, codes, strict=True) if c != _SUBACK_FAILURE]
        for topic_filter, qos in granted:
            await self.plugins_manager.fire_event(
                BrokerEvents.CLIENT_SUBSCRIBED,
                client_id=session.client_id,
                topic=topic_filter,
                qos=qos,
            )
        if granted and self._retained_messages:
            self.spawn(self._send_retained(handler, granted))
        return True

    def _store_subscription(self, session: Session, topic_filter: str, qos: int) -> int:
        max_qos = self.config.get("max-qos", qos)
        qos = min(qos, max_qos) if isinstance(max_qos, int) else qos
        subscribers = self._subscriptions.setdefault(topic_filter, [])
        for index, (other, _) in enumerate(subscribers):
            if other.client_id == session.client_id:
                subscribers[index] = (session, qos)  # F8: MQTT-3.8.4-3 replaces the QoS
                break
        else:
            subscribers.append((session, qos))
        return qos

    async def _send_retained(
        self, handler: HardenedHandler, granted: list[tuple[str, int]]
    ) -> None:
        """MQTT-3.3.1-6: retained messages matching a new subscription, retain flag 1."""
        session = handler.session
        assert session is not None
        for topic, retained in list(self._retained_messages.items()):
            best = -1
            for topic_filter, qos in granted:
                if matches(topic_filter, topic):
                    best = max(best, qos)
            if best < 0 or not self.may_deliver(session, topic):
                continue
            qos = min(best, retained.qos if retained.qos is not None else best)
            await handler.mqtt_publish(retained.topic, retained.data, qos, retain=True)

    async def client_unsubscribe(
        self, handler: HardenedHandler, packet_id: int, topics: list[str]
    ) -> None:
        session = handler.session
        assert session is not None
        for topic in topics:
            if self._del_subscription(topic, session) and not self._subscriptions.get(topic):
                self._subscriptions.pop(topic, None)
            await self.plugins_manager.fire_event(
                BrokerEvents.CLIENT_UNSUBSCRIBED, client_id=session.client_id, topic=topic
            )
        await handler.mqtt_acknowledge_unsubscription(packet_id)

    # -- routing --------------------------------------------------------------------------

    async def route_publish(
        self, session: Session | None, topic: str, data: bytes, qos: int, retain: bool
    ) -> None:
        if retain:
            # MQTT-3.3.1-5 store, MQTT-3.3.1-10/11 an empty payload clears.
            await self.retain_message(session, topic, data, qos)
        self._dispatch(topic, data, qos)

    async def _broadcast_message(
        self,
        session: Session | None,
        topic: str | None,
        data: bytes | bytearray | None,
        force_qos: int | None = None,
    ) -> None:
        # amqtt's plugins and BrokerContext publish through here; route at once.
        if topic is not None:
            self._dispatch(topic, bytes(data or b""), force_qos, forced=force_qos is not None)

    def _dispatch(self, topic: str, data: bytes, qos: int | None, *, forced: bool = False) -> None:
        """Deliver to every matching subscriber once, at the best matching QoS (F8)."""
        targets: dict[str, tuple[Session, int]] = {}
        for topic_filter, subscribers in self._subscriptions.items():
            if not (topic_filter == topic or matches(topic_filter, topic)):
                continue
            for target, sub_qos in subscribers:
                key = target.client_id or ""
                seen = targets.get(key)
                if seen is None or sub_qos > seen[1]:
                    targets[key] = (target, sub_qos)
        for target, sub_qos in targets.values():
            if qos is None:
                deliver_qos = sub_qos
            elif forced:
                deliver_qos = qos
            else:
                deliver_qos = min(qos, sub_qos)  # F8: MQTT-3.8.4-6
            if not self.may_deliver(target, topic):
                continue
            if target.transitions.state == "connected":
                handler = self._get_handler(target)
                if handler is not None:
                    self.spawn(handler.mqtt_publish(topic, data, deliver_qos, retain=False))
            elif not target.clean_session and deliver_qos > QOS_0:
                self._queue_offline(target, topic, data, deliver_qos)

    def _queue_offline(self, session: Session, topic: str, data: bytes, qos: int) -> None:
        queue = session.retained_messages
        if self.max_offline_messages <= 0:
            return
        while queue.qsize() >= self.max_offline_messages:
            queue.get_nowait()  # drop the oldest
        queue.put_nowait(RetainedApplicationMessage(None, topic, data, qos))

    # -- running ---------------------------------------------------------------------------

    async def _create_server_instance(
        self,
        listener_name: str,
        listener_type: Any,
        address: str | None,
        port: int,
        ssl_context: ssl.SSLContext | None,
    ) -> Any:
        # F11: asyncio's default listen backlog is 100; a reconnect storm of thousands of
        # clients overflows it and the kernel drops SYNs, which clients retry after 1, 3,
        # 7 s: a fleet that could be back in one second takes ten.
        if listener_type == ListenerType.TCP:
            return await asyncio.start_server(
                partial(self.stream_connected, listener_name=listener_name),
                address,
                port,
                reuse_address=True,
                ssl=ssl_context,
                backlog=LISTEN_BACKLOG,
            )
        return await super()._create_server_instance(
            listener_name, listener_type, address, port, ssl_context
        )

    def bound_port(self, listener_name: str = "default") -> int:
        """The port a listener really bound (for ``port 0``)."""
        instance = self._servers[listener_name].instance
        sockets = getattr(instance, "sockets", None) or []
        for sock in sockets:
            return int(sock.getsockname()[1])
        raise RuntimeError(f"listener {listener_name!r} has no socket")

    async def close_all(self, reason: str = "kicked", grace: float = 5.0) -> int:
        """Close every live connection (wills published); return how many."""
        handlers = [h for h in self._handlers if not h.closing]
        # Every TCP socket first, in one pass (a FIN to every client within a few ms),
        # then each session's teardown: the clients learn of the loss at once and come
        # back while the broker settles, instead of after 2,000 teardowns.
        for handler in handlers:
            writer = handler.writer
            if isinstance(writer, StreamWriterAdapter) and not writer.is_closed:
                writer.is_closed = True
                writer._writer.transport.close()
        for handler in handlers:
            handler.request_close(reason)
        waits = [h.finished.wait() for h in handlers]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), grace)
        return len(handlers)

    async def shutdown(self) -> None:
        for server in self._servers.values():
            instance = server.instance
            if instance is not None:
                instance.close()
        await self.close_all("shutdown")
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await super().shutdown()
