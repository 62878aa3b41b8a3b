"""What a client did: counters and a bounded log of events (pure data).

Counters are cheap and summable across a fleet (:meth:`Counters.add`); events carry
the virtual time and a short detail, for tests and scenario reports.  Neither ever
holds a token or a secret.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

__all__ = ["ClientEvent", "Counters", "EventKind", "EventLog"]


class EventKind(StrEnum):
    TOKEN_FROM_STORE = "token_from_store"  # noqa: S105 - a persisted token was reused
    TOKEN_REQUESTED = "token_requested"  # noqa: S105 - asked the AppServer
    TOKEN_RECEIVED = "token_received"  # noqa: S105 - the AppServer answered with a token
    TOKEN_REQUEST_FAILED = "token_request_failed"  # noqa: S105
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CONNECT_FAILED = "connect_failed"  # network error before CONNACK
    NOT_AUTHORIZED = "not_authorized"  # CONNACK 4/5
    DISCONNECTED = "disconnected"
    BACKOFF = "backoff"  # waiting before the next attempt (detail: delay, attempt)
    REFRESH_SCHEDULED = "refresh_scheduled"
    REFRESH_UPLOAD = "refresh_upload"  # new token swapped in by $SYS/uploadToken
    REFRESH_RECONNECT = "refresh_reconnect"  # new token by reconnecting
    REFRESH_SAME_TOKEN = "refresh_same_token"  # noqa: S105 - AppServer still serves the old one
    EXPIRE_NOTICE = "expire_notice"
    INVALID_NOTICE = "invalid_notice"
    REFUSED = "refused"  # the AppServer refused the client for good: stopped
    CLOSED = "closed"


@dataclass(frozen=True)
class ClientEvent:
    kind: EventKind
    at: float  # virtual seconds
    client_id: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Counters:
    connects: int = 0  # successful CONNACK 0
    connect_attempts: int = 0
    connect_failures: int = 0  # network errors
    not_authorized: int = 0  # CONNACK 4/5
    disconnects: int = 0  # sessions that ended, whatever the reason
    token_requests: int = 0  # asks to the AppServer
    token_request_failures: int = 0
    tokens_received: int = 0
    tokens_from_store: int = 0
    refreshes_upload: int = 0
    refreshes_reconnect: int = 0
    reapplies: int = 0  # asks caused by a dead token (notice, CONNACK 4/5, expiry)
    backoff_waits: int = 0
    backoff_seconds: float = 0.0
    expire_notices: int = 0
    invalid_notices: int = 0
    published: int = 0  # QoS 0 sent or QoS 1 acknowledged
    received: int = 0  # application messages (not $SYS)

    def add(self, other: Counters) -> Counters:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    @classmethod
    def total(cls, many: Iterable[Counters]) -> Counters:
        out = cls()
        for c in many:
            out.add(c)
        return out

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class EventLog:
    """The last ``maxlen`` events of one client, plus listeners called on each."""

    def __init__(self, maxlen: int = 256):
        self.events: deque[ClientEvent] = deque(maxlen=maxlen)
        self._listeners: list[Callable[[ClientEvent], object]] = []

    def subscribe(self, listener: Callable[[ClientEvent], object]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, event: ClientEvent) -> None:
        self.events.append(event)
        for listener in list(self._listeners):
            listener(event)

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.events]

    def of(self, kind: EventKind) -> list[ClientEvent]:
        return [e for e in self.events if e.kind == kind]
