from __future__ import annotations

from scenarios.metrics import parse_metrics

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
