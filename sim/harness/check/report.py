"""A check run's report in four forms (pure): a terminal table, JSON, HTML, and JUnit XML
(one ``<testcase>`` per check: what a CI server reads; not measured = skipped, could not
run = error)."""

from __future__ import annotations

import html
import json
import textwrap
import xml.etree.ElementTree as ET
from typing import Any

from .model import CheckResult, Report, Status

__all__ = ["to_html", "to_json", "to_junit", "to_table"]

_MARK = {
    Status.PASSED: "PASS",
    Status.FAILED: "FAIL",
    Status.NOT_MEASURED: "N/M",
    Status.ERROR: "ERROR",
}


def _totals(report: Report) -> str:
    parts = [f"{report.count(s)} {s.value}" for s in Status if report.count(s)]
    return ", ".join(parts) or "no checks"


def to_table(report: Report, *, width: int = 100) -> str:
    """The terminal table, then, for every check that did not pass, its rule and evidence."""
    name_w = max([len(r.spec.name) for r in report.results] + [5])
    lines = [f"check appserver: {report.target.get('appserver', '?')}"]
    lines += [f"  {k}: {v}" for k, v in report.target.items() if k != "appserver"]
    lines.append("")
    lines.append(f"{'CHECK'.ljust(name_w)}  {'RESULT':6}  SUMMARY")
    for r in report.results:
        room = max(20, width - name_w - 10)
        summary = textwrap.shorten(r.outcome.summary, room, placeholder="...")
        lines.append(f"{r.spec.name.ljust(name_w)}  {_MARK[r.status]:6}  {summary}")
    for r in report.results:
        if r.status is Status.PASSED:
            continue
        lines += ["", f"{_MARK[r.status]} {r.spec.name}: {r.outcome.summary}"]
        lines += textwrap.wrap(
            f'rule ({r.spec.source}): "{r.spec.rule}"',
            width,
            initial_indent="  ",
            subsequent_indent="    ",
        )
        lines += [f"  - {e}" for e in r.outcome.evidence]
    if report.notes:
        lines += ["", "notes:", *(f"  - {n}" for n in report.notes)]
    lines += ["", f"{_totals(report)} in {report.seconds:.1f} s (exit {report.exit_code()})"]
    return "\n".join(lines) + "\n"


def _result_json(r: CheckResult) -> dict[str, Any]:
    return {
        "name": r.spec.name,
        "title": r.spec.title,
        "status": r.status.value,
        "summary": r.outcome.summary,
        "rule": r.spec.rule,
        "rule_source": r.spec.source,
        "why": r.spec.why,
        "evidence": list(r.outcome.evidence),
        "figures": dict(r.outcome.figures),
        "seconds": round(r.seconds, 3),
    }


def to_json(report: Report) -> str:
    doc = {
        "target": dict(report.target),
        "started": report.started,
        "seconds": round(report.seconds, 3),
        "exit_code": report.exit_code(),
        "totals": {s.value: report.count(s) for s in Status},
        "checks": [_result_json(r) for r in report.results],
        "notes": list(report.notes),
    }
    return json.dumps(doc, indent=2) + "\n"


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:.4em;
vertical-align:top;text-align:left}.passed{background:#e6f4ea}.failed{background:#fce8e6}
.error{background:#fef7e0}.not-measured{background:#f1f3f4}blockquote{margin:.3em 0;
color:#555}ul{margin:.3em 0;padding-left:1.2em}code{font-size:12px}
"""


def to_html(report: Report) -> str:
    e = html.escape
    rows = []
    for r in report.results:
        evidence = "".join(f"<li><code>{e(x)}</code></li>" for x in r.outcome.evidence)
        rows.append(
            f'<tr class="{r.status.value.replace(" ", "-")}"><td><b>{e(r.spec.name)}</b><br>'
            f"{e(r.spec.title)}</td><td>{e(r.status.value)}</td><td>{e(r.outcome.summary)}"
            f"<blockquote>{e(r.spec.rule)}<br><small>{e(r.spec.source)}</small></blockquote>"
            f"<ul>{evidence}</ul></td></tr>"
        )
    target = "".join(f"<li>{e(k)}: <code>{e(v)}</code></li>" for k, v in report.target.items())
    notes = "".join(f"<li>{e(n)}</li>" for n in report.notes)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>check appserver</title>"
        f"<style>{_CSS}</style></head><body><h1>check appserver</h1><ul>{target}</ul>"
        f"<p>{e(_totals(report))} in {report.seconds:.1f} s, exit {report.exit_code()}</p>"
        "<table><tr><th>check</th><th>result</th><th>what was seen</th></tr>"
        f"{''.join(rows)}</table>"
        + (f"<h2>notes</h2><ul>{notes}</ul>" if notes else "")
        + "</body></html>\n"
    )


def to_junit(report: Report) -> str:
    suite = ET.Element(
        "testsuite",
        name="mqtt-token-sim check appserver",
        tests=str(len(report.results)),
        failures=str(report.count(Status.FAILED)),
        errors=str(report.count(Status.ERROR)),
        skipped=str(report.count(Status.NOT_MEASURED)),
        time=f"{report.seconds:.3f}",
        timestamp=report.started,
    )
    props = ET.SubElement(suite, "properties")
    for k, v in report.target.items():
        ET.SubElement(props, "property", name=k, value=v)
    for r in report.results:
        case = ET.SubElement(
            suite, "testcase", classname="appserver", name=r.spec.name, time=f"{r.seconds:.3f}"
        )
        detail = "\n".join([f'rule ({r.spec.source}): "{r.spec.rule}"', *r.outcome.evidence])
        if r.status is Status.FAILED:
            ET.SubElement(case, "failure", message=r.outcome.summary).text = detail
        elif r.status is Status.ERROR:
            ET.SubElement(case, "error", message=r.outcome.summary).text = detail
        elif r.status is Status.NOT_MEASURED:
            ET.SubElement(case, "skipped", message=r.outcome.summary)
        else:
            ET.SubElement(case, "system-out").text = "\n".join(r.outcome.evidence)
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
