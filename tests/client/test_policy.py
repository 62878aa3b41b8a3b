"""The SDK's pure core: refresh decision, notice reaction, backoff (no loop, no port)."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.customer.client.policy import (
    Backoff,
    RefreshAction,
    RefreshPolicy,
    after_same_token,
    decide_refresh,
    is_reusable,
    react_to_invalid,
)
from sim.shared.protocol import InvalidCode

NOW = 1_800_000_000.0


def test_waits_until_margin_before_expiry() -> None:
    d = decide_refresh(NOW, NOW + 3600, RefreshPolicy(margin=300))
    assert d.action is RefreshAction.WAIT
    assert d.at == NOW + 3300
    assert d.mode == "upload"


def test_refreshes_now_inside_margin_with_clients_mode() -> None:
    d = decide_refresh(NOW, NOW + 200, RefreshPolicy(mode="reconnect", margin=300))
    assert (d.action, d.at, d.mode) == (RefreshAction.REFRESH, NOW, "reconnect")


def test_expired_token_means_reconnect_with_a_new_one() -> None:
    d = decide_refresh(NOW, NOW, RefreshPolicy(mode="upload"))
    assert d.action is RefreshAction.EXPIRED
    assert d.mode == "reconnect"


def test_spread_moves_refresh_earlier_by_the_clients_share() -> None:
    p = RefreshPolicy(margin=300, spread=100)
    assert decide_refresh(NOW, NOW + 3600, p, jitter=0.5).at == NOW + 3600 - 350
    with pytest.raises(ValueError):
        decide_refresh(NOW, NOW + 3600, p, jitter=1.0)


@given(
    st.floats(0, 1e6),
    st.floats(-1e4, 1e6),
    st.floats(0, 1e4),
    st.floats(0, 1e3),
    st.floats(0, 0.999),
)
def test_refresh_never_after_margin_and_never_in_the_past(
    now: float, ttl: float, margin: float, spread: float, jitter: float
) -> None:
    p = RefreshPolicy(margin=margin, spread=spread)
    d = decide_refresh(now, now + ttl, p, jitter=jitter)
    assert d.at >= now
    if d.action is RefreshAction.WAIT:
        assert d.at <= now + ttl - margin
    else:
        assert d.at == now


def test_policy_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="refresh mode"):
        RefreshPolicy(mode="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="margin"):
        RefreshPolicy(margin=-1)


def test_same_token_retry_halves_remaining_life_and_keeps_a_floor() -> None:
    p = RefreshPolicy(retry_floor=5)
    assert after_same_token(NOW, NOW + 200, p) == NOW + 100
    assert after_same_token(NOW, NOW + 8, p) == NOW + 3  # floor: 5 s before expiry
    assert after_same_token(NOW, NOW + 2, p) == NOW + 1  # never busy-loops


def test_reuse_needs_min_validity_left() -> None:
    p = RefreshPolicy(min_validity=60)
    assert is_reusable(NOW, NOW + 60, p)
    assert not is_reusable(NOW, NOW + 59.9, p)


@pytest.mark.parametrize(
    ("code", "discard"),
    [
        (InvalidCode.FORGED, True),
        (InvalidCode.EXPIRED, True),
        (InvalidCode.REVOKED, True),
        (InvalidCode.BAD_SIGNATURE, True),
        (InvalidCode.ACCOUNT_INVALID, True),
        (InvalidCode.RESOURCE_MISMATCH, False),
        (InvalidCode.PERMISSION_MISMATCH, False),
    ],
)
def test_invalid_notice_reaction(code: InvalidCode, discard: bool) -> None:
    assert react_to_invalid(code).discard_token is discard


def test_backoff_ceiling_is_exponential_and_capped() -> None:
    b = Backoff(base=0.5, cap=10, factor=2)
    assert [b.ceiling(n) for n in range(6)] == [0.5, 1, 2, 4, 8, 10]
    assert b.ceiling(10_000) == 10


def test_backoff_is_full_jitter_over_the_whole_range() -> None:
    b = Backoff(base=1, cap=8)
    rng = random.Random(7)
    delays = [b.delay(3, rng) for _ in range(2000)]
    assert min(delays) >= 0 and max(delays) <= 8
    # full jitter: uniform on [0, 8] -> mean ~4, and values near both ends
    assert 3.6 < statistics.mean(delays) < 4.4
    assert min(delays) < 0.1 and max(delays) > 7.9


def test_backoff_is_repeatable_with_a_seed_and_differs_across_seeds() -> None:
    b = Backoff()
    first = [b.delay(n, random.Random(1)) for n in range(5)]
    again = [b.delay(n, random.Random(1)) for n in range(5)]
    other = [b.delay(n, random.Random(2)) for n in range(5)]
    assert first == again != other


def test_backoff_floor_is_added_unjittered() -> None:
    b = Backoff(base=1, cap=1)
    assert all(5 <= b.delay(0, random.Random(i), floor=5) <= 6 for i in range(50))


def test_no_two_clients_retry_in_lockstep() -> None:
    b = Backoff(base=1, cap=30)
    rngs = [random.Random(i) for i in range(200)]
    # each client's cumulative retry times over 5 failures
    times = []
    for rng in rngs:
        t, ts = 0.0, []
        for n in range(5):
            t += b.delay(n, rng)
            ts.append(round(t, 6))
        times.append(tuple(ts))
    assert len(set(times)) == len(times)
    firsts = sorted(t[0] for t in times)
    assert len(set(firsts)) == len(firsts)


@pytest.mark.parametrize("kw", [{"base": 0}, {"cap": 0.1, "base": 1}, {"factor": 0.5}])
def test_backoff_rejects_bad_values(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kw)


def test_expire_notice_refreshes_at_once_without_spread() -> None:
    from sim.customer.client.policy import after_expire_notice

    p = RefreshPolicy(margin=10)
    assert after_expire_notice(NOW, NOW + 300, p, jitter=0.7) == NOW


def test_expire_notice_with_spread_stays_within_it_and_before_the_plan() -> None:
    from sim.customer.client.policy import after_expire_notice

    p = RefreshPolicy(margin=180, spread=120)
    ats = [after_expire_notice(NOW, NOW + 300, p, jitter=j / 100) for j in range(100)]
    assert all(NOW <= at <= NOW + 120 for at in ats)
    assert len(set(ats)) >= 50  # spread over the window, not one moment
    for j in range(100):
        planned = decide_refresh(NOW, NOW + 300, p, jitter=j / 100).at
        assert ats[j] <= planned


def test_backoff_without_jitter_is_the_full_ceiling_for_everyone() -> None:
    # The scenarios' no-retry-jitter defect (docs/scenarios.md "Defects"): a fleet that
    # lost the broker together retries together.
    b = Backoff(base=0.8, cap=8, jitter=False)
    delays = {b.delay(0, random.Random(i)) for i in range(50)}
    assert delays == {0.8}
    assert b.delay(2, random.Random(0), floor=1) == 1 + 3.2
