"""What a scenario reports: figures, expectations, a timeline (pure; no I/O, no clock).

The JSON form is a stable schema for CI consumers (``SCHEMA_VERSION`` 1, documented in
``docs/scenarios.md``)::

    {
      "schema_version": 1,
      "scenario": "reconnect-storm",
      "passed": true,                       # every expectation passed
      "started_at": "2026-11-28T18:00:00Z", # UTC, ISO 8601
      "duration_s": 12.3,                   # real seconds
      "params": {"clients": 200, ...},      # what the run was asked to do
      "figures": {"reconnect_seconds": 1.9, ...},   # name -> number (int or float)
      "expectations": [{"name": "...", "passed": true, "detail": "..."}],
      "observations": [{"name": "...", "met": false, "detail": "..."}],  # not verdicts
      "not_measured": {"appserver_requests": "why"},
      "notes": ["..."],
      "fidelity": {"available": true, "profile": "provider", "totals": {}, ...},
      "timeline": [{"t": 0.0, "connected": 0, "token_requests": 0, "applies": 0}, ...],
      "marks": [{"t": 3.2, "label": "kick_all"}]
    }

Additive changes (a new figure, a new key) keep the version; renaming or removing a key
or changing a unit bumps it.  Durations are seconds unless the name ends in ``_ms``.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sim.shared.stats import percentile

from .chart import timeline_svg
from .errors import ReportError

__all__ = [
    "SCHEMA_VERSION",
    "Expectation",
    "Mark",
    "Observation",
    "ReportError",
    "ScenarioReport",
    "TimelinePoint",
    "fidelity_lines",
    "latency_figures",
    "render_html",
    "render_summary",
    "spread_figures",
    "timeline_svg",
]

SCHEMA_VERSION = 1


# --------------------------------------------------------------------------- numbers


def latency_figures(prefix: str, seconds: Sequence[float]) -> dict[str, float]:
    """``{prefix}_p50_ms``, ``_p95_ms``, ``_p99_ms``, ``_max_ms``, ``_mean_ms`` from
    durations in seconds; empty input gives no figures rather than NaNs."""
    if not seconds:
        return {}
    ms = [s * 1000.0 for s in seconds]
    return {
        f"{prefix}_p50_ms": round(percentile(ms, 50), 3),
        f"{prefix}_p95_ms": round(percentile(ms, 95), 3),
        f"{prefix}_p99_ms": round(percentile(ms, 99), 3),
        f"{prefix}_max_ms": round(max(ms), 3),
        f"{prefix}_mean_ms": round(sum(ms) / len(ms), 3),
    }


def spread_figures(
    prefix: str, seconds: Sequence[float], *, bucket_s: float = 0.1
) -> dict[str, float]:
    """How spread out a set of instants is (retry spread of a storm: SPEC §6 asks for no
    synchronized retry loop).  ``{prefix}_stdev_s`` (population), ``{prefix}_range_s`` and
    ``{prefix}_max_bucket_share``: the largest fraction of the instants falling into one
    ``bucket_s`` wide bucket (1.0 = all in lockstep)."""
    if not seconds:
        return {}
    n = len(seconds)
    mean = sum(seconds) / n
    stdev = math.sqrt(sum((s - mean) ** 2 for s in seconds) / n)
    lo = min(seconds)
    buckets: dict[int, int] = {}
    for s in seconds:
        b = int((s - lo) // bucket_s)
        buckets[b] = buckets.get(b, 0) + 1
    return {
        f"{prefix}_stdev_s": round(stdev, 4),
        f"{prefix}_range_s": round(max(seconds) - lo, 4),
        f"{prefix}_max_bucket_share": round(max(buckets.values()) / n, 4),
    }


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Expectation:
    """One checked claim of a scenario, with a detail a human can act on.

    ``timing``: the claim bounds a wall-clock duration or rate (disconnected within 1 s,
    back within 1.3 x N / rate).  It is a figure of the machine it ran on: part of
    ``passed``, but tests judge the behaviour (:meth:`ScenarioReport.failed_expectations`
    with ``timing=False``) and report these."""

    name: str
    passed: bool
    detail: str = ""
    timing: bool = False

    @classmethod
    def at_most(
        cls, name: str, value: float, limit: float, unit: str = "", *, timing: bool = False
    ) -> Expectation:
        u = f" {unit}" if unit else ""
        ok = _finite(value) and value <= limit
        return cls(name, ok, f"{_fmt(value)}{u} (limit ≤ {_fmt(limit)}{u})", timing)

    @classmethod
    def at_least(cls, name: str, value: float, limit: float, unit: str = "") -> Expectation:
        u = f" {unit}" if unit else ""
        ok = _finite(value) and value >= limit
        return cls(name, ok, f"{_fmt(value)}{u} (needs ≥ {_fmt(limit)}{u})")

    @classmethod
    def equal(cls, name: str, value: object, wanted: object) -> Expectation:
        return cls(name, value == wanted, f"{_fmt(value)} (wanted {_fmt(wanted)})")

    @classmethod
    def check(cls, name: str, ok: bool, detail: str = "") -> Expectation:
        return cls(name, bool(ok), detail)

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "passed": self.passed, "detail": self.detail}
        if self.timing:
            doc["timing"] = True
        return doc


@dataclass(frozen=True)
class Observation:
    """A measured figure beside a target it is not judged by (docs/scenarios.md
    "Verdicts"): a wall-clock duration or rate that machine load moves by more than any
    margin, reported with the target so that a user sees it, never part of ``passed``."""

    name: str
    met: bool
    detail: str = ""

    @classmethod
    def at_most(cls, name: str, value: float, target: float, unit: str = "") -> Observation:
        u = f" {unit}" if unit else ""
        met = _finite(value) and value <= target
        return cls(name, met, f"{_fmt(value)}{u} (target ≤ {_fmt(target)}{u})")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "met": self.met, "detail": self.detail}


@dataclass(frozen=True)
class TimelinePoint:
    """Counters sampled at ``t`` real seconds after the scenario started."""

    t: float
    values: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 4), **dict(self.values)}


@dataclass(frozen=True)
class Mark:
    """A labelled instant on the timeline (a kick, an outage starting, a phase)."""

    t: float
    label: str

    def to_dict(self) -> dict[str, Any]:
        return {"t": round(self.t, 4), "label": self.label}


@dataclass
class ScenarioReport:
    scenario: str
    started_at: str = ""
    duration_s: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    expectations: list[Expectation] = field(default_factory=list)
    timeline: list[TimelinePoint] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    error: str | None = None  # set when the scenario itself crashed (then passed is false)
    #: stopped by Ctrl-C (or cancelled) before it finished; ``error`` says so too
    interrupted: bool = False
    #: measured against a target, never a verdict (:class:`Observation`)
    observations: list[Observation] = field(default_factory=list)
    #: figure or expectation name -> why it could not be measured in this run
    not_measured: dict[str, str] = field(default_factory=dict)
    #: what the run did besides its steps (parent topics created, a defect injected)
    notes: list[str] = field(default_factory=list)
    #: the broker's fidelity report (docs/fidelity.md), or ``{"available": false,
    #: "reason": ...}``; None when the run ended before it was read
    fidelity: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and bool(self.expectations)
            and all(e.passed for e in self.expectations)
        )

    def expect(self, expectation: Expectation) -> Expectation:
        self.expectations.append(expectation)
        return expectation

    def failed_expectations(self, *, timing: bool = True) -> list[Expectation]:
        """The expectations that failed; ``timing=False`` leaves out wall-clock bounds."""
        return [e for e in self.expectations if not e.passed and (timing or not e.timing)]

    def observe(self, observation: Observation) -> Observation:
        self.observations.append(observation)
        return observation

    def skip(self, name: str, reason: str) -> None:
        """``name`` (a figure or an expectation) is not measured in this run, and why."""
        self.not_measured[name] = reason

    def verdict(self) -> str:
        """``<scenario>: PASSED``, INTERRUPTED, or FAILED naming what caught it."""
        if self.interrupted:
            return f"{self.scenario}: INTERRUPTED"
        if self.passed:
            return f"{self.scenario}: PASSED"
        if self.error is not None:
            return f"{self.scenario}: FAILED (could not run: {self.error})"
        failed = self.failed_expectations()
        if not failed:
            return f"{self.scenario}: FAILED (nothing was checked)"
        caught = "; ".join(f"{e.name}: {e.detail}" for e in failed)
        return f"{self.scenario}: FAILED ({caught})"

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "scenario": self.scenario,
            "passed": self.passed,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "params": dict(self.params),
            "figures": {k: _json_number(v) for k, v in self.figures.items()},
            "expectations": [e.to_dict() for e in self.expectations],
            "observations": [o.to_dict() for o in self.observations],
            "not_measured": dict(self.not_measured),
            "notes": list(self.notes),
            "timeline": [p.to_dict() for p in self.timeline],
            "marks": [m.to_dict() for m in self.marks],
        }
        if self.fidelity is not None:
            doc["fidelity"] = self.fidelity
        if self.error is not None:
            doc["error"] = self.error
        if self.interrupted:
            doc["interrupted"] = True
        return doc

    def to_json(self, *, indent: int | None = 2) -> str:
        # allow_nan=False: the schema promises numbers, and NaN is not JSON.
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, ensure_ascii=False)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ScenarioReport:
        """Parse and validate a report document (what a CI consumer would do)."""
        if not isinstance(doc, Mapping):
            raise ReportError("a report is a JSON object")
        version = doc.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ReportError(f"unsupported schema_version {version!r}")
        scenario = doc.get("scenario")
        if not isinstance(scenario, str) or not scenario:
            raise ReportError("scenario must be a non-empty string")
        figures = doc.get("figures")
        if not isinstance(figures, Mapping) or not all(
            isinstance(k, str) and _is_number(v) for k, v in figures.items()
        ):
            raise ReportError("figures must map names to numbers")
        raw_exp = doc.get("expectations")
        if not isinstance(raw_exp, list):
            raise ReportError("expectations must be a list")
        expectations = []
        for e in raw_exp:
            if (
                not isinstance(e, Mapping)
                or not isinstance(e.get("name"), str)
                or not isinstance(e.get("passed"), bool)
                or not isinstance(e.get("detail", ""), str)
                or not isinstance(e.get("timing", False), bool)
            ):
                raise ReportError(
                    "each expectation needs name (str), passed (bool), detail (str), "
                    "and timing (bool) when present"
                )
            expectations.append(
                Expectation(e["name"], e["passed"], e.get("detail", ""), e.get("timing", False))
            )
        timeline = []
        for p in doc.get("timeline", []):
            if not isinstance(p, Mapping) or not _is_number(p.get("t")):
                raise ReportError("each timeline point needs a numeric t")
            values = {k: v for k, v in p.items() if k != "t"}
            if not all(_is_number(v) for v in values.values()):
                raise ReportError("timeline values must be numbers")
            timeline.append(TimelinePoint(float(p["t"]), values))
        marks = []
        for m in doc.get("marks", []):
            if not isinstance(m, Mapping) or not _is_number(m.get("t")):
                raise ReportError("each mark needs a numeric t")
            marks.append(Mark(float(m["t"]), str(m.get("label", ""))))
        params = doc.get("params", {})
        if not isinstance(params, Mapping):
            raise ReportError("params must be an object")
        observations = []
        for o in doc.get("observations", []):
            if (
                not isinstance(o, Mapping)
                or not isinstance(o.get("name"), str)
                or not isinstance(o.get("met"), bool)
                or not isinstance(o.get("detail", ""), str)
            ):
                raise ReportError("each observation needs name (str), met (bool), detail (str)")
            observations.append(Observation(o["name"], o["met"], o.get("detail", "")))
        not_measured = doc.get("not_measured", {})
        if not isinstance(not_measured, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in not_measured.items()
        ):
            raise ReportError("not_measured must map names to reasons (strings)")
        notes = doc.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise ReportError("notes must be a list of strings")
        fidelity = doc.get("fidelity")
        if fidelity is not None and (
            not isinstance(fidelity, Mapping) or not isinstance(fidelity.get("available"), bool)
        ):
            raise ReportError("fidelity must be an object with available (bool)")
        report = cls(
            scenario=scenario,
            started_at=str(doc.get("started_at", "")),
            duration_s=float(doc.get("duration_s", 0.0)),
            params=dict(params),
            figures=dict(figures),
            expectations=expectations,
            timeline=timeline,
            marks=marks,
            error=doc.get("error"),
            interrupted=doc.get("interrupted", False) is True,
            observations=observations,
            not_measured=dict(not_measured),
            notes=list(notes),
            fidelity=None if fidelity is None else dict(fidelity),
        )
        if bool(doc.get("passed")) != report.passed:
            raise ReportError("passed disagrees with the expectations")
        return report


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _finite(v: float) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _json_number(v: float) -> float | int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if not math.isfinite(v):
        raise ReportError("figures must be finite numbers (use a separate count figure)")
    return round(float(v), 6)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.1f}"
    return str(v)


# --------------------------------------------------------------------------- text


def fidelity_lines(fidelity: Mapping[str, Any] | None, max_clients: int = 20) -> list[str]:
    """The broker's fidelity report for a terminal: what would break in production and
    which client ids did it (docs/fidelity.md)."""
    if fidelity is None:
        return []
    if not fidelity.get("available"):
        return [f"fidelity: not available ({fidelity.get('reason', 'unknown')})"]
    profile = fidelity.get("profile", "?")
    totals: Mapping[str, int] = fidelity.get("totals", {})
    why: Mapping[str, str] = fidelity.get("why", {})
    if not any(totals.values()):
        return [f"fidelity ({profile} profile): no use of a feature the provider lacks"]
    out = [f"fidelity ({profile} profile): uses of features the provider lacks"]
    for feature, count in sorted(totals.items()):
        out.append(f"  {feature} x{count}: {why.get(feature, '')}")
    clients = list(fidelity.get("clients", []))
    for c in clients[:max_clients]:
        uses = ", ".join(f"{f} x{n}" for f, n in sorted(c.get("uses", {}).items()))
        out.append(f"  {c.get('instance_id') or '-'} {c.get('client_id')}: {uses}")
    hidden = len(clients) - max_clients + int(fidelity.get("clients_forgotten", 0))
    if hidden > 0:
        out.append(f"  ... and {hidden} more clients")
    return out


def render_summary(report: ScenarioReport) -> str:
    """A plain-text table: figures, then expectations, then the verdict."""
    lines = [f"scenario {report.scenario}: {report.duration_s:.1f} s"]
    if report.params:
        lines.append("  " + ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(report.params.items())))
    for note in report.notes:
        lines.append(f"  note: {note}")
    if report.figures:
        width = max(len(k) for k in report.figures)
        lines.append("")
        lines.append(f"  {'figure'.ljust(width)}  value")
        lines.append(f"  {'-' * width}  {'-' * 12}")
        for k, v in report.figures.items():
            lines.append(f"  {k.ljust(width)}  {_fmt(v)}")
    if report.not_measured:
        lines.append("")
        for k, why in report.not_measured.items():
            lines.append(f"  not measured: {k}: {why}")
    if report.expectations:
        width = max(len(e.name) for e in report.expectations)
        lines.append("")
        for e in report.expectations:
            lines.append(f"  [{'PASS' if e.passed else 'FAIL'}] {e.name.ljust(width)}  {e.detail}")
    if report.observations:
        lines.append("")
        lines.append("  timing (measured and shown, not verdicts: docs/scenarios.md)")
        width = max(len(o.name) for o in report.observations)
        for o in report.observations:
            lines.append(f"  [{'met ' if o.met else 'miss'}] {o.name.ljust(width)}  {o.detail}")
    fid = fidelity_lines(report.fidelity)
    if fid:
        lines.append("")
        lines.extend("  " + line for line in fid)
    if report.error:
        lines.append("")
        lines.append(f"  ERROR: {report.error}")
    lines.append("")
    lines.append(report.verdict())
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTML

# Which series share a chart: counts of clients apart from cumulative request counters.
DEFAULT_CHARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("connected clients", ("connected",)),
    ("token requests and upstream applies (cumulative)", ("token_requests", "applies")),
)


def _fidelity_html(fidelity: Mapping[str, Any] | None) -> str:
    esc = html.escape
    if fidelity is None:
        return "<p>not read (the run ended first)</p>"
    if not fidelity.get("available"):
        return f"<p>not available: {esc(str(fidelity.get('reason', '')))}</p>"
    totals: Mapping[str, int] = fidelity.get("totals", {})
    why: Mapping[str, str] = fidelity.get("why", {})
    profile = esc(str(fidelity.get("profile", "?")))
    if not any(totals.values()):
        return f"<p>{profile} profile: no use of a feature the provider lacks.</p>"
    rows_t = "".join(
        f"<tr><td>{esc(f)}</td><td class=num>{n}</td><td>{esc(why.get(f, ''))}</td></tr>"
        for f, n in sorted(totals.items())
    )
    rows_c = "".join(
        f"<tr><td>{esc(str(c.get('instance_id') or '-'))}</td><td>{esc(str(c.get('client_id')))}"
        "</td><td>"
        + esc(", ".join(f"{f} x{n}" for f, n in sorted(c.get("uses", {}).items())))
        + "</td></tr>"
        for c in fidelity.get("clients", [])
    )
    forgotten = int(fidelity.get("clients_forgotten", 0))
    more = f"<p>... and {forgotten} more clients (forgotten)</p>" if forgotten else ""
    return (
        f"<p>{profile} profile: uses of features the provider lacks "
        "(code that does this breaks in production).</p>"
        f"<table><tr><th>feature</th><th>uses</th><th>why it breaks</th></tr>{rows_t}</table>"
        f"<table><tr><th>instance</th><th>client id</th><th>uses</th></tr>{rows_c}</table>{more}"
    )


def render_html(report: ScenarioReport) -> str:
    """A self-contained HTML page: verdict, figures, expectations, timeline charts as
    inline SVG (no script, no CDN: it opens offline and in CI artefact viewers)."""
    esc = html.escape
    verdict = "PASSED" if report.passed else "FAILED"
    colour = "#2ca02c" if report.passed else "#d62728"
    known = {s for _, ss in DEFAULT_CHARTS for s in ss}
    present = {k for p in report.timeline for k in p.values}
    charts = [(title, [s for s in ss if s in present]) for title, ss in DEFAULT_CHARTS]
    extra = sorted(present - known)
    if extra:
        charts.append(("other counters", extra))
    unit = " (virtual)" if report.params.get("timeline_clock") == "virtual" else ""
    svgs = [
        timeline_svg(report.timeline, ss, marks=report.marks, title=title + unit)
        for title, ss in charts
        if ss
    ]
    rows_f = "".join(
        f"<tr><td>{esc(k)}</td><td class=num>{esc(_fmt(v))}</td></tr>"
        for k, v in report.figures.items()
    )
    rows_n = "".join(
        f"<tr><td>{esc(k)}</td><td>not measured: {esc(why)}</td></tr>"
        for k, why in report.not_measured.items()
    )
    rows_e = "".join(
        f"<tr class={'pass' if e.passed else 'fail'}><td>{'PASS' if e.passed else 'FAIL'}</td>"
        f"<td>{esc(e.name)}</td><td>{esc(e.detail)}</td></tr>"
        for e in report.expectations
    )
    rows_o = "".join(
        f"<tr><td>{'met' if o.met else 'missed'}</td><td>{esc(o.name)}</td>"
        f"<td>{esc(o.detail)}</td></tr>"
        for o in report.observations
    )
    timing = (
        "<h2>Timing (measured, not verdicts)</h2><table><tr><th></th><th>target</th>"
        f"<th>detail</th></tr>{rows_o}</table>"
        if rows_o
        else ""
    )
    params = ", ".join(f"{esc(k)}={esc(_fmt(v))}" for k, v in sorted(report.params.items()))
    notes = "".join(f"<p class=note>{esc(n)}</p>" for n in report.notes)
    error = f"<p class=fail>error: {esc(report.error)}</p>" if report.error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{esc(report.scenario)}: {verdict}</title>
<style>
body{{font-family:sans-serif;margin:2em;max-width:60em}}
table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}
td.num{{text-align:right;font-variant-numeric:tabular-nums}}
tr.fail td,p.fail{{color:#d62728}} tr.pass td:first-child{{color:#2ca02c}}
.verdict{{color:{colour}}} p.note{{color:#555}}
</style></head><body>
<h1>{esc(report.scenario)} <span class="verdict">{verdict}</span></h1>
<p>started {esc(report.started_at)} · {report.duration_s:.1f} s · {params}</p>
{notes}{error}
<h2>Timeline</h2>
{"".join(f"<div>{s}</div>" for s in svgs) or "<p>no samples</p>"}
<h2>Expectations</h2>
<table><tr><th></th><th>expectation</th><th>detail</th></tr>{rows_e}</table>
{timing}
<h2>Fidelity: what would break in production</h2>
{_fidelity_html(report.fidelity)}
<h2>Figures</h2>
<table><tr><th>figure</th><th>value</th></tr>{rows_f}{rows_n}</table>
</body></html>
"""
