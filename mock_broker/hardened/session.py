"""What the broker keeps of each client between its connections, and how a CONNECT that
the policy admitted attaches to it (MQTT 3.1.1 §3.1.2.4, §4.1).

F1, F2  The policy decides *before* anything here is touched (see
        :mod:`~mock_broker.hardened.broker`): a refused CONNECT never reaches the table.
F5      A second connection with the same session key takes over whatever the
        clean-session flag (MQTT-3.1.4-2): the first is closed (its will published)
        before the second's CONNACK.
F6      A persistent session resumes with the new connection's parameters, session
        present 1 (MQTT-3.2.2-2); CONNECTs of one key are serialised, so a refresh by
        reconnecting (old connection still up) cannot interleave with the take-over.

Sessions live in namespaces (the policy's :attr:`~.policy.Admission.namespace`): the key
is :func:`~.policy.session_key` of namespace and client id, so a client of another
namespace with the same id is another session, and a session never changes namespace.
A resumed session is rechecked against the resuming CONNECT's credentials before its
CONNACK (:meth:`~.routing.Router.recheck`): what they do not allow is dropped, and only
the rest is re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..connect import ConnackCode, ConnectInfo
from .amqtt_boundary import ConnackPacket
from .wire import Wire

if TYPE_CHECKING:
    from .connection import Connection
    from .policy import Admission
    from .routing import Router

__all__ = ["ClientSession", "Outgoing", "Queued", "SessionTable", "Will"]

log = logging.getLogger(__name__)

TAKEOVER_GRACE = 5.0  # real seconds the old connection gets to close before it is stopped


@dataclass(slots=True)
class Will:
    topic: str
    message: bytes
    qos: int
    retain: bool


@dataclass(slots=True)
class Outgoing:
    """A QoS 1/2 message to the client, kept until acknowledged (MQTT-4.4.0-1, F7)."""

    packet_id: int
    topic: str
    data: bytes
    qos: int
    retain: bool
    sent: bool = False  # sent at least once: re-sent with DUP
    released: bool = False  # QoS 2: PUBREC came, PUBREL is what is re-sent


@dataclass(slots=True)
class Queued:
    """A QoS 1/2 message published while a persistent session was away (F6)."""

    topic: str
    data: bytes
    qos: int


class ClientSession:
    """One client's session: its subscriptions, messages in flight both ways, those
    queued while it is away, and what the policy admitted it with (``access``, opaque
    here)."""

    __slots__ = (
        "_packet_id", "access", "clean", "client_id", "connection", "filters",
        "inflight_in", "inflight_out", "keep_alive", "key", "max_offline", "namespace",
        "offline", "will",
    )  # fmt: skip

    def __init__(
        self, key: str, connect: ConnectInfo, access: Any, max_offline: int, namespace: str = ""
    ) -> None:
        self.key = key
        self.namespace = namespace
        self.client_id = connect.client_id
        self.max_offline = max_offline
        self.connection: Connection | None = None
        self.filters: dict[str, int] = {}  # its subscriptions: filter -> granted QoS
        self.inflight_out: dict[int, Outgoing] = {}  # by packet id, in sending order
        self.inflight_in: set[int] = set()  # QoS 2 ids taken, PUBREL not yet seen
        self.offline: deque[Queued] | None = None
        self._packet_id = 0
        self.renew(connect, access)

    def renew(self, connect: ConnectInfo, access: Any) -> None:
        """The connection's parameters; a resuming one's replace the old (F6)."""
        self.clean: bool = connect.clean_session
        self.keep_alive: int = connect.keep_alive
        self.access = access
        self.will: Will | None = None
        if connect.will_flag and connect.will_topic:
            self.will = Will(
                connect.will_topic,
                connect.will_message or b"",
                connect.will_qos,
                connect.will_retain,
            )

    def next_packet_id(self) -> int | None:
        """A packet id no message in flight uses; ``None`` when all 65535 are."""
        for _ in range(65535):
            self._packet_id = self._packet_id % 65535 + 1
            if self._packet_id not in self.inflight_out:
                return self._packet_id
        return None

    def queue(self, topic: str, data: bytes, qos: int) -> None:
        """Keep a message for when the client is back; the oldest go first when full."""
        if self.max_offline <= 0:
            return
        if self.offline is None:
            self.offline = deque(maxlen=self.max_offline)
        self.offline.append(Queued(topic, data, qos))

    def take_queued(self) -> deque[Queued]:
        queued, self.offline = self.offline, None
        return queued if queued is not None else deque()


class SessionTable:
    """Sessions by their key (the policy's :attr:`~.policy.Admission.session_key`)."""

    def __init__(self, router: Router, max_offline: int) -> None:
        self._router = router
        self._max_offline = max_offline
        self._sessions: dict[str, ClientSession] = {}
        self._locks: dict[str, list[Any]] = {}  # key -> [Lock, users]

    def __contains__(self, key: object) -> bool:
        return key in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[str]:
        return iter(self._sessions)

    def get(self, key: str) -> ClientSession | None:
        return self._sessions.get(key)

    async def attach(
        self,
        connect: ConnectInfo,
        admission: Admission,
        wire: Wire,
        connection: Callable[[ClientSession, Wire], Connection],
    ) -> tuple[Connection, bool]:
        """The admitted CONNECT's connection on its session (new or resumed), CONNACK
        sent; and whether a session was present."""
        key = admission.session_key
        async with self._one_at_a_time(key):
            existing = self._sessions.get(key)
            old = existing.connection if existing is not None else None
            if old is not None and not old.finished.is_set():
                await _take_over(old)  # F5
                existing = self._sessions.get(key)
            if (
                existing is not None
                and not connect.clean_session
                and existing.namespace == admission.namespace  # never across namespaces
            ):
                session, present = existing, True  # F6
                session.renew(connect, admission.access)
                dropped = self._router.recheck(session)
                if dropped:
                    log.info(
                        "%s resumed: %d subscriptions and %d messages its credentials do"
                        " not cover were dropped",
                        connect.client_id, dropped.subscriptions, dropped.messages,
                    )  # fmt: skip
            else:
                if existing is not None:
                    self.discard(existing)  # clean session: start afresh
                session = ClientSession(
                    key, connect, admission.access, self._max_offline, admission.namespace
                )
                present = False
            conn = connection(session, wire)
            session.connection = conn
            self._sessions[key] = session
            if not await wire.send(ConnackPacket.build(int(present), ConnackCode.ACCEPTED)):
                conn.request_close("lost")
            return conn, present

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, key: str) -> AsyncIterator[None]:
        """CONNECTs of one session key in turn: take-over and resume never interleave."""
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = [asyncio.Lock(), 0]
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(key, None)

    def discard(self, session: ClientSession) -> None:
        """Forget a session: its subscriptions, queued and in-flight messages."""
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        self._router.forget(session)
        session.offline = None
        session.inflight_out.clear()
        session.inflight_in.clear()


async def _take_over(old: Connection) -> None:
    old.request_close("takeover")
    try:
        await asyncio.wait_for(old.finished.wait(), TAKEOVER_GRACE)
    except TimeoutError:
        log.warning("take-over: the old connection did not close in time")
        await old.stop()
