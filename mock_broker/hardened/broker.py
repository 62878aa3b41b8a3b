"""The hardened broker: amqtt's listeners and codecs, our connection path, a policy's rules.

A connection's life: its CONNECT is read whole (:mod:`.handshake`); the policy admits
or refuses it before any session is touched (F1, F2); an admitted one attaches to its
session, taking over or resuming (:mod:`.session`, F5, F6), and then its packets are
read and answered in order (:mod:`.connection`); what it publishes is routed
(:mod:`.routing`); when it ends, its will goes out unless it said DISCONNECT
(MQTT-3.1.2-8) and a clean session is forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Coroutine, Mapping
from dataclasses import replace
from typing import Any

from sim.shared.protocol import is_sys_topic

from .amqtt_boundary import SubackPacket, UnsubackPacket
from .connection import Connection
from .handshake import read_connect, refuse
from .listeners import Listeners
from .policy import Admission, BrokerPolicy, Grant, Verdict
from .routing import Router
from .session import ClientSession, SessionTable
from .wire import Wire

__all__ = ["HardenedBroker"]

log = logging.getLogger(__name__)

_SUBACK_FAILURE = 0x80
_ROUTED = (Verdict.ALLOW, Verdict.UNRETAINED)


class HardenedBroker:
    """An MQTT 3.1.1 broker enforcing ``policy``.

    ``listeners`` is amqtt's listener configuration (``{"default": {"type": "tcp",
    "bind": "127.0.0.1:0"}}``, ``"ws"``, ``"ssl"``, ``"certfile"``...).
    """

    def __init__(
        self,
        listeners: Mapping[str, Mapping[str, Any]],
        policy: BrokerPolicy,
        *,
        connect_timeout: float = 10.0,
        max_offline_messages: int = 1000,
    ) -> None:
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.router = Router(policy, self.spawn)
        self.sessions = SessionTable(self.router, max_offline_messages)
        self.connections: set[Connection] = set()
        self._background: set[asyncio.Future[Any]] = set()
        self._listeners = Listeners(listeners, self.serve)

    # -- running ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._listeners.start()

    def bound_port(self, listener_name: str = "default") -> int:
        """The port a listener really bound (for ``port 0``)."""
        return self._listeners.port(listener_name)

    def listener(self, listener_name: str = "default") -> Any:
        """A listener's server object (its ``sockets``), ``None`` if there is none."""
        return self._listeners.server(listener_name)

    async def shutdown(self) -> None:
        self._listeners.stop_accepting()
        await self.close_all("shutdown")
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._listeners.shutdown()

    async def close_all(self, reason: str = "kicked", grace: float = 5.0) -> int:
        """Close every live connection (wills published); return how many."""
        closing = [c for c in self.connections if not c.closing]
        # Every TCP socket first, in one pass (a FIN to every client within a few ms),
        # then each session's teardown: the clients learn of the loss at once and come
        # back while the broker settles, instead of after 2,000 teardowns.
        for conn in closing:
            conn.wire.close_now()
        for conn in closing:
            conn.request_close(reason)
        waits = [c.finished.wait() for c in closing]
        if waits:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waits), grace)
        return len(closing)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        """Run ``coro`` in the background: tracked, cancelled at shutdown, a failure
        logged as the bug it is.  ``RuntimeError`` outside a running event loop."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # -- one connection --------------------------------------------------------------------

    async def serve(self, listener_name: str, wire: Wire) -> None:
        """A connection accepted by a listener, from CONNECT to its end."""
        try:
            await self._serve(wire)
        except Exception:  # ours, never the client's: loud, and the listener goes on
            log.exception("connection handling failed on listener %s", listener_name)
            await wire.close()

    async def _serve(self, wire: Wire) -> None:
        connect = await read_connect(wire, self.connect_timeout)
        if connect is None:
            await wire.close()
            return
        if not connect.client_id:  # MQTT-3.1.3-6: the server assigns one
            connect = replace(connect, client_id=f"auto-{secrets.token_hex(8)}")
        admission = self.policy.admit(connect)
        if not isinstance(admission, Admission):
            await refuse(wire, admission)  # F1, F2: nothing was touched
            return
        conn, present = await self.sessions.attach(connect, admission, wire, self._connection)
        try:
            conn.start()
            await self.policy.on_connected(conn, present)
            if present:
                self.spawn(conn.resume())
            polite = await conn.wait_closed()
            await self._end(conn, polite)
        finally:
            self.connections.discard(conn)
            conn.finished.set()

    def _connection(self, session: ClientSession, wire: Wire) -> Connection:
        conn = Connection(session, wire, self)
        self.connections.add(conn)
        return conn

    async def _end(self, conn: Connection, polite: bool) -> None:
        await conn.stop()
        session = conn.session
        ours = session.connection is conn
        if ours:
            session.connection = None
        will = session.will
        if (
            not polite  # MQTT-3.1.2-8: any close but a DISCONNECT publishes the will
            and will is not None
            and not is_sys_topic(will.topic)  # F4: never routed, not even as a will
            and self.policy.may_publish_will(session)
        ):
            self.router.publish(session.namespace, will.topic, will.message, will.qos, will.retain)
        if ours and session.clean:
            self.sessions.discard(session)
        await self.policy.on_disconnected(conn)

    # -- what a connection asks (connection.Owner) -----------------------------------------

    async def handle_publish(
        self, conn: Connection, topic: str, data: bytes, qos: int, retain: bool
    ) -> Verdict:
        verdict = await self.policy.screen_publish(conn, topic, data, qos, retain)
        # F4: $SYS/ is the broker's namespace, never routed (the policy may act on it).
        if verdict in _ROUTED and not is_sys_topic(topic):
            retain = retain and verdict is Verdict.ALLOW
            self.router.publish(conn.session.namespace, topic, data, qos, retain)
        return verdict

    def deliver_to(self, session_key: str, topic: str, data: bytes, qos: int) -> bool:
        """One message to one session, no subscription asked (the provider's P2P
        messaging, SPEC §4a): sent now if it is connected, kept (QoS 1/2) while a
        persistent session is away; ``False`` if there is no such session.  The caller
        (the policy) has decided the sender may reach it."""
        session = self.sessions.get(session_key)
        return session is not None and self.router.send_to(session, topic, data, qos)

    async def handle_subscribe(
        self, conn: Connection, packet_id: int, topics: list[tuple[str, int]]
    ) -> bool:
        # Each filter is a valid MQTT filter and QoS (mock_broker.packets): a malformed
        # SUBSCRIBE closed the connection before it got here (MQTT-4.8.0-1).
        codes: list[int] = []
        for topic_filter, qos in topics:
            verdict = await self.policy.authorize_subscribe(conn, topic_filter, qos)
            if isinstance(verdict, Grant):
                qos, verdict = min(qos, verdict.qos), Verdict.ALLOW
            if verdict is Verdict.CLOSE:
                return False
            if verdict is Verdict.DENY:
                codes.append(_SUBACK_FAILURE)
                continue
            self.router.subscribe(conn.session, topic_filter, qos)
            codes.append(qos)
        await conn.wire.send(SubackPacket.build(packet_id, codes))
        granted = [(f, c) for (f, _), c in zip(topics, codes, strict=True) if c != _SUBACK_FAILURE]
        if granted and self.router.has_retained(conn.session.namespace):
            self.spawn(self._send_retained(conn, granted))
        return True

    async def _send_retained(self, conn: Connection, granted: list[tuple[str, int]]) -> None:
        """MQTT-3.3.1-6: the retained messages of the filters just granted, retain 1."""
        for retained in self.router.retained_for(conn.session, granted):
            await conn.publish(retained.topic, retained.data, retained.qos, True)

    async def handle_unsubscribe(self, conn: Connection, packet_id: int, topics: list[str]) -> None:
        for topic_filter in topics:
            self.router.unsubscribe(conn.session, topic_filter)
        await conn.wire.send(UnsubackPacket.build(packet_id))
