"""The report model, its JSON schema, the summary table and the HTML/SVG report (pure)."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import pytest

from scenarios.report import (
    SCHEMA_VERSION,
    Expectation,
    Mark,
    Observation,
    ReportError,
    ScenarioReport,
    TimelinePoint,
    latency_figures,
    render_html,
    render_summary,
    spread_figures,
    timeline_svg,
)


def _report(passed: bool = True) -> ScenarioReport:
    r = ScenarioReport(
        scenario="reconnect-storm",
        started_at="2026-11-28T18:00:00Z",
        duration_s=3.25,
        params={"clients": 10, "seed": 1},
        figures={"clients": 10, "reconnect_seconds": 1.5, "connect_latency_p50_ms": 12.25},
    )
    r.expect(Expectation.at_most("all back in time", 1.5, 2.0, "s"))
    r.expect(Expectation.equal("no upstream applies", 0 if passed else 3, 0))
    r.timeline = [
        TimelinePoint(0.0, {"connected": 10, "token_requests": 0, "applies": 0}),
        TimelinePoint(1.0, {"connected": 0, "token_requests": 0, "applies": 0}),
        TimelinePoint(2.0, {"connected": 10, "token_requests": 2, "applies": 1}),
    ]
    r.marks = [Mark(0.5, "kick_all")]
    return r


def test_latency_figures_in_ms():
    figs = latency_figures("connect_latency", [0.010, 0.020, 0.030, 0.040, 1.0])
    assert figs["connect_latency_p50_ms"] == 30.0
    assert figs["connect_latency_max_ms"] == 1000.0
    assert figs["connect_latency_p99_ms"] > figs["connect_latency_p95_ms"] > 30.0
    assert latency_figures("x", []) == {}


def test_spread_figures_tell_lockstep_from_jitter():
    lockstep = spread_figures("retry", [1.0] * 100)
    assert lockstep["retry_max_bucket_share"] == 1.0
    assert lockstep["retry_stdev_s"] == 0.0
    spread = spread_figures("retry", [i * 0.05 for i in range(100)], bucket_s=0.1)
    assert spread["retry_max_bucket_share"] <= 0.03
    assert spread["retry_range_s"] == pytest.approx(4.95)


def test_expectation_helpers():
    assert Expectation.at_most("x", 1, 2).passed
    assert not Expectation.at_most("x", 3, 2).passed
    assert not Expectation.at_most("x", math.nan, 2).passed
    assert Expectation.at_least("x", 2, 2).passed
    assert not Expectation.at_least("x", 1, 2).passed
    e = Expectation.equal("applies", 3, 0)
    assert not e.passed and "3" in e.detail and "0" in e.detail


def test_passed_needs_expectations_and_no_error():
    assert _report().passed
    assert not _report(passed=False).passed
    assert not ScenarioReport("x").passed  # nothing checked is not a pass
    r = _report()
    r.error = "boom"
    assert not r.passed


def test_json_schema_round_trip():
    doc = json.loads(_report().to_json())
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["scenario"] == "reconnect-storm"
    assert doc["passed"] is True
    assert set(doc) >= {"figures", "expectations", "timeline", "marks", "params", "duration_s"}
    assert doc["expectations"][0] == {
        "name": "all back in time",
        "passed": True,
        "detail": "1.5 s (limit ≤ 2 s)",
    }
    assert doc["timeline"][2] == {"t": 2.0, "connected": 10, "token_requests": 2, "applies": 1}
    back = ScenarioReport.from_dict(doc)
    assert back.to_dict() == doc


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(schema_version=99),
        lambda d: d.update(scenario=""),
        lambda d: d["figures"].update(x="fast"),
        lambda d: d["figures"].update(x=True),
        lambda d: d.update(expectations=[{"name": "x"}]),
        lambda d: d.update(passed=False),
        lambda d: d.update(timeline=[{"connected": 1}]),
    ],
)
def test_from_dict_rejects_bad_documents(mutate):
    doc = _report().to_dict()
    mutate(doc)
    with pytest.raises(ReportError):
        ScenarioReport.from_dict(doc)


def test_nan_figure_is_refused():
    r = _report()
    r.figures["bad"] = math.nan
    with pytest.raises(ReportError):
        r.to_json()


def test_summary_table_lists_figures_and_failures():
    text = render_summary(_report(passed=False))
    assert "reconnect_seconds" in text and "1.5" in text
    assert "[FAIL] no upstream applies" in text
    # the verdict names the expectation that caught it
    assert text.rstrip().endswith("reconnect-storm: FAILED (no upstream applies: 3 (wanted 0))")
    assert render_summary(_report()).rstrip().endswith("reconnect-storm: PASSED")


def test_observations_are_shown_but_never_a_verdict():
    r = _report()
    r.observe(Observation.at_most("all back within 1.3 x N / rate", 4.4, 2.7, "s"))
    r.skip("appserver_requests", "the AppServer is not ours: no metrics")
    r.notes.append("created parent topic shop on mqtt-dev")
    assert r.passed  # a missed timing target does not fail the run
    doc = json.loads(r.to_json())
    assert doc["observations"] == [
        {"name": "all back within 1.3 x N / rate", "met": False, "detail": "4.4 s (target ≤ 2.7 s)"}
    ]
    assert doc["not_measured"] == {"appserver_requests": "the AppServer is not ours: no metrics"}
    assert ScenarioReport.from_dict(doc).to_dict() == doc
    text = render_summary(r)
    assert "[miss] all back within 1.3 x N / rate" in text and "not verdicts" in text
    assert "not measured: appserver_requests: the AppServer is not ours" in text
    assert "note: created parent topic shop" in text
    page = render_html(r)
    assert "Timing (measured, not verdicts)" in page and "not measured: the AppServer" in page


def test_fidelity_in_json_summary_and_html():
    r = _report()
    r.fidelity = {
        "available": True,
        "profile": "provider",
        "totals": {"retain": 2},
        "clients": [{"instance_id": "mqtt-dev", "client_id": "GID_a@@@d1", "uses": {"retain": 2}}],
        "clients_forgotten": 0,
        "why": {"retain": "published retained: the provider stores no retained message"},
    }
    doc = json.loads(r.to_json())
    assert ScenarioReport.from_dict(doc).fidelity == r.fidelity
    text = render_summary(r)
    assert "mqtt-dev GID_a@@@d1: retain x2" in text
    assert "retain x2: published retained: the provider stores no retained message" in text
    page = render_html(r)
    assert "GID_a@@@d1" in page and "the provider stores no retained message" in page
    r.fidelity = {"available": False, "reason": "external broker: give broker_fidelity_url"}
    assert "fidelity: not available (external broker" in render_summary(r)
    assert "not available: external broker" in render_html(r)
    doc = r.to_dict()
    doc["fidelity"] = {"profile": "provider"}
    with pytest.raises(ReportError):
        ScenarioReport.from_dict(doc)


def test_svg_is_well_formed_and_plots_each_series():
    r = _report()
    svg = timeline_svg(r.timeline, ["token_requests", "applies"], marks=r.marks, title="t<&>")
    root = ET.fromstring(svg)  # noqa: S314 - our own output
    ns = "{http://www.w3.org/2000/svg}"
    lines = root.findall(f"{ns}polyline")
    assert [p.get("data-series") for p in lines] == ["token_requests", "applies"]
    # 3 samples -> 3 points each; the highest value sits at the top of the plot area.
    pts = [tuple(map(float, xy.split(","))) for xy in lines[0].get("points").split()]
    assert len(pts) == 3
    assert pts[0][0] < pts[1][0] < pts[2][0]
    assert pts[2][1] < pts[0][1]
    assert len([ln for ln in root.findall(f"{ns}line") if ln.get("class") == "mark"]) == 1


def test_html_is_self_contained_and_escaped():
    r = _report(passed=False)
    r.params["note"] = "<script>alert(1)</script>"
    page = render_html(r)
    assert "<script>" not in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # no CDN
    assert page.count("<svg") == 2  # connected clients; requests and applies
    assert "FAILED" in page and "reconnect_seconds" in page


def test_html_without_samples():
    r = ScenarioReport("x")
    r.expect(Expectation.check("ok", True))
    assert "no samples" in render_html(r)
