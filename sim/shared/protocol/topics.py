"""MQTT topics and topic filters: validation, matching and coverage (SPEC §4).

``matches(filter, topic)`` is MQTT 3.1.1 §4.7 matching, including MQTT-4.7.2-1: a
filter starting with a wildcard never matches a topic starting with ``$``.

``covers(resource, filter)`` answers the authorisation question of SPEC §4: is every
topic that ``filter`` matches also matched by ``resource``?  ``a/+`` covers ``a/b`` and
``a/+`` but not ``a/#`` nor ``#``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import InvalidTopic

__all__ = [
    "MAX_PROVIDER_TOPIC_CHARS",
    "MAX_TOPIC_BYTES",
    "P2P_LEVEL",
    "PARENT_TOPIC_CHARS",
    "SYS_PREFIX",
    "covered_by_any",
    "covers",
    "is_sys_topic",
    "matches",
    "matches_any",
    "p2p_target",
    "p2p_topic",
    "parent_topic_of",
    "validate_filter",
    "validate_parent_topic",
    "validate_provider_topic",
    "validate_topic",
]

MAX_TOPIC_BYTES = 65535
#: The broker's namespace (SPEC §4 system topics).
SYS_PREFIX = "$SYS/"


#: The provider's longest topic (a parent topic with its subtopics), in characters.
MAX_PROVIDER_TOPIC_CHARS = 64
#: A parent topic's length range: the provider's console refuses shorter or longer names.
PARENT_TOPIC_CHARS = (3, 64)
_NAME = re.compile(r"[A-Za-z0-9_-]*")
_TOPIC = re.compile(r"[A-Za-z0-9_/-]*")
_FILTER = re.compile(r"[A-Za-z0-9_/+#-]*")
#: A topic filter the provider accepts, wildcards placed as MQTT requires (``+`` a whole
#: level, ``#`` a whole last level): the common case of :func:`validate_provider_topic`
#: in one match.  Levels are ``/``-separated and the alternatives of a level disjoint,
#: so the match never backtracks far (and the text is at most 64 characters).
_PROVIDER_FILTER = re.compile(r"(?:(?:[A-Za-z0-9_-]*|\+)/)*(?:[A-Za-z0-9_-]*|[+#])")
#: The second level of a P2P topic ``<parentTopic>/p2p/<targetClientId>`` (SPEC §4a,
#: the provider's P2P messaging doc).
P2P_LEVEL = "p2p"


def is_sys_topic(topic: str) -> bool:
    """``$SYS`` itself or a topic under it; ``$SYSX`` is an ordinary ``$`` topic."""
    return topic == "$SYS" or topic.startswith(SYS_PREFIX)


def _check_common(text: str, what: str) -> None:
    if not isinstance(text, str):
        raise InvalidTopic(f"{what} must be a string")
    if text == "":
        raise InvalidTopic(f"{what} must not be empty")
    if "\x00" in text:
        raise InvalidTopic(f"{what} must not contain NUL")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        raise InvalidTopic(f"{what} is longer than {MAX_TOPIC_BYTES} bytes")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidTopic(f"{what} is not valid UTF-8") from None


def validate_topic(topic: str) -> str:
    """A topic name for PUBLISH: no wildcards."""
    _check_common(topic, "topic")
    if "+" in topic or "#" in topic:
        raise InvalidTopic(f"topic {topic[:80]!r} must not contain wildcards")
    return topic


def validate_filter(topic_filter: str) -> str:
    """A topic filter: ``+`` alone in a level, ``#`` alone and last."""
    _check_common(topic_filter, "topic filter")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise InvalidTopic(
                f"topic filter {topic_filter[:80]!r}: '#' must be a whole level and the last"
            )
        if "+" in level and level != "+":
            raise InvalidTopic(f"topic filter {topic_filter[:80]!r}: '+' must be a whole level")
    return topic_filter


def _dollar_guard(pattern: list[str], target_first: str) -> bool:
    """MQTT-4.7.2-1: a leading wildcard does not reach ``$`` topics."""
    return not (target_first.startswith("$") and pattern[0] in ("+", "#"))


def matches(topic_filter: str, topic: str) -> bool:
    """Does ``topic_filter`` match the topic name ``topic``?"""
    f = topic_filter.split("/")
    t = topic.split("/")
    if not _dollar_guard(f, t[0]):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True  # also matches the parent level: 'a/#' matches 'a'
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)


