"""The rules a :class:`~mock_broker.hardened.HardenedBroker` enforces, passed in.

The broker does MQTT; whoever may connect, publish, subscribe or receive is the policy's
call, asked at each of those points.  The token rules of SPEC §4 are one policy
(:class:`mock_broker.token_policy.TokenPolicy`).  Pure: no I/O here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..connect import ConnectInfo
    from .connection import Connection
    from .session import ClientSession

__all__ = ["Admission", "BrokerPolicy", "Grant", "Verdict", "session_key"]


def session_key(namespace: str, client_id: str) -> str:
    """The key of the session of ``client_id`` in ``namespace``: client ids are unique
    per namespace only, so two namespaces' clients of the same id are two sessions (and
    never take each other over).  NUL separates the two: no client id contains one
    (MQTT-1.5.3-2, refused when the CONNECT is parsed).  The whole key space of the
    broker: anything that finds a session by client id (P2P delivery, too) goes through
    here with the namespace of the client asking."""
    return f"{namespace}\x00{client_id}" if namespace else client_id


class Verdict(enum.Enum):
    """The policy's answer to a PUBLISH or a SUBSCRIBE filter."""

    ALLOW = "allow"
    """PUBLISH: acknowledged and routed; SUBSCRIBE: granted."""
    UNRETAINED = "unretained"
    """PUBLISH: acknowledged and routed as if its retain flag were 0 (delivered to the
    current subscribers, never stored: SPEC §4a, the provider keeps no retained message)."""
    DENY = "deny"
    """PUBLISH: acknowledged, routed nowhere; SUBSCRIBE: SUBACK 0x80."""
    CLOSE = "close"
    """The policy is closing the connection: no answer at all."""


@dataclass(frozen=True, slots=True)
class Grant:
    """SUBSCRIBE: granted, at most at this QoS (SPEC §4a: QoS 2 on a persistent session
    is granted as QoS 1)."""

    qos: int


@dataclass(frozen=True, slots=True)
class Admission:
    """An accepted CONNECT."""

    session_key: str
    """The session it attaches to, resumes or takes over: ``session_key(namespace,
    client_id)``."""
    access: Any
    """The policy's own record of what this session may do; the broker keeps it on the
    session (:attr:`ClientSession.access`) and never looks inside."""
    namespace: str = ""
    """Where the session lives: its topics, retained messages and client ids are seen by
    sessions of the same namespace only (``""``: one namespace for everyone)."""


class BrokerPolicy(Protocol):
    def admit(self, connect: ConnectInfo) -> Admission | int:
        """A CONNECT: an :class:`Admission`, or the CONNACK code refusing it.  Asked
        before any session is touched (F1, F2)."""
        ...

    async def on_connected(self, conn: Connection, session_present: bool) -> None:
        """After the CONNACK, before a resumed session's queued and in-flight messages
        are re-sent (``conn.session`` holds them and its subscriptions; what the new
        credentials do not allow is already gone, see :meth:`may_keep_subscription`)."""
        ...

    async def on_disconnected(self, conn: Connection) -> None:
        """After the connection closed (``conn.close_reason``) and its will went out."""
        ...

    async def screen_publish(
        self, conn: Connection, topic: str, data: bytes, qos: int, retain: bool
    ) -> Verdict:
        """A client PUBLISH.  Whatever the verdict, ``$SYS/`` topics are never routed."""
        ...

    async def authorize_subscribe(
        self, conn: Connection, topic_filter: str, qos: int
    ) -> Verdict | Grant:
        """One filter of a SUBSCRIBE (already a valid filter, QoS 0..2): a verdict, or a
        :class:`Grant` at a lower QoS than asked."""
        ...

    def may_deliver(self, session: ClientSession, topic: str) -> bool:
        """May this session receive a message on ``topic`` (live, queued, in flight when
        it resumes, or retained)?"""
        ...

    def may_keep_subscription(self, session: ClientSession, topic_filter: str) -> bool:
        """When a persistent session resumes (``session.access`` is the new CONNECT's):
        may it keep this subscription?  Asked before the CONNACK; a ``False`` drops it
        silently (MQTT 3.1.1 has no way to tell a client)."""
        ...

    def may_publish_will(self, session: ClientSession) -> bool:
        """May the broker publish this session's will (``session.will``) on its behalf?"""
        ...
