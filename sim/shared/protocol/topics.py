"""MQTT topics and topic filters: validation, matching and coverage (SPEC §4).

``matches(filter, topic)`` is MQTT 3.1.1 §4.7 matching, including MQTT-4.7.2-1: a
filter starting with a wildcard never matches a topic starting with ``$``.

``covers(resource, filter)`` answers the authorisation question of SPEC §4: is every
topic that ``filter`` matches also matched by ``resource``?  ``a/+`` covers ``a/b`` and
``a/+`` but not ``a/#`` nor ``#``.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import InvalidTopic

__all__ = [
    "MAX_TOPIC_BYTES",
    "SYS_PREFIX",
    "covered_by_any",
    "covers",
    "is_sys_topic",
    "matches",
    "matches_any",
    "validate_filter",
    "validate_topic",
]

MAX_TOPIC_BYTES = 65535
#: The broker's namespace (SPEC §4 system topics).
SYS_PREFIX = "$SYS/"


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
