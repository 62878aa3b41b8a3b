"""Token-aware asyncio MQTT client SDK (SPEC §6).

Pure core (no I/O, no clock, no event loop): :mod:`.policy` (refresh decision, notice
reaction, backoff), :mod:`.events` (counters and events).  Storage: :mod:`.store`
(atomic per-client token files).  Shell: :mod:`.transport` (the MQTT connection, on
gmqtt), :mod:`.appserver_api` (``POST /v1/tokens``), :mod:`.client` (``TokenClient``).
"""

from .client import ClientConfig, ClientState, TokenClient
from .errors import (
    AppServerUnavailable,
    BadCredentials,
    ClientRefused,
    ConnectFailed,
    Forbidden,
    NetworkError,
    NotAuthorized,
    NotConnected,
    SdkError,
    TokenRequestError,
)
from .events import ClientEvent, Counters, EventKind, EventLog
from .policy import Backoff, RefreshPolicy
from .store import StoredToken, TokenStore
from .transport import IncomingMessage, Will

__all__ = [
    "AppServerUnavailable",
    "Backoff",
    "BadCredentials",
    "ClientConfig",
    "ClientEvent",
    "ClientRefused",
    "ClientState",
    "ConnectFailed",
    "Counters",
    "EventKind",
    "EventLog",
    "Forbidden",
    "IncomingMessage",
    "NetworkError",
    "NotAuthorized",
    "NotConnected",
    "RefreshPolicy",
    "SdkError",
    "StoredToken",
    "TokenClient",
    "TokenRequestError",
    "TokenStore",
    "Will",
]
