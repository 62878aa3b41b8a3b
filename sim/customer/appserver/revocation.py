"""Rules of the revocation queue, pure (time passed in; no I/O):

* :data:`PROVIDER_REVOKE_LIMITS` -- the provider's documented revoke limits per API
  (SPEC §3b): OpenAPI ``RevokeToken`` 5 per second, legacy ``/token/revoke`` 1 per
  minute, per cloud account.
* :class:`SendWindow` -- at most ``count`` sends in any ``window_s``: the queue never
  bursts past what the provider would throttle.
* :func:`backoff_s` -- jittered exponential backoff of a revocation that failed or was
  throttled.
* :func:`outcome_of` -- what an upstream error means for a queued revocation.
* :class:`PendingRevocations` -- the in-memory mirror of the durable queue, ordered by
  (not before, arrival).

The shell that drains the queue is :mod:`sim.customer.appserver.revoker`.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Literal

from .errors import UpstreamError

__all__ = [
    "PROVIDER_REVOKE_LIMITS",
    "Outcome",
    "PendingRevocations",
    "Revocation",
    "RevokeApi",
    "RevokeLimit",
    "SendWindow",
    "backoff_s",
    "outcome_of",
]

RevokeApi = Literal["openapi", "legacy"]


@dataclass(frozen=True)
class RevokeLimit:
    """At most ``count`` revokes in any ``window_s`` seconds."""

    count: int
    window_s: float


#: SPEC §3b, from the provider's API pages: RevokeToken "up to 5 times per second per
#: account" (api-token-management-revoketoken); the legacy token API's revoke 1 per
#: minute.
PROVIDER_REVOKE_LIMITS: dict[str, RevokeLimit] = {
    "openapi": RevokeLimit(5, 1.0),
    "legacy": RevokeLimit(1, 60.0),
}

#: Legacy answer codes (SPEC §3a) meaning the token is dead already: 1 forged, 2 expired,
#: 3 revoked.  Nothing left to revoke.
_GONE_CODES = frozenset({1, 2, 3})
#: Legacy 410 "revoke failed": the token was not issued to this AccessKey and instance;
#: the OpenAPI's parameter and permission errors (SPEC §3b).  Asking again cannot
#: succeed.  (Revoking a revoked or expired token succeeds on both wires.)
_REFUSED_CODES = frozenset({410})
_REFUSED_PREFIXES = ("InvalidParameter", "ParameterCheckFailed", "PermissionCheckFailed")

Outcome = Literal["ok", "gone", "refused", "throttled", "error"]


def outcome_of(error: UpstreamError) -> Outcome:
    """``throttled`` (retry after the limit's window), ``gone`` / ``refused`` (drop:
    nothing to do, or nothing we can do), or ``error`` (retry with backoff)."""
    if error.reason == "throttled":
        return "throttled"
    if error.reason == "provider":
        if error.provider_code in _GONE_CODES:
            return "gone"
        if error.provider_code in _REFUSED_CODES:
            return "refused"
        if error.error_code is not None and error.error_code.startswith(_REFUSED_PREFIXES):
            return "refused"
    return "error"


def backoff_s(attempts: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Delay before attempt ``attempts + 1``: ``base * 2**(attempts - 1)``, capped, with
    "equal jitter" (half fixed, half random) so retries neither synchronise nor come
    back sooner than half the schedule."""
    ceiling = min(cap_s, base_s * 2.0 ** max(0, attempts - 1))
    return ceiling / 2.0 + rng.uniform(0.0, ceiling / 2.0)


class SendWindow:
    """Sliding-window limit: a send is booked at the earliest time that keeps at most
    ``count`` sends in every half-open window of ``window_s``.

    A token bucket of the same rate would allow ``2 * count`` in one window (a full
    bucket, then the refill); the provider counts per window, so this does not.
    """

    def __init__(self, limit: RevokeLimit):
        if limit.count < 1 or not limit.window_s > 0:
            raise ValueError("a revoke limit needs count >= 1 and window_s > 0")
        self.limit = limit
        self._sent: deque[float] = deque(maxlen=limit.count)

    def next_slot(self, now: float) -> float:
        """The earliest time (>= ``now``) a send may go."""
        if len(self._sent) < self.limit.count:
            return now
        oldest, window = self._sent[0], self.limit.window_s
        slot = oldest + window
        while slot - oldest < window:  # float rounding must not make it a hair early
            slot = math.nextafter(slot, math.inf)
        return max(now, slot)

    def book(self, at: float) -> None:
        """Record a send at ``at`` (callers book ``next_slot``: times never go back)."""
        self._sent.append(at)


@dataclass(frozen=True)
class Revocation:
    """A token to revoke upstream; ``not_before_ms`` (virtual) holds a retry back."""

    token: str
    account: str
    expire_ms: int
    attempts: int = 0
    not_before_ms: int = 0

    def retry_at(self, at_ms: int) -> Revocation:
        return replace(self, attempts=self.attempts + 1, not_before_ms=at_ms)


class PendingRevocations:
    """Queued revocations by (``not_before_ms``, arrival); one entry per token.

    A token taken out with :meth:`pop` is *in flight* until :meth:`done` or
    :meth:`retry`; while queued or in flight, adding it again is a no-op (its durable
    row is still there).
    """

    def __init__(self, items: Iterable[Revocation] = ()):
        self._heap: list[tuple[int, int, Revocation]] = []
        self._seq = itertools.count()
        self._members: set[str] = set()  # queued or in flight
        self._in_flight: set[str] = set()
        for item in items:
            self.add(item)

    def __len__(self) -> int:
        """Queued and in flight: everything not yet settled."""
        return len(self._members)

    def __iter__(self) -> Iterator[Revocation]:
        """The queued items (not those in flight), in order."""
        return (item for _, _, item in sorted(self._heap, key=lambda e: e[:2]))

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def add(self, item: Revocation) -> bool:
        """Queue ``item``; False if its token is queued or in flight already."""
        if item.token in self._members:
            return False
        self._members.add(item.token)
        self._push(item)
        return True

    def retry(self, item: Revocation) -> None:
        """Put an in-flight item back (with its new ``not_before_ms``)."""
        self._in_flight.discard(item.token)
        self._members.add(item.token)
        self._push(item)

    def _push(self, item: Revocation) -> None:
        heapq.heappush(self._heap, (item.not_before_ms, next(self._seq), item))

    def peek(self) -> Revocation | None:
        return self._heap[0][2] if self._heap else None

    def pop(self) -> Revocation:
        """Take the first item out (it is now in flight)."""
        _, _, item = heapq.heappop(self._heap)
        self._in_flight.add(item.token)
        return item

    def done(self, token: str) -> None:
        """An in-flight item is settled (revoked, dead, refused or expired)."""
        self._in_flight.discard(token)
        self._members.discard(token)
