"""Parameter rules of the token API (SPEC §3a/§3b), pure.

Every function takes plain strings (what the shells parsed off the wire) and returns
typed values or raises a :class:`~mock_authserver.errors.ParameterError` whose message
names the parameter and the rule.  Rules that need the time (the 60 s minimum and the
30-day cap of ``expireTime``) live in the TTL engine, which owns "now".
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from sim.shared.protocol.errors import InvalidTopic
from sim.shared.protocol.tokens import MAX_TOKEN_CHARS
from sim.shared.protocol.topics import validate_filter

from .errors import MissingParameter, ParameterError

__all__ = [
    "ACTIONS",
    "MAX_EXPIRE_DIGITS",
    "MAX_PARAM_CHARS",
    "MAX_RESOURCES",
    "MAX_RESOURCE_CHARS",
    "ApplyRequest",
    "parse_actions",
    "parse_expire_ms",
    "parse_resources",
    "parse_token",
    "require",
]

#: The three accepted ``actions`` values (SPEC §3a).
ACTIONS: dict[str, frozenset[str]] = {
    "R": frozenset({"R"}),
    "W": frozenset({"W"}),
    "R,W": frozenset({"R", "W"}),
}
MAX_RESOURCES = 100
#: A resource is an MQTT topic filter; the wire caps it (and the token must stay small).
MAX_RESOURCE_CHARS = 1024
#: Longest value of any parameter we read; longer is a parameter error, not a 5xx.
MAX_PARAM_CHARS = 128 * 1024
#: ``expireTime`` is a count of milliseconds; anything longer than this is not a time.
MAX_EXPIRE_DIGITS = 40


@dataclass(frozen=True)
class ApplyRequest:
    """A parsed, well-formed apply: not yet checked against accounts or the clock."""

    access_key_id: str
    instance_id: str
    actions: frozenset[str]
    resources: tuple[str, ...]
    expire_ms: int


def require(params: Mapping[str, str], name: str) -> str:
    """The parameter's value; :class:`MissingParameter` when absent or empty."""
    value = params.get(name)
    if value is None or value == "":
        raise MissingParameter(f"missing parameter {name!r}")
    if not isinstance(value, str):
        raise ParameterError(f"parameter {name!r} must be a text value")
    if len(value) > MAX_PARAM_CHARS:
        raise ParameterError(f"parameter {name!r} is longer than {MAX_PARAM_CHARS} characters")
    return value


def parse_actions(value: str, name: str = "actions") -> frozenset[str]:
    try:
        return ACTIONS[value]
    except KeyError:
        raise ParameterError(f"{name} must be R, W or R,W, got {value[:20]!r}") from None


def parse_resources(value: str, name: str = "resources") -> tuple[str, ...]:
    """1 to 100 topic filters, comma-separated, in dictionary order, no repeats."""
    items = value.split(",")
    if len(items) > MAX_RESOURCES:
        raise ParameterError(f"{name} lists {len(items)} topic filters; at most {MAX_RESOURCES}")
    for item in items:
        if len(item) > MAX_RESOURCE_CHARS:
            raise ParameterError(
                f"{name}: a topic filter is longer than {MAX_RESOURCE_CHARS} characters"
            )
        try:
            validate_filter(item)
        except InvalidTopic as exc:
            raise ParameterError(f"{name}: {exc}") from None
    for a, b in itertools.pairwise(items):
        if a == b:
            raise ParameterError(f"{name}: topic filter {a[:80]!r} is listed twice")
        if a > b:
            raise ParameterError(
                f"{name} must be in dictionary order: {a[:80]!r} comes after {b[:80]!r}"
            )
    return tuple(items)


def parse_expire_ms(value: str, name: str = "expireTime") -> int:
    """A non-negative integer count of milliseconds (bounds are the engine's rule)."""
    if not value.isascii() or not value.isdigit():
        raise ParameterError(f"{name} must be an integer count of milliseconds")
    if len(value) > MAX_EXPIRE_DIGITS:
        raise ParameterError(f"{name} has more than {MAX_EXPIRE_DIGITS} digits")
    return int(value)


def parse_token(value: str, name: str = "token") -> str:
    if len(value) > MAX_TOKEN_CHARS:
        raise ParameterError(f"{name} is longer than {MAX_TOKEN_CHARS} characters")
    return value
