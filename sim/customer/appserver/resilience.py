"""Disaster-recovery mechanics, pure (time passed in as virtual seconds):

* :class:`CircuitBreaker` -- closed → (N consecutive failures) → open → (after a
  jittered pause) half-open: one probe; success closes, failure re-opens.
* :func:`retry_after` -- the jittered ``Retry-After`` of a 503, whole seconds ≥ 1.
* :class:`TokenBucket` -- bounds the rate of upstream applies, so the backlog built
  during an outage drains at a fixed pace when the AuthServer returns.
"""

from __future__ import annotations

import math
import random
from enum import StrEnum

__all__ = ["BreakerState", "CircuitBreaker", "TokenBucket", "retry_after"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


class CircuitBreaker:
    """Counts consecutive upstream failures; stops calls while the upstream is down.

    Every call that :meth:`allow` lets through must end in :meth:`record_success` or
    :meth:`record_failure` (or :meth:`release` if it never reached the upstream).
    """

    def __init__(
        self,
        failure_threshold: int,
        open_s: float,
        *,
        jitter: float = 0.0,
        rng: random.Random | None = None,
        half_open_probes: int = 1,
    ):
        if failure_threshold < 1 or open_s <= 0 or jitter < 0 or half_open_probes < 1:
            raise ValueError("invalid circuit breaker parameters")
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.half_open_probes = half_open_probes
        self._failures = 0
        self._open_until: float | None = None  # None: closed
        self._probes = 0
        self.opened = 0  # how many times it opened (for reports)

    def state(self, now: float) -> BreakerState:
        if self._open_until is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now < self._open_until else BreakerState.HALF_OPEN

    def retry_in(self, now: float) -> float:
        """Seconds until a call may be tried again (0 when closed or half-open)."""
        if self._open_until is None:
            return 0.0
        return max(0.0, self._open_until - now)

    def allow(self, now: float) -> bool:
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN or self._probes >= self.half_open_probes:
            return False
        self._probes += 1
        return True

    def release(self, now: float) -> None:
        """A call let through by :meth:`allow` did not reach the upstream."""
        if self._probes:
            self._probes -= 1

    def record_success(self, now: float) -> None:
        self._failures = 0
        self._open_until = None
        self._probes = 0

    def record_failure(self, now: float) -> None:
        if self._open_until is not None:
            # A failed probe (or a late failure of a call started while closed).
            self._open(now)
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._open(now)

    def _open(self, now: float) -> None:
        pause = self.open_s * (1.0 + self._rng.uniform(0.0, self.jitter))
        self._open_until = now + pause
        self._probes = 0
        self.opened += 1


def retry_after(base_s: float, jitter: float, rng: random.Random, *, at_least: float = 0) -> int:
    """Whole seconds for ``Retry-After``: ``max(base, at_least)`` plus up to ``jitter``
    of it at random, rounded up, never below 1."""
    base = max(base_s, at_least)
    return max(1, math.ceil(base * (1.0 + rng.uniform(0.0, jitter))))


class TokenBucket:
    """``rate`` permits per second, at most ``burst`` stored.

    :meth:`reserve` books the next permit and says how long to wait for it, so
    callers queue at ``1/rate`` intervals instead of retrying together.
    """

    def __init__(self, rate: float, burst: int, now: float):
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now

    def available(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def reserve(self, now: float, max_wait: float) -> float | None:
        """Book a permit; return the wait (0 if free now), or ``None`` without booking
        if the wait would exceed ``max_wait``."""
        self._refill(now)
        wait = 0.0 if self._tokens >= 1 else (1.0 - self._tokens) / self.rate
        if wait > max_wait:
            return None
        self._tokens -= 1.0
        return wait

    def cancel(self, now: float) -> None:
        """Give back a booked permit that was not used."""
        self._refill(now)
        self._tokens = min(float(self.burst), self._tokens + 1.0)
