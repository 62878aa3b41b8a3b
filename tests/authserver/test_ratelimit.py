"""The provider's API rate limits (SPEC §3b), pure: token buckets on a handed-in clock."""

from __future__ import annotations

import argparse

import pytest

from mock_authserver.cli import add_arguments, config_from_args
from mock_authserver.errors import ApplyThrottled, Throttled
from mock_authserver.ratelimit import Rate, RateLimiter, RateLimits, TokenBucket, parse_rate

T0 = 1_800_000_000_000  # ms


def test_defaults_are_the_providers_numbers():
    limits = RateLimits()
    assert limits.describe() == {
        "openapi_apply": "100/s",
        "openapi_query": "100/s",
        "openapi_revoke": "5/s",
        "legacy_apply": "1000/s",
        "legacy_query": "1000/s",
        "legacy_revoke": "1/min",
    }
    assert set(RateLimits.off().describe().values()) == {"off"}


def burst(limiter: RateLimiter, wire: str, op: str, n: int, now: float, ak: str = "ak") -> int:
    """How many of ``n`` requests at one instant pass."""
    passed = 0
    for _ in range(n):
        try:
            limiter.check(ak, wire, op, now)
            passed += 1
        except Throttled:
            pass
    return passed


@pytest.mark.parametrize(
    ("wire", "op", "count"),
    [
        ("openapi", "apply", 100),
        ("openapi", "query", 100),
        ("openapi", "revoke", 5),
        ("legacy", "apply", 1000),
        ("legacy", "query", 1000),
        ("legacy", "revoke", 1),
    ],
)
def test_each_default_limit_passes_its_burst_then_throttles(wire, op, count):
    limiter = RateLimiter(RateLimits())
    assert burst(limiter, wire, op, count + 5, T0) == count
    # another account, and another wire, have their own buckets
    assert burst(limiter, wire, op, count, T0, ak="other") == count
    other_wire = "legacy" if wire == "openapi" else "openapi"
    assert burst(limiter, other_wire, op, 1, T0) == 1


def test_refill_per_period_on_the_handed_in_clock():
    limiter = RateLimiter(RateLimits())
    limiter.check("ak", "legacy", "revoke", T0)
    with pytest.raises(Throttled):
        limiter.check("ak", "legacy", "revoke", T0 + 59_999)
    limiter.check("ak", "legacy", "revoke", T0 + 60_000)  # exactly one period later
    assert burst(limiter, "openapi", "revoke", 10, T0) == 5
    assert burst(limiter, "openapi", "revoke", 10, T0 + 200) == 1  # 5/s: one per 0.2 s
    assert burst(limiter, "openapi", "revoke", 10, T0 + 10_000) == 5  # never more than the burst


def test_applies_are_apply_token_overflow_the_rest_throttling_user():
    limiter = RateLimiter(RateLimits(openapi_apply=Rate(1), openapi_query=Rate(1)))
    limiter.check("ak", "openapi", "apply", T0)
    limiter.check("ak", "openapi", "query", T0)
    with pytest.raises(ApplyThrottled) as apply:
        limiter.check("ak", "openapi", "apply", T0)
    with pytest.raises(Throttled) as query:
        limiter.check("ak", "openapi", "query", T0)
    assert type(query.value) is Throttled
    assert (apply.value.openapi_code, apply.value.http_status) == ("ApplyTokenOverFlow", 400)
    assert (query.value.openapi_code, query.value.http_status) == ("Throttling.User", 400)
    assert apply.value.legacy_code == query.value.legacy_code == 429
    assert apply.value.legacy_http_status == 429


def test_off_switch_and_one_limit_off():
    off = RateLimiter(RateLimits.off())
    assert burst(off, "legacy", "revoke", 50, T0) == 50
    one_off = RateLimiter(RateLimits(legacy_revoke=None))
    assert burst(one_off, "legacy", "revoke", 50, T0) == 50
    assert burst(one_off, "openapi", "revoke", 50, T0) == 5


def test_bucket_count_is_bounded_and_a_dropped_bucket_comes_back_full():
    limiter = RateLimiter(RateLimits(), capacity=3)
    for ak in ("a", "b", "c", "d"):
        limiter.check(ak, "legacy", "revoke", T0)
    assert len(limiter._buckets) == 3
    limiter.check("a", "legacy", "revoke", T0)  # 'a' was dropped: lenient, never stricter


def test_clock_running_back_does_not_mint_tokens():
    bucket = TokenBucket(Rate(1, 60.0), T0)
    assert bucket.take(T0)
    assert not bucket.take(T0 - 1_000_000)
    assert not bucket.take(T0 + 59_000)


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("100/s", Rate(100)),
        ("1/min", Rate(1, 60)),
        ("20/h", Rate(20, 3600)),
        ("5/10s", Rate(5, 10)),
        ("off", None),
    ],
)
def test_parse_rate(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("bad", ["", "100", "1/day", "0/s", "-1/s", "x/s", "1/0s"])
def test_parse_rate_refuses(bad):
    with pytest.raises(ValueError):
        parse_rate(bad)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_flags_set_each_limit_and_turn_all_off(tmp_path):
    config = config_from_args(_args("--data-dir", str(tmp_path)))
    assert config.rate_limits == RateLimits()
    config = config_from_args(
        _args("--limit-legacy-revoke", "10/s", "--limit-openapi-apply", "off")
    )
    assert config.rate_limits.rate("legacy", "revoke") == Rate(10)
    assert config.rate_limits.rate("openapi", "apply") is None
    assert config.rate_limits.rate("openapi", "query") == Rate(100)
    config = config_from_args(_args("--no-rate-limits"))
    assert not config.rate_limits.enabled
    assert config.rate_limits.rate("legacy", "revoke") is None
    with pytest.raises(SystemExit):
        _args("--limit-legacy-apply", "lots")


def test_overrides_as_text_for_json_compositions():
    limits = RateLimits().with_overrides({"legacy_revoke": "off", "openapi_apply": "500/s"})
    assert limits.rate("legacy", "revoke") is None
    assert limits.rate("openapi", "apply") == Rate(500)
    assert limits.rate("legacy", "apply") == Rate(1000)
    assert not RateLimits().with_overrides({"all": "off"}).enabled
    for bad in ({"all": "on"}, {"legacy_everything": "off"}, {"legacy_apply": "fast"}):
        with pytest.raises(ValueError):
            RateLimits().with_overrides(bad)
