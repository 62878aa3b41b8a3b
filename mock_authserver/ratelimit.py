"""The provider's API rate limits (SPEC §3b), pure: token buckets on the server's clock.

Per account (AccessKeyId) and per operation of each wire style, as the provider
documents them (docs/fidelity.md cites the pages):

=========  ============  ===========
operation  OpenAPI       legacy API
=========  ============  ===========
apply      100/s         1,000/s
query      100/s         1,000/s
revoke     5/s           1/min
=========  ============  ===========

A limit of ``N`` per ``period`` is a token bucket of capacity ``N`` refilled at
``N / period``: a burst of ``N`` passes at once, then one request per ``period / N``.
Past it: :class:`~mock_authserver.errors.ApplyThrottled` for applies,
:class:`~mock_authserver.errors.Throttled` for the rest (the shell renders the wire's
code).  Time is handed in (virtual milliseconds of the server's clock: whole
milliseconds keep the refill exact, where float seconds near 1.8e9 would not), so a test
on the manual clock decides by ``advance()``, never by how fast the machine is.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from .errors import ApplyThrottled, Throttled

__all__ = [
    "OPERATIONS",
    "WIRES",
    "Rate",
    "RateLimiter",
    "RateLimits",
    "TokenBucket",
    "parse_rate",
    "throttled",
]

WIRES = ("openapi", "legacy")
OPERATIONS = ("apply", "query", "revoke")

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*")


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``period_s`` seconds (of the server's clock)."""

    count: float
    period_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("count", "period_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"rate {name} must be a number")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"rate {name} must be a finite number > 0, got {value!r}")

    def __str__(self) -> str:
        count = f"{self.count:g}"
        for unit, seconds in (("h", 3600.0), ("min", 60.0), ("s", 1.0)):
            if self.period_s == seconds:
                return f"{count}/{unit}"
        return f"{count}/{self.period_s:g}s"


def parse_rate(text: str) -> Rate | None:
    """``"100/s"``, ``"1/min"``, ``"20/h"``, ``"5/10s"``; ``"off"`` (or ``"none"``) is no
    limit.  Raises :class:`ValueError` naming the accepted forms."""
    low = text.strip().lower()
    if low in ("off", "none", "unlimited"):
        return None
    match = _RATE.fullmatch(low)
    if match is None or match.group(3) not in _UNITS:
        raise ValueError(f"not a rate: {text!r} (use N/s, N/min, N/h, N/<k>s, or off)")
    count = float(match.group(1))
    period = float(match.group(2) or 1) * _UNITS[match.group(3)]
    return Rate(count, period)


@dataclass(frozen=True)
class RateLimits:
    """The limits in force, per account; ``None`` for one limit turns only that one off,
    ``enabled=False`` turns them all off (``--no-rate-limits``)."""

    enabled: bool = True
    openapi_apply: Rate | None = Rate(100)
    openapi_query: Rate | None = Rate(100)
    openapi_revoke: Rate | None = Rate(5)
    legacy_apply: Rate | None = Rate(1000)
    legacy_query: Rate | None = Rate(1000)
    legacy_revoke: Rate | None = Rate(1, 60.0)

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError("rate limits 'enabled' must be a boolean")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "enabled" and value is not None and not isinstance(value, Rate):
                raise ValueError(f"rate limit {f.name} must be a Rate or None")

    @classmethod
    def off(cls) -> RateLimits:
        return cls(enabled=False)

    def with_overrides(self, overrides: Mapping[str, str]) -> RateLimits:
        """These limits with some replaced by text: ``{"legacy_revoke": "off",
        "openapi_apply": "500/s"}``; ``{"all": "off"}`` turns them all off.  For
        compositions whose options travel as JSON (scenarios, the stack)."""
        changes: dict[str, Any] = {}
        names = {f.name for f in fields(self)} - {"enabled"}
        for key, text in overrides.items():
            if key == "all":
                if str(text).strip().lower() != "off":
                    raise ValueError("rate limit override 'all' can only be 'off'")
                changes["enabled"] = False
            elif key in names:
                changes[key] = parse_rate(str(text))
            else:
                raise ValueError(
                    f"unknown rate limit {key!r}; known: all, {', '.join(sorted(names))}"
                )
        return replace(self, **changes)

    def rate(self, wire: str, operation: str) -> Rate | None:
        if wire not in WIRES or operation not in OPERATIONS:
            raise ValueError(f"no rate limit for {wire} {operation}")
        if not self.enabled:
            return None
        rate: Rate | None = getattr(self, f"{wire}_{operation}")
        return rate

    def describe(self) -> dict[str, str]:
        """``{"openapi_apply": "100/s", ...}`` (``"off"`` where none), for docs and logs."""
        return {f"{w}_{o}": str(self.rate(w, o) or "off") for w in WIRES for o in OPERATIONS}


def throttled(operation: str, message: str) -> Throttled:
    """The throttling error of ``operation``: the provider answers applies with its own
    ``ApplyTokenOverFlow``, everything else with the gateway's ``Throttling.User``."""
    return ApplyThrottled(message) if operation == "apply" else Throttled(message)


class TokenBucket:
    """``rate.count`` tokens at most, refilled continuously; one request takes one."""

    __slots__ = ("_last_ms", "_period_ms", "_rate", "_tokens")

    def __init__(self, rate: Rate, now_ms: int):
        self._rate = rate
        self._period_ms = rate.period_s * 1000.0
        self._tokens = float(rate.count)
        self._last_ms = now_ms

    def take(self, now_ms: int) -> bool:
        elapsed = max(0, now_ms - self._last_ms)  # a clock never runs back here
        self._last_ms = max(self._last_ms, now_ms)
        # count * elapsed / period (not elapsed * (count / period)): exactly one token
        # after a whole period of a 1-per-period limit, with no rounding short of it.
        self._tokens = min(
            float(self._rate.count),
            self._tokens + self._rate.count * elapsed / self._period_ms,
        )
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class RateLimiter:
    """One bucket per (account, wire, operation).  Only authenticated callers reach it
    (the shells check it after the signature), so its keys are bounded by the accounts;
    ``capacity`` bounds them anyway (least recently used dropped first: a dropped bucket
    comes back full, i.e. more lenient, never stricter)."""

    def __init__(self, limits: RateLimits, *, capacity: int = 100_000):
        self.limits = limits
        self._capacity = capacity
        self._buckets: OrderedDict[tuple[str, str, str], TokenBucket] = OrderedDict()

    def check(self, access_key_id: str, wire: str, operation: str, now_ms: int) -> None:
        """Count one request; :class:`ApplyThrottled`/:class:`Throttled` past the limit."""
        rate = self.limits.rate(wire, operation)
        if rate is None:
            return
        key = (access_key_id, wire, operation)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(rate, now_ms)
            while len(self._buckets) > self._capacity:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.take(now_ms):
            return
        if operation == "apply":
            message = "You have applied for tokens too many times. Please try again later."
        else:
            message = "Request was denied due to user flow control."
        raise throttled(operation, f"{message} (limit: {wire} {operation} {rate} per account)")
