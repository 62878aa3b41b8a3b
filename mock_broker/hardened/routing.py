"""Subscriptions, retained messages and delivery (MQTT 3.1.1 §3.3, §3.8, §4.7).

F8  A message is delivered at min(publish QoS, subscription QoS) (MQTT-3.8.4-6), once
    per client at the highest QoS of its overlapping subscriptions (MQTT-3.3.5-1); a
    repeated SUBSCRIBE replaces the QoS (MQTT-3.8.4-3).
F9  Retained messages go out on SUBSCRIBE, for the filters just granted (MQTT-3.3.1-6),
    never at CONNECT for every filter anyone holds; each is checked by the policy.
F6  A message for a disconnected persistent session is queued (QoS 1/2 only, at most
    ``max_offline_messages``, oldest dropped) and delivered, retain 0, when it resumes.

Every delivery asks the policy (:meth:`~.policy.BrokerPolicy.may_deliver`) first.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sim.shared.protocol import matches

if TYPE_CHECKING:
    from .policy import BrokerPolicy
    from .session import ClientSession

__all__ = ["Retained", "Router"]

Spawn = Callable[[Coroutine[Any, Any, Any]], object]


@dataclass(slots=True)
class Retained:
    topic: str
    data: bytes
    qos: int


class Router:
    def __init__(self, policy: BrokerPolicy, spawn: Spawn) -> None:
        self.policy = policy
        self.spawn = spawn
        # filter -> session key -> (session, granted QoS)
        self.subscriptions: dict[str, dict[str, tuple[ClientSession, int]]] = {}
        self.retained: dict[str, Retained] = {}

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(self, session: ClientSession, topic_filter: str, qos: int) -> None:
        self.subscriptions.setdefault(topic_filter, {})[session.key] = (session, qos)
        session.filters[topic_filter] = qos

    def unsubscribe(self, session: ClientSession, topic_filter: str) -> None:
        subscribers = self.subscriptions.get(topic_filter)
        if subscribers is not None:
            held = subscribers.get(session.key)
            if held is not None and held[0] is session:
                del subscribers[session.key]
            if not subscribers:
                del self.subscriptions[topic_filter]
        session.filters.pop(topic_filter, None)

    def forget(self, session: ClientSession) -> None:
        """Drop every subscription of a session."""
        for topic_filter in list(session.filters):
            self.unsubscribe(session, topic_filter)

    # -- publishing ----------------------------------------------------------------------

    def publish(self, topic: str, data: bytes, qos: int, retain: bool) -> None:
        if retain:
            # MQTT-3.3.1-5 store; MQTT-3.3.1-10/11 an empty payload clears.
            if data:
                self.retained[topic] = Retained(topic, data, qos)
            else:
                self.retained.pop(topic, None)
        self.dispatch(topic, data, qos)

    def dispatch(self, topic: str, data: bytes, qos: int) -> None:
        """Deliver to every matching subscriber once, at the best matching QoS (F8)."""
        targets: dict[str, tuple[ClientSession, int]] = {}
        for topic_filter, subscribers in self.subscriptions.items():
            if not (topic_filter == topic or matches(topic_filter, topic)):
                continue
            for key, (target, sub_qos) in subscribers.items():
                seen = targets.get(key)
                if seen is None or sub_qos > seen[1]:
                    targets[key] = (target, sub_qos)
        may_deliver = self.policy.may_deliver
        for target, sub_qos in targets.values():
            deliver_qos = min(qos, sub_qos)  # MQTT-3.8.4-6
            if not may_deliver(target, topic):
                continue
            conn = target.connection
            if conn is not None:
                self.spawn(conn.publish(topic, data, deliver_qos, False))
            elif not target.clean and deliver_qos > 0:
                target.queue(topic, data, deliver_qos)

    def retained_for(
        self, session: ClientSession, granted: Iterable[tuple[str, int]]
    ) -> list[Retained]:
        """The retained messages a SUBSCRIBE just granted, at the QoS each goes out (F9)."""
        granted = list(granted)
        found: list[Retained] = []
        for topic, retained in list(self.retained.items()):
            best = max((qos for f, qos in granted if matches(f, topic)), default=-1)
            if best < 0 or not self.policy.may_deliver(session, topic):
                continue
            found.append(Retained(topic, retained.data, min(best, retained.qos)))
        return found
