"""Bounded memory for unauthenticated input: a broker process's resident memory after a
flood of refused logins with large, distinct, well-formed forged passwords stays within a
few MB of before (docs/broker.md "Bounded memory"; the approach and the helpers of
tests/broker/test_flood.py).  ``sizes.flood_logins`` logins: 20,000 in the long form."""

from __future__ import annotations

import time

import pytest

from tests.broker.test_flood import (  # noqa: F401  (broker_process: the fixture)
    PASSWORD_BYTES,
    RSS_SLACK_KB,
    WARM_UP,
    BrokerProcess,
    broker_process,
    flood,
    rss_kb,
)

from .conftest import Report, Sizes

pytestmark = pytest.mark.adversarial


async def test_refused_large_password_logins_leave_the_broker_as_it_was(
    broker_process: BrokerProcess,  # noqa: F811  (the fixture imported above)
    sizes: Sizes,
    report: Report,
) -> None:
    port, pid = broker_process.port, broker_process.proc.pid
    assert set(await flood(port, 0, WARM_UP)) == {5}  # allocator pools at working size
    before = rss_kb(pid)
    started = time.monotonic()
    codes = await flood(port, WARM_UP, sizes.flood_logins)
    wall = time.monotonic() - started
    after = rss_kb(pid)
    refused = await broker_process.metric("mqtt_broker_refused_logins_total", source="127.0.0.1")
    report.add(
        "flood_memory",
        {
            "logins": len(codes),
            "warm_up_logins": WARM_UP,
            "password_bytes": PASSWORD_BYTES,
            "connack_codes": {str(c): codes.count(c) for c in sorted(set(codes))},
            "rss_before_kib": before,
            "rss_after_kib": after,
            "rss_delta_kib": after - before,
            "rss_bound_kib": RSS_SLACK_KB,
            "refused_logins_metric": refused,
            "wall_s": round(wall, 2),
            "logins_per_s": round(len(codes) / wall, 1),
        },
    )
    assert len(codes) == sizes.flood_logins and set(codes) == {5}
    assert after - before <= RSS_SLACK_KB, f"RSS grew {after - before} KiB"
    assert refused == WARM_UP + sizes.flood_logins