def covers(resource: str, topic_filter: str) -> bool:
    """Is every topic matched by ``topic_filter`` also matched by ``resource``?"""
    r = resource.split("/")
    f = topic_filter.split("/")
    if f[0].startswith("$") and r[0] in ("+", "#"):
        return False
    if r[0].startswith("$") and f[0] in ("+", "#"):
        # '+/x' reaches no '$' topic, so '$a/x' cannot be asked to cover more than
        # it matches; but '+/x' matches 'b/x', which '$a/x' does not.
        return False
    for i, level in enumerate(r):
        if level == "#":
            return True
        if i >= len(f):
            return False
        want = f[i]
        if want == "#":
            # '#' matches every non-'$' topic, and so does '+/#' (no topic has zero
            # levels); below the first level '#' also matches the parent, '+/#' not.
            return i == 0 and level == "+" and r[1:] == ["#"]
        if level == "+":
            continue  # '+' covers any single level, '+' included
        if want == "+" or want != level:
            return False
    # A longer filter matches longer topics than the resource does.
    return len(f) == len(r)


def matches_any(filters: Iterable[str], topic: str) -> bool:
    return any(matches(f, topic) for f in filters)


def covered_by_any(resources: Iterable[str], topic_filter: str) -> bool:
    return any(covers(r, topic_filter) for r in resources)


# -- the provider's naming rules (SPEC §4a) ---------------------------------------------------


def validate_provider_topic(text: str, *, filter: bool) -> str:
    """A topic (``filter=False``) or topic filter (``filter=True``) the provider accepts:
    at most 64 characters of letters, digits, ``-``, ``_`` and ``/`` (levels), plus the
    MQTT wildcards ``+`` and ``#`` in a filter, placed as MQTT requires.

    Raises :class:`InvalidTopic` saying which rule is broken.  Empty levels (``a//b``) are
    MQTT's and the provider's docs do not forbid them; whether the first level is a
    registered parent topic is a separate check (:func:`parent_topic_of`).  ``$SYS``
    topics are the broker's own and are not subject to this rule.
    """
    # Fast path (the token API checks every resource of every apply, the broker every
    # topic): a well-formed one is known valid by one match; anything else goes through
    # the checks below, which say what is wrong.  Within these characters and 64 of them
    # the generic MQTT checks (NUL, UTF-8, 65,535 bytes) cannot fail.
    if (
        isinstance(text, str)
        and 0 < len(text) <= MAX_PROVIDER_TOPIC_CHARS
        and (_PROVIDER_FILTER if filter else _TOPIC).fullmatch(text) is not None
    ):
        return text
    what = "topic filter" if filter else "topic"
    if not isinstance(text, str):
        raise InvalidTopic(f"{what} must be a string")
    if text == "":
        raise InvalidTopic(f"{what} must not be empty")
    if len(text) > MAX_PROVIDER_TOPIC_CHARS:
        raise InvalidTopic(
            f"{what} {text[:40]!r}... is {len(text)} characters long;"
            f" the provider allows at most {MAX_PROVIDER_TOPIC_CHARS}"
        )
    if not filter:
        validate_topic(text)  # wildcards first: a clearer message than "contains '+'"
    allowed = _FILTER if filter else _TOPIC
    if allowed.fullmatch(text) is None:
        bad = next(c for c in text if allowed.fullmatch(c) is None)
        extra = " (and the wildcards '+' and '#')" if filter else ""
        raise InvalidTopic(
            f"{what} {text!r} contains {bad!r}: the provider allows only letters, digits,"
            f" '-', '_' and '/'{extra}"
        )
    return validate_filter(text) if filter else validate_topic(text)


def validate_parent_topic(name: str) -> str:
    """A parent topic name (the first level, created per instance): 3 to 64 characters
    of letters, digits, ``-`` and ``_``.  Raises :class:`InvalidTopic`."""
    lo, hi = PARENT_TOPIC_CHARS
    if not isinstance(name, str):
        raise InvalidTopic("a parent topic must be a string")
    if not lo <= len(name) <= hi:
        raise InvalidTopic(
            f"parent topic {name[:80]!r} must be {lo} to {hi} characters long, not {len(name)}"
        )
    if _NAME.fullmatch(name) is None:
        raise InvalidTopic(f"parent topic {name!r} may only contain letters, digits, '-' and '_'")
    return name


def parent_topic_of(topic: str) -> str:
    """The first level of a topic or filter: the parent topic it must belong to."""
    return topic.split("/", 1)[0]


# -- P2P messaging (SPEC §4a, the provider's P2P messaging doc) ------------------------------


def p2p_topic(parent_topic: str, client_id: str) -> str:
    """The topic that reaches ``client_id`` directly: ``<parentTopic>/p2p/<clientId>``."""
    return f"{parent_topic}/{P2P_LEVEL}/{client_id}"


def p2p_target(topic: str) -> tuple[str, str] | None:
    """``(parent topic, target client id)`` of a P2P topic, ``None`` for any other topic.

    A P2P topic has exactly three levels, the second ``p2p`` and the other two non-empty
    (a client id has no ``/``).  Whether the target is a well-formed client id is the
    caller's question: a malformed one simply names no client.
    """
    levels = topic.split("/")
    if len(levels) != 3 or levels[1] != P2P_LEVEL or not levels[0] or not levels[2]:
        return None
    return levels[0], levels[2]
