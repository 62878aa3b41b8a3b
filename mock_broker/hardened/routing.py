"""Subscriptions, retained messages and delivery (MQTT 3.1.1 §3.3, §3.8, §4.7).

F8  A message is delivered at min(publish QoS, subscription QoS) (MQTT-3.8.4-6), once
    per client at the highest QoS of its overlapping subscriptions (MQTT-3.3.5-1); a
    repeated SUBSCRIBE replaces the QoS (MQTT-3.8.4-3).
F9  Retained messages go out on SUBSCRIBE, for the filters just granted (MQTT-3.3.1-6),
    never at CONNECT for every filter anyone holds; each is checked by the policy.
F6  A message for a disconnected persistent session is queued (QoS 1/2 only, at most
    ``max_offline_messages``, oldest dropped) and delivered, retain 0, when it resumes.

Every delivery asks the policy (:meth:`~.policy.BrokerPolicy.may_deliver`) first, and
a resumed session keeps only what its new credentials allow (:meth:`Router.recheck`).
Subscriptions and retained messages are kept per namespace
(:attr:`~.policy.Admission.namespace`): a message is routed within the namespace of the
session that published it, never beyond (SPEC §4: each instance is its own namespace).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sim.shared.protocol import matches

if TYPE_CHECKING:
    from .policy import BrokerPolicy
    from .session import ClientSession

__all__ = ["Rechecked", "Retained", "Router"]

Spawn = Callable[[Coroutine[Any, Any, Any]], object]


@dataclass(slots=True)
class Retained:
    topic: str
    data: bytes
    qos: int


@dataclass(frozen=True, slots=True)
class Rechecked:
    """What a resumed session lost because its new credentials do not allow it."""

    subscriptions: int = 0
    messages: int = 0  # queued while away, or in flight (sent, never acknowledged)

    def __bool__(self) -> bool:
        return bool(self.subscriptions or self.messages)


Subscribers = dict[str, tuple["ClientSession", int]]  # session key -> (session, QoS)


class Router:
    def __init__(self, policy: BrokerPolicy, spawn: Spawn) -> None:
        self.policy = policy
        self.spawn = spawn
        # namespace -> filter -> subscribers
        self.subscriptions: dict[str, dict[str, Subscribers]] = {}
        # namespace -> topic -> its retained message
        self.retained: dict[str, dict[str, Retained]] = {}

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(self, session: ClientSession, topic_filter: str, qos: int) -> None:
        filters = self.subscriptions.setdefault(session.namespace, {})
        filters.setdefault(topic_filter, {})[session.key] = (session, qos)
        session.filters[topic_filter] = qos

    def unsubscribe(self, session: ClientSession, topic_filter: str) -> None:
        filters = self.subscriptions.get(session.namespace)
        subscribers = filters.get(topic_filter) if filters is not None else None
        if filters is not None and subscribers is not None:
            held = subscribers.get(session.key)
            if held is not None and held[0] is session:
                del subscribers[session.key]
            if not subscribers:
                del filters[topic_filter]
                if not filters:
                    del self.subscriptions[session.namespace]
        session.filters.pop(topic_filter, None)

    def forget(self, session: ClientSession) -> None:
        """Drop every subscription of a session."""
        for topic_filter in list(session.filters):
            self.unsubscribe(session, topic_filter)

    def recheck(self, session: ClientSession) -> Rechecked:
        """A persistent session resumes with new credentials (``session.access``): drop
        the subscriptions, queued and in-flight messages they do not allow, before
        anything is re-sent.  A QoS 2 message whose PUBREC came stays (the client has
        its content already; only the PUBREL is re-sent)."""
        policy = self.policy
        gone_filters = [f for f in session.filters if not policy.may_keep_subscription(session, f)]
        for topic_filter in gone_filters:
            self.unsubscribe(session, topic_filter)
        messages = 0
        for packet_id, message in list(session.inflight_out.items()):
            if not message.released and not policy.may_deliver(session, message.topic):
                del session.inflight_out[packet_id]
                messages += 1
        queued = session.offline
        if queued:
            kept = [q for q in queued if policy.may_deliver(session, q.topic)]
            messages += len(queued) - len(kept)
            session.offline = deque(kept, maxlen=queued.maxlen) if kept else None
        return Rechecked(len(gone_filters), messages)

    # -- publishing ----------------------------------------------------------------------

    def publish(self, namespace: str, topic: str, data: bytes, qos: int, retain: bool) -> None:
        """A message published in ``namespace``, routed there only."""
        if retain:
            # MQTT-3.3.1-5 store; MQTT-3.3.1-10/11 an empty payload clears.
            if data:
                self.retained.setdefault(namespace, {})[topic] = Retained(topic, data, qos)
            else:
                kept = self.retained.get(namespace)
                if kept is not None:
                    kept.pop(topic, None)
                    if not kept:
                        del self.retained[namespace]
        self.dispatch(namespace, topic, data, qos)

    def dispatch(self, namespace: str, topic: str, data: bytes, qos: int) -> None:
        """Deliver to every matching subscriber of ``namespace`` once, at the best
        matching QoS (F8)."""
        filters = self.subscriptions.get(namespace)
        if not filters:
            return
        targets: dict[str, tuple[ClientSession, int]] = {}
        for topic_filter, subscribers in filters.items():
            if not (topic_filter == topic or matches(topic_filter, topic)):
                continue
            for key, (target, sub_qos) in subscribers.items():
                seen = targets.get(key)
                if seen is None or sub_qos > seen[1]:
                    targets[key] = (target, sub_qos)
        may_deliver = self.policy.may_deliver
        for target, sub_qos in targets.values():
            if may_deliver(target, topic):
                self.send_to(target, topic, data, min(qos, sub_qos))  # MQTT-3.8.4-6

    def send_to(self, target: ClientSession, topic: str, data: bytes, qos: int) -> bool:
        """Send to a connected session, queue for a persistent one away (F6); ``False``
        when neither (a clean session between connections)."""
        conn = target.connection
        if conn is not None:
            self.spawn(conn.publish(topic, data, qos, False))
            return True
        if not target.clean:
            if qos > 0:
                target.queue(topic, data, qos)
            return True
        return False

    def has_retained(self, namespace: str) -> bool:
        return namespace in self.retained

    def retained_for(
        self, session: ClientSession, granted: Iterable[tuple[str, int]]
    ) -> list[Retained]:
        """The retained messages of the session's namespace a SUBSCRIBE just granted, at
        the QoS each goes out (F9)."""
        granted = list(granted)
        found: list[Retained] = []
        for topic, retained in list(self.retained.get(session.namespace, {}).items()):
            best = max((qos for f, qos in granted if matches(f, topic)), default=-1)
            if best < 0 or not self.policy.may_deliver(session, topic):
                continue
            found.append(Retained(topic, retained.data, min(best, retained.qos)))
        return found
