"""Parameter rules of the token API (SPEC §3a/§3b), pure.

Every function takes plain strings (what the shells parsed off the wire) and returns
typed values or raises a :class:`~mock_authserver.errors.ParameterError` whose message
names the parameter and the rule (an :class:`~mock_authserver.errors.InvalidParameter`,
``InvalidParameter.<Name>`` on the OpenAPI wire, when one named parameter is wrong).
Rules that need the time (the 60 s minimum and the 30-day cap of ``expireTime``) live in
the TTL engine, which owns "now".

Resources are refused where the provider's broker would refuse them (SPEC §4a): each is
checked by :func:`sim.shared.protocol.topics.validate_provider_topic` (at most 64
characters of letters, digits, ``-``, ``_``, ``/`` and the wildcards).  Their order: the
legacy API sorts multi-valued parameters before signing (SPEC §3a), so any order is
accepted there and the token's resources come out sorted; the OpenAPI ``Resources`` must
come in dictionary order, as its API page says.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from sim.shared.protocol.errors import InvalidTopic
from sim.shared.protocol.tokens import MAX_TOKEN_CHARS
from sim.shared.protocol.topics import validate_provider_topic

from .errors import InvalidParameter, MissingParameter, ParameterError

__all__ = [
    "ACTIONS",
    "MAX_EXPIRE_DIGITS",
    "MAX_PARAM_CHARS",
    "MAX_RESOURCES",
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
        raise InvalidParameter(
            name, f"parameter {name!r} is longer than {MAX_PARAM_CHARS} characters"
        )
    return value


def parse_actions(value: str, name: str = "actions", *, any_order: bool = False) -> frozenset[str]:
    """``R``, ``W`` or ``R,W``; with ``any_order`` (the legacy API, whose signing rule
    sorts multi-valued parameters) also ``W,R``."""
    actions = ACTIONS.get(value)
    if actions is None and any_order:
        actions = ACTIONS.get(",".join(sorted(value.split(","))))
    if actions is None:
        raise InvalidParameter(name, f"{name} must be R, W or R,W, got {value[:20]!r}")
    return actions


def parse_resources(
    value: str, name: str = "resources", *, any_order: bool = False
) -> tuple[str, ...]:
    """1 to 100 topic filters the provider accepts, comma-separated, no repeats; in
    dictionary order unless ``any_order`` (then sorted here).  Sorted either way."""
    items = value.split(",")
    if len(items) > MAX_RESOURCES:
        raise InvalidParameter(
            name, f"{name} lists {len(items)} topic filters; at most {MAX_RESOURCES}"
        )
    for item in items:
        try:
            validate_provider_topic(item, filter=True)
        except InvalidTopic as exc:
            raise InvalidParameter(name, f"{name}: {exc}") from None
    if any_order:
        items.sort()
    for a, b in itertools.pairwise(items):
        if a == b:
            raise InvalidParameter(name, f"{name}: topic filter {a!r} is listed twice")
        if a > b:
            raise InvalidParameter(
                name, f"{name} must be in dictionary order: {a!r} comes after {b!r}"
            )
    return tuple(items)


def parse_expire_ms(value: str, name: str = "expireTime") -> int:
    """A non-negative integer count of milliseconds (bounds are the engine's rule)."""
    if not value.isascii() or not value.isdigit():
        raise InvalidParameter(name, f"{name} must be an integer count of milliseconds")
    if len(value) > MAX_EXPIRE_DIGITS:
        raise InvalidParameter(name, f"{name} has more than {MAX_EXPIRE_DIGITS} digits")
    return int(value)


def parse_token(value: str, name: str = "token") -> str:
    if len(value) > MAX_TOKEN_CHARS:
        raise InvalidParameter(name, f"{name} is longer than {MAX_TOKEN_CHARS} characters")
    return value
