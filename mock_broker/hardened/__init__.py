"""The hardened broker: where amqtt 0.12.1's own flaws are fixed (docs/broker.md).

amqtt keeps its listeners and packet codecs; the connection path, sessions and routing
are ours, one concern per module, and the rules are a policy object passed in
(:class:`~.policy.BrokerPolicy`).  Each fix has a test in
``tests/broker/test_hardening.py`` run against stock amqtt (``xfail(strict=True)``)
and against this broker.

F1   authenticate before touching any session             broker, session
F2   a refused CONNECT leaves nothing behind                broker, session
F3   keep-alive enforced (1.5 x), CONNECT timeout           keepalive, handshake
F4   a ``$`` PUBLISH does not stop the client; ``$SYS/``    connection, broker
     never routed
F5   same client id takes over whatever the clean flag      session
F6   persistent sessions resume, queued messages delivered  session, routing, connection
F7   unacknowledged QoS 1/2 kept and re-sent with DUP       connection
F8   delivery at min(QoS), once per client, re-SUBSCRIBE    routing
     replaces the QoS
F9   retained messages only for the filters subscribed      routing, broker
F10  a lean connect path (one read per CONNECT, one task    handshake, connection
     per connection, no state machine)
F11  TCP listen backlog 4096                                listeners
F12  malformed packets close the connection (strict         connection, wire,
     parsing, MQTT-4.8.0-1)                                 mock_broker.packets

Every amqtt name the package uses is in :mod:`.amqtt_boundary`, checked at import.
"""

from .broker import HardenedBroker
from .connection import Connection
from .policy import Admission, BrokerPolicy, Grant, Verdict, session_key
from .session import ClientSession, Will

__all__ = [
    "Admission",
    "BrokerPolicy",
    "ClientSession",
    "Connection",
    "Grant",
    "HardenedBroker",
    "Verdict",
    "Will",
    "session_key",
]
