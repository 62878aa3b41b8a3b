"""Token-aware asyncio MQTT client SDK (SPEC §6).

Pure core (no I/O, no clock, no event loop): :mod:`.planner` (what the client does next
and when), :mod:`.policy` (its parts: refresh time, notice reaction, backoff),
:mod:`.events` (counters and events).  Storage: :mod:`.store` (atomic per-client token
files).  Shell: :mod:`.client` (``TokenClient``: carries out the planner's plans),
:mod:`.transport` (the MQTT connection on gmqtt, and the protocol of an injected one),
:mod:`.gmqtt_private` (every private gmqtt name, checked at import),
:mod:`.appserver_api` (asks the AppServer through an adapter, :mod:`sim.customer.adapter`:
the reference AppServer's ``POST /v1/tokens`` by default).
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
from .transport import ConnectionFactory, IncomingMessage, MqttConnection, Will

__all__ = [
    "AppServerUnavailable",
    "Backoff",
    "BadCredentials",
    "ClientConfig",
    "ClientEvent",
    "ClientRefused",
    "ClientState",
    "ConnectFailed",
    "ConnectionFactory",
    "Counters",
    "EventKind",
    "EventLog",
    "Forbidden",
    "IncomingMessage",
    "MqttConnection",
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
