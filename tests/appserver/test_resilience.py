"""Circuit breaker, jittered Retry-After and the drain bucket, with time passed in."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from sim.customer.appserver.resilience import BreakerState, CircuitBreaker, TokenBucket, retry_after


def test_breaker_opens_after_consecutive_failures_only() -> None:
    b = CircuitBreaker(3, 10.0)
    b.record_failure(0)
    b.record_failure(0)
    b.record_success(0)  # resets the run
    b.record_failure(0)
    b.record_failure(0)
    assert b.state(0) is BreakerState.CLOSED and b.allow(0)
    b.record_failure(1)
    assert b.state(1) is BreakerState.OPEN
    assert not b.allow(5)
    assert b.retry_in(5) == 6.0


def test_breaker_half_open_lets_one_probe_then_closes_or_reopens() -> None:
    b = CircuitBreaker(1, 10.0)
    b.record_failure(0)
    assert b.state(10) is BreakerState.HALF_OPEN
    assert b.allow(10)
    assert not b.allow(10)  # only one probe at a time
    b.record_failure(10)  # the probe failed: open again, from now
    assert b.state(15) is BreakerState.OPEN and b.retry_in(15) == 5.0
    assert b.allow(20)
    b.record_success(20)
    assert b.state(20) is BreakerState.CLOSED and b.allow(20) and b.allow(20)
    assert b.opened == 2


def test_breaker_release_returns_the_probe() -> None:
    b = CircuitBreaker(1, 1.0)
    b.record_failure(0)
    assert b.allow(1)
    b.release(1)
    assert b.allow(1)


def test_breaker_open_time_is_jittered_within_bounds() -> None:
    pauses = set()
    for seed in range(20):
        b = CircuitBreaker(1, 10.0, jitter=0.5, rng=random.Random(seed))
        b.record_failure(0)
        pauses.add(b.retry_in(0))
    assert all(10.0 <= p <= 15.0 for p in pauses)
    assert len(pauses) > 10  # AppServers do not probe in step


@given(st.floats(0.1, 1000), st.floats(0, 2), st.floats(0, 1000), st.integers(0, 2**32))
def test_retry_after_is_whole_seconds_within_jitter(
    base: float, jitter: float, at_least: float, seed: int
) -> None:
    value = retry_after(base, jitter, random.Random(seed), at_least=at_least)
    low = max(base, at_least)
    assert isinstance(value, int) and value >= 1
    assert low <= value <= max(1, int(low * (1 + jitter)) + 1)


def test_retry_after_varies() -> None:
    rng = random.Random(1)
    assert len({retry_after(5, 1.0, rng) for _ in range(50)}) > 3


def test_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.reserve(0.0, 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.reserve(0.0, 0.0) is None  # would have to wait
    assert bucket.reserve(0.0, 10.0) == 0.5  # queued behind...
    assert bucket.reserve(0.0, 10.0) == 1.0  # ...one another, 1/rate apart
    assert bucket.reserve(0.0, 1.2) is None  # 1.5 s is too long
    assert bucket.reserve(1.0, 0.0) == 0.0 or bucket.available(1.0) < 1


def test_bucket_drains_backlog_at_the_rate() -> None:
    """A backlog of 100 asks at t=0 gets its permits spread over 100/rate seconds."""
    bucket = TokenBucket(rate=10.0, burst=5, now=0.0)
    waits = [bucket.reserve(0.0, 60.0) for _ in range(100)]
    assert all(w is not None for w in waits)
    assert waits[:5] == [0.0] * 5
    assert max(w for w in waits if w is not None) == (100 - 5) / 10.0
    # In any one second at most burst + rate permits fall due.
    for second in range(10):
        due = sum(1 for w in waits if w is not None and second <= w < second + 1)
        assert due <= 5 + 10


def test_bucket_cancel_returns_a_permit() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=0.0)
    assert bucket.reserve(0.0, 0.0) == 0.0
    bucket.cancel(0.0)
    assert bucket.reserve(0.0, 0.0) == 0.0
