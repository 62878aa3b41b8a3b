"""What bounds the broker's memory and its retries, as pure rules (docs/broker.md
"Bounded memory", "Following the AuthServer").  No event loop, no port."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mock_broker.authority import TokenAuthority
from mock_broker.bytecache import ByteBudgetCache
from mock_broker.config import BrokerConfig
from mock_broker.decision import (
    MAX_UPLOAD_DEPTH,
    SessionAccess,
    UploadRefused,
    decide_upload,
)
from mock_broker.follower import RETRY_CAP_S, RETRY_FIRST_S, retry_wait
from mock_broker.metrics import MAX_SOURCES, BrokerMetrics
from mock_broker.token_policy import TokenPolicy
from sim.shared.clock import ManualClock
from sim.shared.protocol import InvalidCode, TokenType, build_token_password

from .conftest import USER, Minter


def test_byte_budget_drops_the_oldest_and_skips_what_is_too_large() -> None:
    cache: ByteBudgetCache[str, int] = ByteBudgetCache(100, max_entry=40)
    for i in range(5):
        assert cache.put(f"k{i}", i, 30)
    assert cache.nbytes <= 100 and len(cache) == 3
    assert [cache.get(f"k{i}") for i in range(5)] == [None, None, 2, 3, 4]
    assert not cache.put("big", 9, 41)  # alone larger than an entry may be
    assert cache.get("big") is None and cache.nbytes == 90
    assert cache.put("k3", 33, 10)  # replacing counts the new size only
    assert cache.get("k3") == 33 and cache.nbytes == 70
    cache.clear()
    assert (len(cache), cache.nbytes) == (0, 0)


@given(st.lists(st.tuples(st.text(max_size=3), st.integers(0, 50)), max_size=60))
def test_byte_budget_never_exceeded(entries: list[tuple[str, int]]) -> None:
    cache: ByteBudgetCache[str, int] = ByteBudgetCache(120, max_entry=50)
    for key, size in entries:
        cache.put(key, size, size)
        assert cache.nbytes <= 120
        assert cache.nbytes == sum(cache.get(k) or 0 for k in {k for k, _ in entries})


def test_refused_logins_count_at_most_max_sources_addresses() -> None:
    metrics = BrokerMetrics()
    for i in range(MAX_SOURCES + 10):
        metrics.refused_login(f"10.0.{i // 256}.{i % 256}")
    metrics.refused_login("10.0.0.0")
    metrics.refused_login("")
    value = metrics.value
    assert value("mqtt_broker_refused_logins_total", source="10.0.0.0") == 2
    assert value("mqtt_broker_refused_logins_total", source="other") == 10
    assert value("mqtt_broker_refused_logins_total", source="unknown") == 1
    labelled = {
        s.labels["source"]
        for m in metrics.registry.collect()
        for s in m.samples
        if s.name == "mqtt_broker_refused_logins_total"
    }
    assert len(labelled) == MAX_SOURCES + 2  # the first addresses, "other", "unknown"


def test_refused_logins_are_not_remembered(
    minter: Minter, clock: ManualClock, authority: TokenAuthority
) -> None:
    """Only accepted CONNECTs are remembered; a refused one, however large, is not."""
    policy = TokenPolicy(BrokerConfig(port=0), clock=clock, authority=authority)
    for i in range(50):
        forged = f"RW|{i:04d}" + "Zm9y" * 4000
        assert not isinstance(policy.decide(USER, forged, "GID_group@@@f"), SessionAccess)
    good = build_token_password({TokenType.RW: minter.token()})
    assert isinstance(policy.decide(USER, good, "GID_group@@@f"), SessionAccess)
    assert len(policy._decided) == 1  # the accepted one only


@given(st.integers(1, 10_000), st.floats(0, 1, exclude_max=True))
def test_retry_waits_are_short_and_capped(failures: int, draw: float) -> None:
    wait = retry_wait(failures, draw)
    assert RETRY_FIRST_S / 2 <= wait < RETRY_CAP_S + 1e-12


def test_retry_waits_double_up_to_the_cap() -> None:
    waits = [retry_wait(n, 0.999999) for n in (1, 2, 3, 4, 50)]
    assert waits == pytest.approx([0.05, 0.1, 0.2, 0.25, 0.25], rel=1e-5)


def test_an_upload_nested_deeper_than_the_limit_is_malformed(minter: Minter) -> None:
    access = SessionAccess("Token", "dev-ak", "mqtt-dev", "GID_group@@@d")
    nested = b"[" * (MAX_UPLOAD_DEPTH + 1) + b"]" * (MAX_UPLOAD_DEPTH + 1)
    brackets_in_a_string = json.dumps({"token": "[" * 100, "type": "R"}).encode()
    for payload in (nested, b"[" * 50_000, b'{"a":' * 10 + b"1" + b"}" * 10):
        refused = decide_upload(access, payload, None, 0)  # type: ignore[arg-type]
        assert refused == UploadRefused(InvalidCode.FORGED, None, "malformed")
    # Brackets inside strings do not nest: this one fails later, as a forged token.
    refused = decide_upload(access, brackets_in_a_string, TokenAuthority(), 0)
    assert refused == UploadRefused(InvalidCode.FORGED, TokenType.R, "forged")
