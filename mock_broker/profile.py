"""The provider profile: what the provider's broker does not do, and its limits (SPEC §4a).

Pure: no amqtt, no sockets, no clock.  Each rule answers a :class:`Ruling`: the
features of :class:`~mock_broker.fidelity.Feature` that a use touches (counted in the
fidelity report under *both* profiles) and what the broker does about it (the
``outcome``) under the profile in force.  Under ``mqtt`` every outcome is ALLOW: plain
MQTT 3.1.1; tokens, ACLs and notices are :mod:`mock_broker.decision`'s and apply in
both.

    rule                       provider profile                          source
    will in CONNECT            accepted, never published                 feature FAQ,
                                                                         MQTT 5.0 overview
    retained PUBLISH           delivered as ordinary, not stored         same
    topic > 64 chars or not    PUBLISH acknowledged and dropped,         Limits page (how
    [A-Za-z0-9_/-]             SUBACK 0x80                               it fails: a guess)
    first level not a parent   disconnect (``violation=gentle``:         Java token demo,
    topic of the instance      dropped / SUBACK 0x80)                    SPEC §4a
    31st subscription          SUBACK 0x80                               Limits page
    payload > 64 KB            acknowledged and dropped                  Limits page
    QoS 2, clean session 0     granted QoS 1                             offline msgs doc

A P2P topic ``<parent>/p2p/<clientId>`` (SPEC §4a) is held to the rules by its parent
topic; its last level is a client id (``@@@`` and all), checked by looking the client up.
``$SYS`` topics are the broker's own and none of this applies to them.  Where no parent
topics apply (``parents`` is ``None``: a session of no instance, auth off), that rule is
skipped.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sim.shared.protocol import (
    InvalidTopic,
    p2p_target,
    parent_topic_of,
    validate_provider_topic,
)

from .config import PROFILES, Profile
from .fidelity import Feature

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_SUBSCRIPTIONS",
    "PROFILES",
    "Outcome",
    "Profile",
    "Ruling",
    "rule_publish",
    "rule_subscribe",
    "rule_will",
]

#: Subscriptions one client may hold (Limits page: "each client may subscribe to at most
#: 30 topics at the same time; beyond that new subscriptions fail").
MAX_SUBSCRIPTIONS = 30
#: Largest payload (Limits page: "a message cannot exceed 64 KB; otherwise it is
#: discarded").
MAX_MESSAGE_BYTES = 64 * 1024


class Outcome(enum.Enum):
    ALLOW = "allow"
    """As MQTT 3.1.1 would (a SUBSCRIBE at :attr:`Ruling.qos`)."""
    UNRETAINED = "unretained"
    """PUBLISH: delivered to current subscribers as an ordinary message, not stored."""
    DROP = "drop"
    """PUBLISH acknowledged and delivered nowhere; SUBSCRIBE answered 0x80; a will never
    published."""
    CLOSE = "close"
    """The connection is closed (no notice: the token is not at fault)."""


@dataclass(frozen=True, slots=True)
class Ruling:
    outcome: Outcome = Outcome.ALLOW
    uses: tuple[Feature, ...] = ()
    qos: int = 0
    """SUBSCRIBE: the QoS granted when allowed."""


_ALLOW = Ruling()

# Worst first: the outcome of a use touching several rules is the strictest one's.
_ORDER = (Outcome.CLOSE, Outcome.DROP, Outcome.UNRETAINED, Outcome.ALLOW)


def _strictest(outcomes: list[Outcome]) -> Outcome:
    return next((o for o in _ORDER if o in outcomes), Outcome.ALLOW)


def _topic_uses(text: str, *, is_filter: bool, parents: frozenset[str] | None) -> list[Feature]:
    """The limits a topic or filter breaks: characters and length, parent topic."""
    uses: list[Feature] = []
    p2p = None if is_filter else p2p_target(text)
    checked = p2p[0] if p2p is not None else text
    try:
        validate_provider_topic(checked, filter=is_filter)
    except InvalidTopic:
        uses.append(Feature.TOPIC_LIMITS)
    if parents is not None and parent_topic_of(checked) not in parents:
        uses.append(Feature.PARENT_TOPIC)
    return uses


_TOPIC_OUTCOME = {Feature.TOPIC_LIMITS: Outcome.DROP, Feature.PARENT_TOPIC: Outcome.CLOSE}


def rule_publish(
    topic: str,
    size: int,
    retain: bool,
    *,
    parents: frozenset[str] | None,
    provider: bool,
) -> Ruling:
    """A client PUBLISH of ``size`` payload bytes (``$SYS`` topics never come here)."""
    uses = _topic_uses(topic, is_filter=False, parents=parents)
    outcomes = [_TOPIC_OUTCOME[u] for u in uses]
    if size > MAX_MESSAGE_BYTES:
        uses.append(Feature.MESSAGE_SIZE)
        outcomes.append(Outcome.DROP)
    if retain:
        uses.append(Feature.RETAIN)
        outcomes.append(Outcome.UNRETAINED)
    if not uses:
        return _ALLOW
    return Ruling(_strictest(outcomes) if provider else Outcome.ALLOW, tuple(uses))


def rule_subscribe(
    topic_filter: str,
    qos: int,
    *,
    clean_session: bool,
    held: int,
    renewed: bool,
    parents: frozenset[str] | None,
    provider: bool,
) -> Ruling:
    """One SUBSCRIBE filter (valid MQTT, QoS 0..2) of a session holding ``held``
    subscriptions; ``renewed``: it holds this filter already (a re-SUBSCRIBE replaces
    it, MQTT-3.8.4-3, and adds none)."""
    uses = _topic_uses(topic_filter, is_filter=True, parents=parents)
    outcomes = [_TOPIC_OUTCOME[u] for u in uses]
    if not renewed and held >= MAX_SUBSCRIPTIONS:
        uses.append(Feature.SUBSCRIPTIONS)
        outcomes.append(Outcome.DROP)
    granted = qos
    if qos == 2 and not clean_session:
        uses.append(Feature.QOS2_PERSISTENT)
        if provider:
            granted = 1
    if not provider:
        return Ruling(Outcome.ALLOW, tuple(uses), qos)
    return Ruling(_strictest(outcomes), tuple(uses), granted)


def rule_will(*, provider: bool) -> Ruling:
    """A CONNECT that carries a will."""
    return Ruling(Outcome.DROP if provider else Outcome.ALLOW, (Feature.WILL,))
