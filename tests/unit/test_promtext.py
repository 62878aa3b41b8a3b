"""The one Prometheus text reader (sim.shared.promtext)."""

from __future__ import annotations

import pytest

from sim.shared.promtext import parse_metrics

TEXT = """# HELP mqtt_authserver_requests_total Requests by operation and code.
# TYPE mqtt_authserver_requests_total counter
mqtt_authserver_requests_total{operation="apply",code="200"} 3.0
mqtt_authserver_requests_total{operation="apply",code="503"} 2.0
mqtt_authserver_requests_total{operation="revoke",code="200"} 1.0
# TYPE up gauge
up 1
"""


def test_totals_by_label():
    m = parse_metrics(TEXT)
    assert m.total("mqtt_authserver_requests_total", operation="apply") == 5
    assert m.total("mqtt_authserver_requests_total", operation="apply", code="200") == 3
    assert m.total("mqtt_authserver_requests_total", operation="apply|revoke", code="200") == 4
    assert m.total("mqtt_authserver_requests_total") == 6
    assert m.total("nothing_total") == 0
    assert m.total("up") == 1
    assert m.label_values("mqtt_authserver_requests_total", "code") == {"200", "503"}


def test_a_counter_is_found_by_its_family_name_too():
    m = parse_metrics(TEXT)
    assert m.total("mqtt_authserver_requests", operation="revoke") == 1
    # ... but a family name never matches another family that merely starts with it
    assert m.total("mqtt_authserver") == 0


def test_not_prometheus_text_is_a_value_error():
    with pytest.raises(ValueError):
        parse_metrics('x{a="1" 3\n')
