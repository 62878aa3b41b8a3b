"""The revocation queue's pure rules (sim.customer.appserver.revocation): the send
window, the backoff, what an upstream error means, the in-memory queue."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.customer.appserver.errors import UpstreamError
from sim.customer.appserver.revocation import (
    PROVIDER_REVOKE_LIMITS,
    PendingRevocations,
    Revocation,
    RevokeLimit,
    SendWindow,
    backoff_s,
    outcome_of,
)


def test_documented_limits() -> None:
    # SPEC §3b: RevokeToken 5/s, legacy revoke 1/min, per account.
    assert PROVIDER_REVOKE_LIMITS["openapi"] == RevokeLimit(5, 1.0)
    assert PROVIDER_REVOKE_LIMITS["legacy"] == RevokeLimit(1, 60.0)


@given(
    count=st.integers(1, 6),
    window=st.sampled_from([0.5, 1.0, 60.0]),
    arrivals=st.lists(st.floats(0, 5), min_size=1, max_size=40),
)
def test_send_window_never_exceeds_the_limit_in_any_window(
    count: int, window: float, arrivals: list[float]
) -> None:
    """Whatever the demand, every half-open window of ``window`` s holds at most
    ``count`` sends, and a send is never held longer than needed."""
    limit = SendWindow(RevokeLimit(count, window))
    now = 1_000.0
    sent: list[float] = []
    for gap in arrivals:
        now = max(now + gap, sent[-1] if sent else now)
        at = limit.next_slot(now)
        assert at >= now
        limit.book(at)
        sent.append(at)
        if len(sent) <= count:
            assert at == now  # a free slot is not delayed
    for i, start in enumerate(sent):
        inside = [t for t in sent if 0 <= start - t < window]
        assert len(inside) <= count, (i, sent)


def test_send_window_is_not_a_bucket() -> None:
    """5 per second: 5 now, the 6th one second after the first -- not 0.2 s later (a
    token bucket of rate 5 and burst 5 would allow 10 in the first second)."""
    limit = SendWindow(RevokeLimit(5, 1.0))
    for _ in range(5):
        assert limit.next_slot(0.0) == 0.0
        limit.book(0.0)
    assert limit.next_slot(0.2) == 1.0


def test_backoff_doubles_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    for attempts, ceiling in [(1, 30), (2, 60), (3, 120), (6, 600), (20, 600)]:
        delays = {backoff_s(attempts, 30, 600, rng) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


def err(reason: str, code: int | None = None, error_code: str | None = None) -> UpstreamError:
    return UpstreamError("x", reason=reason, provider_code=code, error_code=error_code)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (err("throttled"), "throttled"),
        (err("provider", 3), "gone"),  # legacy: revoked already
        (err("provider", 2), "gone"),  # expired
        (err("provider", 1), "gone"),  # forged: nothing to revoke
        (err("provider", 410), "refused"),
        (err("provider", error_code="InvalidParameter.Token"), "refused"),
        (err("provider", error_code="PermissionCheckFailed"), "refused"),
        (err("provider", error_code="InstancePermissionCheckFailed"), "error"),
        (err("provider", 500), "error"),
        (err("timeout"), "error"),
        (err("connect"), "error"),
        (err("http"), "error"),
    ],
)
def test_outcome_of_upstream_errors(error: UpstreamError, outcome: str) -> None:
    assert outcome_of(error) == outcome


def test_pending_revocations_order_in_flight_and_duplicates() -> None:
    q = PendingRevocations([Revocation("b", "x", 9, not_before_ms=5), Revocation("a", "x", 9)])
    assert [r.token for r in q] == ["a", "b"] and len(q) == 2
    assert not q.add(Revocation("a", "x", 9))  # one entry per token
    first = q.pop()
    assert first.token == "a" and q.in_flight == 1 and len(q) == 2
    assert not q.add(Revocation("a", "x", 9))  # in flight counts as queued
    q.retry(first.retry_at(10))
    assert [(r.token, r.attempts) for r in q] == [("b", 0), ("a", 1)]
    q.done(q.pop().token)
    assert len(q) == 1 and q.in_flight == 0
    assert q.peek() == Revocation("a", "x", 9, attempts=1, not_before_ms=10)
