"""The HTML report's charts are readable: no text over another, nothing outside the
picture, and two series with the same values both visible (docs/scenarios.md "The HTML
report").  Checked twice: in headless Chromium, which measures every SVG text as it
renders it (``getBBox()``), and -- where Chromium is missing -- geometrically in Python
with the chart's own generous font metrics (:func:`scenarios.chart.text_width`)."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scenarios.chart import Box, estimated_box, overlaps, place_labels, text_width
from scenarios.report import Expectation, Mark, ScenarioReport, TimelinePoint, render_html

NS = "{http://www.w3.org/2000/svg}"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def crowded_report() -> ScenarioReport:
    """What a 3-round storm draws: baselines a second apart, each storm's kick and
    "all back" a fraction of a second apart, and token requests equal to applies (0)."""
    r = ScenarioReport("reconnect-storm", started_at="2026-11-28T18:00:00Z", duration_s=14)
    r.expect(Expectation.check("every client came back, every round", True))
    r.marks = [
        Mark(0.1, "baseline 1"),
        Mark(1.0, "baseline 2"),
        Mark(1.9, "baseline 3"),
        Mark(2.8, "setup"),
        *(
            m
            for k in range(3)
            for m in (Mark(8.0 + 2 * k, "kick_all"), Mark(8.3 + 2 * k, "all back"))
        ),
    ]
    r.timeline = [
        TimelinePoint(
            t / 5,
            {
                "connected": float(min(t, 40) * 50 if t < 40 else 2000),
                "token_requests": float(min(t, 20) * 100),
                "applies": float(min(t, 20) * 100),
                "a_much_longer_counter_name_for_the_legend": float(t),
                "another_long_counter_name_that_wraps": float(t % 7),
            },
        )
        for t in range(70)
    ]
    return r


def _texts(svg: ET.Element) -> list[tuple[str, Box]]:
    out = []
    for t in svg.iter(f"{NS}text"):
        text = "".join(t.itertext())
        out.append(
            (
                text,
                estimated_box(
                    text, float(t.get("x", 0)), float(t.get("y", 0)), t.get("text-anchor", "start")
                ),
            )
        )
    return out


def _svgs(page: str) -> list[ET.Element]:
    return [
        ET.fromstring(m.group(0))  # noqa: S314 - our own output
        for m in re.finditer(r"<svg .*?</svg>", page, re.S)
    ]


def _problems(boxes: list[tuple[str, Box]], width: float, height: float) -> list[str]:
    out = [
        f"{a!r} overlaps {b!r}"
        for (a, ba), (b, bb) in itertools.combinations(boxes, 2)
        if overlaps(ba, bb)
    ]
    out += [f"{t!r} outside the picture: {b}" for t, b in boxes if not b.inside(width, height)]
    return out


def _coinciding_are_distinguished(svg: ET.Element) -> list[str]:
    lines = list(svg.iter(f"{NS}polyline"))
    out = []
    for a, b in itertools.combinations(lines, 2):
        if a.get("points") != b.get("points"):
            continue
        style_a = (a.get("stroke-dasharray"), a.get("stroke-width"))
        style_b = (b.get("stroke-dasharray"), b.get("stroke-width"))
        names = a.get("data-series"), b.get("data-series")
        if style_a == style_b:
            out.append(f"{names} coincide and are drawn alike")
        notes = " ".join("".join(t.itertext()) for t in svg.iter(f"{NS}text"))
        if not all(n and n in notes for n in names) or "coincides" not in notes:
            out.append(f"{names} coincide and no note says so")
    return out


def test_place_labels_uses_lanes_and_stays_inside() -> None:
    placed = place_labels([10, 20, 30, 700], [50, 50, 50, 50], lo=0, hi=720)
    assert [p.lane for p in placed] == [0, 1, 2, 0]
    assert placed[3].anchor == "end" and placed[3].x == 697  # left of its line at the edge
    assert text_width("mmmm") > text_width("iiii")


def test_charts_have_no_overlapping_or_clipped_text_estimated() -> None:
    """The geometric check, with the chart's own metrics (what runs without Chromium)."""
    page = render_html(crowded_report())
    svgs = _svgs(page)
    assert len(svgs) == 3
    for svg in svgs:
        width, height = float(svg.get("width", 0)), float(svg.get("height", 0))
        assert _problems(_texts(svg), width, height) == []
        assert _coinciding_are_distinguished(svg) == []


MEASURE = """
<script>
const out = [];
for (const svg of document.querySelectorAll('svg')) {
  const texts = [];
  for (const t of svg.querySelectorAll('text')) {
    const b = t.getBBox();
    texts.push([t.textContent, b.x, b.y, b.width, b.height]);
  }
  out.push({width: svg.width.baseVal.value, height: svg.height.baseVal.value, texts});
}
const pre = document.createElement('pre');
pre.id = 'measured';
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>
"""


def measured_in_chromium(page: str, tmp_path: Path) -> list[dict[str, object]]:
    """Every SVG's size and the box of each of its texts, as Chromium renders them."""
    assert CHROMIUM is not None
    html_file = tmp_path / "report.html"
    html_file.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            html_file.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    found = re.search(r'<pre id="measured">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"Chromium did not render the page: rc {proc.returncode}\n{proc.stderr[-2000:]}"
    data: list[dict[str, object]] = json.loads(
        found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
    )
    return data


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_charts_have_no_overlapping_or_clipped_text_in_chromium(tmp_path: Path) -> None:
    page = render_html(crowded_report())
    measured = measured_in_chromium(page, tmp_path)
    assert len(measured) == 3
    problems = []
    for svg in measured:
        texts = svg["texts"]
        assert isinstance(texts, list) and texts
        boxes = [(str(t[0]), Box(*map(float, t[1:5]))) for t in texts]
        problems += _problems(boxes, float(svg["width"]), float(svg["height"]))  # type: ignore[arg-type]
    assert problems == []
    for svg in _svgs(page):
        assert _coinciding_are_distinguished(svg) == []
