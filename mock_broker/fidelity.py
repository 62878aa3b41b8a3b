"""The fidelity report: every use of something the provider's broker lacks, per client
(SPEC §4a, docs/fidelity.md).

Code that passes against the mock must pass against the provider.  The provider profile
refuses or changes what the provider does not support; under both profiles each such use
is also *counted* here, for the client that made it, so a user sees why the code would
break in production ("GID_app@@@dev-1 set a will 3 times: the provider never publishes
wills").

    Feature              counted when                                   provider source
    will                 a CONNECT carries a will                       feature FAQ,
                                                                        MQTT 5.0 overview
    retain               a PUBLISH has the retain flag                  same
    message_size         a PUBLISH payload is over 64 KB                Limits page
    topic_limits         a topic/filter is over 64 characters or has    Limits page
                         other characters than letters, digits, - _ /
    qos2_persistent      QoS 2 asked by a persistent session (clean 0)  offline messages doc
    parent_topic         a topic/filter's first level is not one of     Java token demo,
                         the instance's parent topics                   SPEC §4a
    subscriptions        a 31st subscription of one client              Limits page
    p2p_unknown_client   a P2P message names no client of the instance  (the mock's choice)

Pure: no I/O, no clock.  Bounded: totals are exact, per-client counts are kept for the
:data:`MAX_CLIENTS` clients that used such a feature most recently (older ones are
forgotten and counted in ``clients_forgotten``), so no stream of client ids can grow it.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_CLIENTS", "WHY", "ClientUses", "Feature", "FidelityLedger", "FidelityReport"]

#: Clients whose own counts are kept (least recently seen forgotten first).
MAX_CLIENTS = 4096
#: A client id longer than this is kept cut (auth off takes any client id).
_MAX_ID_CHARS = 128


class Feature(enum.StrEnum):
    """Something the provider's broker does not do, or does not allow past a limit."""

    WILL = "will"
    RETAIN = "retain"
    MESSAGE_SIZE = "message_size"
    TOPIC_LIMITS = "topic_limits"
    QOS2_PERSISTENT = "qos2_persistent"
    PARENT_TOPIC = "parent_topic"
    SUBSCRIPTIONS = "subscriptions"
    P2P_UNKNOWN_CLIENT = "p2p_unknown_client"


#: Why each use would break in production, in a user's words (docs/fidelity.md).
WHY: Mapping[Feature, str] = {
    Feature.WILL: "set a will: the provider accepts it and never publishes it",
    Feature.RETAIN: "published retained: the provider stores no retained message",
    Feature.MESSAGE_SIZE: "published over 64 KB: the provider discards such a message",
    Feature.TOPIC_LIMITS: (
        "used a topic over 64 characters or with characters other than letters, digits,"
        " '-', '_', '/': the provider cannot send or subscribe it"
    ),
    Feature.QOS2_PERSISTENT: (
        "asked QoS 2 on a persistent session (clean session 0): the provider does not"
        " support it (granted QoS 1 here)"
    ),
    Feature.PARENT_TOPIC: (
        "used a topic whose first level is not a parent topic of its instance: the"
        " provider refuses it and disconnects"
    ),
    Feature.SUBSCRIPTIONS: "asked for more than 30 subscriptions: the provider refuses them",
    Feature.P2P_UNKNOWN_CLIENT: (
        "sent a P2P message to a client that is not connected and has no session: it is lost"
    ),
}


@dataclass(frozen=True)
class ClientUses:
    """One client's uses of missing features."""

    instance_id: str
    client_id: str
    counts: Mapping[Feature, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "client_id": self.client_id,
            "uses": {str(f): n for f, n in sorted(self.counts.items())},
        }


@dataclass(frozen=True)
class FidelityReport:
    """A snapshot of the ledger (``GET /fidelity``, :meth:`BrokerHandle.fidelity`)."""

    profile: str
    totals: Mapping[Feature, int] = field(default_factory=dict)
    clients: tuple[ClientUses, ...] = ()
    clients_forgotten: int = 0

    def __bool__(self) -> bool:
        """True when anything was counted."""
        return any(self.totals.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "totals": {str(f): n for f, n in sorted(self.totals.items())},
            "clients": [c.to_json() for c in self.clients],
            "clients_forgotten": self.clients_forgotten,
            "why": {str(f): WHY[f] for f in sorted(self.totals)},
        }

    def lines(self, max_clients: int = 20) -> list[str]:
        """A short text for a terminal: what would break in production, and who did it."""
        if not self:
            return [f"fidelity ({self.profile} profile): nothing the provider lacks was used"]
        out = [f"fidelity ({self.profile} profile): uses of features the provider lacks"]
        for feature, count in sorted(self.totals.items()):
            out.append(f"  {feature} x{count}: {WHY[feature]}")
        for uses in self.clients[:max_clients]:
            what = ", ".join(f"{f} x{n}" for f, n in sorted(uses.counts.items()))
            out.append(f"  {uses.instance_id or '-'} {uses.client_id}: {what}")
        hidden = len(self.clients) - max_clients + self.clients_forgotten
        if hidden > 0:
            out.append(f"  ... and {hidden} more clients")
        return out


class FidelityLedger:
    """Counts uses per (instance, client id) and in total; bounded (module docstring)."""

    def __init__(self, profile: str, max_clients: int = MAX_CLIENTS) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be >= 1")
        self.profile = profile
        self.max_clients = max_clients
        self._totals: dict[Feature, int] = {}
        self._clients: OrderedDict[tuple[str, str], dict[Feature, int]] = OrderedDict()
        self._forgotten = 0

    def record(self, instance_id: str, client_id: str, feature: Feature) -> None:
        self._totals[feature] = self._totals.get(feature, 0) + 1
        key = (instance_id, client_id[:_MAX_ID_CHARS])
        counts = self._clients.get(key)
        if counts is None:
            counts = self._clients[key] = {}
            if len(self._clients) > self.max_clients:
                self._clients.popitem(last=False)
                self._forgotten += 1
        else:
            self._clients.move_to_end(key)
        counts[feature] = counts.get(feature, 0) + 1

    def total(self, feature: Feature) -> int:
        return self._totals.get(feature, 0)

    def uses_of(self, client_id: str, instance_id: str = "") -> Mapping[Feature, int]:
        """One client's counts (empty if it used nothing, or was forgotten)."""
        return dict(self._clients.get((instance_id, client_id[:_MAX_ID_CHARS]), {}))

    def clients(self) -> list[tuple[str, str, Mapping[Feature, int]]]:
        """``(instance, client id, counts)`` of the clients kept, most recent last."""
        return [(i, c, dict(n)) for (i, c), n in self._clients.items()]

    def report(self) -> FidelityReport:
        clients = tuple(
            ClientUses(instance, client, dict(counts))
            for (instance, client), counts in sorted(self._clients.items())
        )
        return FidelityReport(self.profile, dict(self._totals), clients, self._forgotten)
