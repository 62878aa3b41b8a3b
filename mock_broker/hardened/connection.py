"""One client connection: read its packets in order and answer them.

F3   Keep-alive enforced (:mod:`~mock_broker.hardened.keepalive`).
F4   Every packet is handled in turn by one reader: a PUBLISH to a ``$`` topic cannot
     stop the client's loop (stock amqtt silently stops it: later SUBSCRIBEs never get
     a SUBACK).
F7   A QoS 1/2 message to the client stays in its session until acknowledged, without a
     timeout, and is re-sent with DUP when the session resumes (MQTT-4.4.0-1).
F10  One reader task per connection, no waiter tasks per message, no state machine.

F12  Each packet is read whole and parsed strictly (:mod:`mock_broker.packets`): a
     malformed one (reserved flags, QoS 3, a topic that is not UTF-8 or has wildcards,
     a SUBSCRIBE or UNSUBSCRIBE without topics, a second CONNECT, ...) closes the
     connection unanswered (MQTT-4.8.0-1, reason ``protocol``; amqtt's decoders let
     these through).

Any other exception is a bug of the broker's and is logged as one, with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from functools import partial
from typing import Any, Protocol

from ..packets import (
    Ack,
    Bare,
    ClientPacket,
    MalformedPacket,
    PacketType,
    Publish,
    Subscribe,
    Unsubscribe,
    check_fixed_header,
    parse_packet,
)
from .amqtt_boundary import (
    PingRespPacket,
    PubackPacket,
    PubcompPacket,
    PublishPacket,
    PubrecPacket,
    PubrelPacket,
)
from .keepalive import KeepAlive
from .policy import Verdict
from .session import ClientSession, Outgoing
from .wire import Wire, read_exactly, read_remaining_length

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
        try:
            while not self.closing:
                try:
                    packet = await self._read_packet()
                except MalformedPacket as exc:  # MQTT-4.8.0-1: close, answer nothing
                    log.debug("closing %s: %s", self.client_id, exc)
                    self.close_reason = self.close_reason or "protocol"
                    break
                if packet is None:
                    break  # close_reason already says why
                if self._keepalive is not None:
                    self._keepalive.seen()
                if not await self._dispatch(packet):
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

    async def _read_packet(self) -> ClientPacket | None:
        """The next packet, whole; ``None`` at the end of the stream or at a second
        CONNECT (MQTT-3.1.0-2), with :attr:`close_reason` set."""
        reader = self.wire.reader
        first = await reader.read(1)
        if not first:
            self.close_reason = self.close_reason or "lost"
            return None
        kind = check_fixed_header(first[0])
        if kind is PacketType.CONNECT:
            self.close_reason = "second_connect"
            return None
        length = await read_remaining_length(reader)
        body = await read_exactly(reader, length) if length else b""
        return parse_packet(kind, first[0] & 0x0F, body)

    async def _dispatch(self, packet: ClientPacket) -> bool:
        """Handle one packet in order; ``False`` ends the connection."""
        session = self.session
        if isinstance(packet, Publish):
            return await self._on_publish(packet)
        if isinstance(packet, Ack):
            message = session.inflight_out.get(packet.packet_id)
            if packet.kind is PacketType.PUBACK:
                if message is not None and message.qos == 1:
                    del session.inflight_out[packet.packet_id]
            elif packet.kind is PacketType.PUBREC:
                if message is not None and message.qos == 2:
                    message.released = True
                    await self._send_outgoing(message)
            elif packet.kind is PacketType.PUBCOMP:
                if message is not None and message.released:
                    del session.inflight_out[packet.packet_id]
            else:  # PUBREL
                session.inflight_in.discard(packet.packet_id)
                await self.wire.send(PubcompPacket.build(packet.packet_id))
        elif isinstance(packet, Subscribe):
            return await self.owner.handle_subscribe(self, packet.packet_id, list(packet.filters))
        elif isinstance(packet, Unsubscribe):
            await self.owner.handle_unsubscribe(self, packet.packet_id, list(packet.filters))
        elif isinstance(packet, Bare) and packet.kind is PacketType.PINGREQ:
            await self.wire.send(PingRespPacket.build())
        else:  # DISCONNECT
            self.close_reason = self.close_reason or "client"
            self._end(True)
            return False
        return True

    async def _on_publish(self, packet: Publish) -> bool:
        topic, qos, packet_id = packet.topic, packet.qos, packet.packet_id
        if qos == 2 and packet_id in self.session.inflight_in:
            # A re-sent QoS 2 PUBLISH already taken: acknowledge, do not deliver twice.
            await self.wire.send(PubrecPacket.build(packet_id))
            return True
        verdict = await self.owner.handle_publish(self, topic, packet.data, qos, packet.retain)
        if verdict is Verdict.CLOSE:
            return False
        if qos == 1:
            await self.wire.send(PubackPacket.build(packet_id))
        elif qos == 2:
            # Method A of MQTT 3.1.1 §4.3.3: deliver now, remember the id until PUBREL.
            self.session.inflight_in.add(packet_id)
            await self.wire.send(PubrecPacket.build(packet_id))
        return True
