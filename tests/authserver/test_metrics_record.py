"""The AuthServer's request metrics (docs/authserver.md "Metrics"): one record per
answered token API request, counted by operation and code, timed by operation."""

from __future__ import annotations

from mock_authserver.metrics import Metrics


def test_record_counts_by_code_and_times_by_operation() -> None:
    metrics = Metrics()
    metrics.record("apply", "200", 0.0002)
    metrics.record("apply", "200", 0.002)
    metrics.record("apply", "407", 0.0002)
    metrics.record("query", "200", 0.0002)
    sample = metrics.registry.get_sample_value
    assert sample("mqtt_authserver_requests_total", {"operation": "apply", "code": "200"}) == 2
    assert sample("mqtt_authserver_requests_total", {"operation": "apply", "code": "407"}) == 1
    assert sample("mqtt_authserver_requests_total", {"operation": "query", "code": "200"}) == 1
    assert sample("mqtt_authserver_requests_total", {"operation": "revoke", "code": "200"}) == 0
    assert sample("mqtt_authserver_request_seconds_count", {"operation": "apply"}) == 3
    fast = {"operation": "apply", "le": "0.001"}
    assert sample("mqtt_authserver_request_seconds_bucket", fast) == 2
    assert sample("mqtt_authserver_request_seconds_count", {"operation": "query"}) == 1
