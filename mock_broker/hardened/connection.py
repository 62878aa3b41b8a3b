"""One client connection: read its packets in order and answer them.

F3   Keep-alive enforced (:mod:`~mock_broker.hardened.keepalive`).
F4   Every packet is handled in turn by one reader: a PUBLISH to a ``$`` topic cannot
     stop the client's loop (stock amqtt silently stops it: later SUBSCRIBEs never get
     a SUBACK).
F7   A QoS 1/2 message to the client stays in its session until acknowledged, without a
     timeout, and is re-sent with DUP when the session resumes (MQTT-4.4.0-1).
F10  One reader task per connection, no waiter tasks per message, no state machine.

Bytes that are not MQTT close the connection (MQTT-4.8.0-1, reason ``protocol``); any
other exception is a bug of the broker's and is logged as one, with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from functools import partial
from typing import Any, Protocol

from sim.shared.protocol import InvalidTopic, validate_topic

from .amqtt_boundary import (
    CONNECT,
    DECODE_ERRORS,
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
    PingRespPacket,
    PubackPacket,
    PubcompPacket,
    PublishPacket,
    PubrecPacket,
    PubrelPacket,
    packet_class,
)
from .keepalive import KeepAlive
from .policy import Verdict
from .session import ClientSession, Outgoing
from .wire import Wire

__all__ = ["Connection", "Owner"]

log = logging.getLogger(__name__)


class Owner(Protocol):
    """What a connection asks of its broker."""

    async def handle_publish(
        self, conn: Connection, topic: str, data: bytes, qos: int, retain: bool
    ) -> Verdict: ...

    async def handle_subscribe(
        self, conn: Connection, packet_id: int, topics: list[tuple[str, int]]
    ) -> bool: ...

    async def handle_unsubscribe(
        self, conn: Connection, packet_id: int, topics: list[str]
    ) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]: ...


class Connection:
    def __init__(self, session: ClientSession, wire: Wire, owner: Owner) -> None:
        self.session = session
        self.wire = wire
        self.owner = owner
        self.close_reason: str | None = None
        """Why it closed: ``client`` (DISCONNECT), ``lost``, ``keepalive``, ``takeover``,
        ``protocol``, ``second_connect``, ``error``, or a policy's reason."""
        self.closing = False
        self.finished = asyncio.Event()  # set once torn down (will out, policy told)
        self._stopped = False
        self._ended: asyncio.Future[bool] | None = None  # True: the client said DISCONNECT
        self._reader: asyncio.Task[None] | None = None
        self._keepalive: KeepAlive | None = None

    @property
    def client_id(self) -> str:
        return self.session.client_id

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._ended = loop.create_future()
        self._reader = loop.create_task(self._read_loop())
        if self.session.keep_alive > 0:
            self._keepalive = KeepAlive(
                loop, self.session.keep_alive, partial(self.request_close, "keepalive")
            )

    def request_close(self, reason: str) -> None:
        """Close as an abnormal disconnect (the will is published)."""
        if self.close_reason is None:
            self.close_reason = reason
        self.closing = True
        self._end(False)

    def _end(self, polite: bool) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(polite)

    async def wait_closed(self) -> bool:
        """Until the connection ends; ``True`` if the client sent DISCONNECT."""
        return await self._ended if self._ended is not None else False

    async def stop(self) -> None:
        self._stopped = self.closing = True
        if self._keepalive is not None:
            self._keepalive.cancel()
        task = self._reader
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()  # it only reports; nothing to wait for
        self._end(False)
        await self.wire.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run ``coro`` in the background, tracked by the broker."""
        return self.owner.spawn(coro)

    # -- to the client ---------------------------------------------------------------------

    async def publish(self, topic: str, data: bytes, qos: int, retain: bool) -> bool:
        """Send a message; a QoS 1/2 one stays in the session until acknowledged (F7).
        ``True`` if it went out now."""
        if qos == 0:
            if self._stopped:
                return False
            return await self.wire.send(PublishPacket.build(topic, data, None, False, 0, retain))
        packet_id = self.session.next_packet_id()
        if packet_id is None:
            log.warning("%s: 65535 messages unacknowledged; one dropped", self.client_id)
            return False
        message = Outgoing(packet_id, topic, data, qos, retain)
        self.session.inflight_out[packet_id] = message
        return not self._stopped and await self._send_outgoing(message)

    async def _send_outgoing(self, message: Outgoing) -> bool:
        if message.released:
            return await self.wire.send(PubrelPacket.build(message.packet_id))
        dup, message.sent = message.sent, True
        packet = PublishPacket.build(
            message.topic, message.data, message.packet_id, dup, message.qos, message.retain
        )
        return await self.wire.send(packet)

    async def resume(self) -> None:
        """MQTT-4.4.0-1 then F6: re-send what is in flight (PUBLISH with DUP, or PUBREL),
        then deliver, retain 0, what was queued while away."""
        for message in list(self.session.inflight_out.values()):
            if self._stopped:
                return
            await self._send_outgoing(message)
        for queued in self.session.take_queued():
            await self.publish(queued.topic, queued.data, queued.qos, False)

    # -- from the client -------------------------------------------------------------------

    async def _read_loop(self) -> None:
        reader = self.wire.reader
        try:
            while not self.closing:
                try:
                    header = await MQTTFixedHeader.from_stream(reader)
                    if header is None:
                        self.close_reason = self.close_reason or "lost"
                        break
                    packet = await packet_class(header).from_stream(reader, fixed_header=header)
                except DECODE_ERRORS as exc:  # not MQTT: close (MQTT-4.8.0-1)
                    log.debug("closing %s: %r", self.client_id, exc)
                    self.close_reason = self.close_reason or "protocol"
                    break
                if self._keepalive is not None:
                    self._keepalive.seen()
                if not await self._dispatch(header.packet_type, packet):
                    break
        except asyncio.CancelledError:
            pass
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            self.close_reason = self.close_reason or "lost"
        except Exception:  # ours, not the client's: say so loudly, then close
            log.exception("connection of %s: unexpected error", self.client_id)
            self.close_reason = self.close_reason or "error"
        finally:
            self._end(False)

    async def _dispatch(self, kind: int, packet: Any) -> bool:
        """Handle one packet in order; ``False`` ends the connection."""
        session = self.session
        if kind == PUBLISH:
            return await self._on_publish(packet)
        if kind == PUBACK:
            message = session.inflight_out.get(packet.packet_id)
            if message is not None and message.qos == 1:
                del session.inflight_out[packet.packet_id]
        elif kind == PUBREC:
            message = session.inflight_out.get(packet.packet_id)
            if message is not None and message.qos == 2:
                message.released = True
                await self._send_outgoing(message)
        elif kind == PUBCOMP:
            message = session.inflight_out.get(packet.packet_id)
            if message is not None and message.released:
                del session.inflight_out[packet.packet_id]
        elif kind == PUBREL:
            session.inflight_in.discard(packet.packet_id)
            await self.wire.send(PubcompPacket.build(packet.packet_id))
        elif kind == SUBSCRIBE:
            vh, payload = packet.variable_header, packet.payload
            return await self.owner.handle_subscribe(self, vh.packet_id, payload.topics)
        elif kind == UNSUBSCRIBE:
            vh, payload = packet.variable_header, packet.payload
            await self.owner.handle_unsubscribe(self, vh.packet_id, payload.topics)
        elif kind == PINGREQ:
            await self.wire.send(PingRespPacket.build())
        elif kind == DISCONNECT:
            self.close_reason = self.close_reason or "client"
            self._end(True)
            return False
        else:
            # A second CONNECT (MQTT-3.1.0-2) or a packet only a server sends.
            self.close_reason = "second_connect" if kind == CONNECT else "protocol"
            return False
        return True

    async def _on_publish(self, packet: Any) -> bool:
        topic, qos, packet_id = packet.topic_name, packet.qos, packet.packet_id
        data = packet.data or b""
        try:
            validate_topic(topic)  # MQTT-3.3.2-2, MQTT-4.7.3-1
        except InvalidTopic:
            self.close_reason = "protocol"
            return False
        if qos == 2 and packet_id in self.session.inflight_in:
            # A re-sent QoS 2 PUBLISH already taken: acknowledge, do not deliver twice.
            await self.wire.send(PubrecPacket.build(packet_id))
            return True
        verdict = await self.owner.handle_publish(self, topic, data, qos, packet.retain_flag)
        if verdict is Verdict.CLOSE:
            return False
        if qos == 1:
            await self.wire.send(PubackPacket.build(packet_id))
        elif qos == 2:
            # Method A of MQTT 3.1.1 §4.3.3: deliver now, remember the id until PUBREL.
            self.session.inflight_in.add(packet_id)
            await self.wire.send(PubrecPacket.build(packet_id))
        return True
