"""``mqtt-token-sim audit``: which devices broke the seed's client rules, from a running
broker's device audit (docs/your-appserver.md "The device audit").

    mqtt-token-sim audit --broker-metrics http://127.0.0.1:9100 \\
        [--authserver http://127.0.0.1:18080] [--json FILE] [--junit FILE] [--ignore RULE]

The broker keeps the records (:mod:`mock_broker.audit`, ``GET /audit`` on its metrics
port); the AuthServer, when given, adds what only it knows about the tokens a finding
names (:func:`with_authserver`): when each was issued, whether and *when* it was revoked
(``GET /admin/tokens/{id}``).  A new token that replaced one the AuthServer had revoked
before was due, not a broken rule: such findings are withdrawn, with a note.

Exit 0: no finding; 1: findings; 2: the audit could not be read (one line on stderr).
The same report in Python: :meth:`mock_broker.broker.BrokerHandle.audit` (in-process),
``SimStack.audit()`` (the pytest plugin), :func:`fetch_audit` (over HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mock_broker.audit import RULE_SOURCES, AuditReport, Finding, Rule

from .admin import AdminClient, AdminError, AdminRefused, AuthServerAdmin

if TYPE_CHECKING:  # pragma: no cover
    from .stack import StackHandle

__all__ = [
    "add_arguments",
    "exit_summary",
    "fetch_audit",
    "run",
    "to_junit",
    "with_authserver",
]

#: Token records asked of the AuthServer per report (the first findings' tokens).
MAX_LOOKUPS = 500
_TOKEN_KEYS = ("previous_token_id", "new_token_id", "old_token_id", "uploaded_token_id")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker-metrics",
        metavar="URL",
        required=True,
        help="the broker's metrics endpoint (its --metrics-port), e.g. http://127.0.0.1:9100",
    )
    parser.add_argument(
        "--authserver",
        metavar="URL",
        help="the mock AuthServer: adds each named token's issue and revocation times",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    parser.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML (CI)")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="RULE",
        choices=[str(r) for r in Rule],
        help="leave a rule out (repeatable): " + ", ".join(str(r) for r in Rule),
    )
    parser.add_argument(
        "--max-lines", type=int, default=50, help="findings printed (default 50; all in --json)"
    )


def run(args: argparse.Namespace) -> int:
    def fail(message: str) -> int:
        print(f"mqtt-token-sim audit: {message}", file=sys.stderr)
        return 2

    try:
        report = asyncio.run(fetch_audit(args.broker_metrics, authserver_url=args.authserver))
    except (AdminError, ValueError) as exc:
        return fail(str(exc))
    report = report.without(args.ignore)
    print("\n".join(report.lines(max_findings=args.max_lines)))
    for path, text in ((args.json, _json_text(report)), (args.junit, to_junit(report))):
        if path is not None:
            try:
                path.write_text(text, encoding="utf-8")
            except OSError as exc:
                return fail(f"cannot write {path}: {exc.strerror or exc}")
    return 0 if report.clean else 1


def _json_text(report: AuditReport) -> str:
    import json

    return json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n"


async def fetch_audit(broker_metrics_url: str, *, authserver_url: str | None = None) -> AuditReport:
    """The broker's device audit over HTTP (``GET /audit``), with the AuthServer's facts
    when ``authserver_url`` is given.  :class:`AdminError` if a part cannot be read,
    ``ValueError`` if the answer is no audit report."""
    async with AdminClient(authserver_url, broker_metrics_url=broker_metrics_url) as admin:
        report = AuditReport.from_json(await admin.broker.audit())
        if authserver_url is not None:
            report = await with_authserver(report, admin.authserver)
        return report


def exit_summary(stack: StackHandle, max_findings: int = 20) -> str:
    """``mqtt-token-sim up``'s words at exit: its broker's device audit (SPEC §6 rules,
    the fidelity report's uses), or nothing if it runs no broker of its own."""
    if stack.broker is None:
        return ""
    return "\n".join(stack.broker.audit().lines(max_findings=max_findings))


def _token_ids(finding: Finding) -> list[str]:
    ev = finding.evidence
    ids = [str(ev[k]) for k in _TOKEN_KEYS if isinstance(ev.get(k), str) and ev[k]]
    for item in ev.get("tokens", ()) or ():
        if isinstance(item, Mapping) and isinstance(item.get("token_id"), str):
            ids.append(item["token_id"])
    return ids


async def with_authserver(report: AuditReport, authserver: AuthServerAdmin) -> AuditReport:
    """``report`` with the AuthServer's record of every token its findings name (under
    ``evidence["authserver"]``), and without the new-token findings whose previous token
    the AuthServer had revoked before the new CONNECT."""
    wanted: list[str] = []
    for finding in report.findings:
        wanted += [t for t in _token_ids(finding) if t not in wanted]
    wanted = wanted[:MAX_LOOKUPS]
    records = await asyncio.gather(*(_record(authserver, t) for t in wanted))
    known = dict(zip(wanted, records, strict=True))
    findings: list[Finding] = []
    notes = list(report.notes)
    withdrawn = 0
    for finding in report.findings:
        ids = [t for t in _token_ids(finding) if t in known]
        if not ids:
            findings.append(finding)
            continue
        facts = {t: known[t] for t in ids}
        if finding.rule is Rule.NEW_TOKEN_WHILE_VALID and _revoked_before(finding, facts):
            withdrawn += 1
            continue
        findings.append(replace(finding, evidence={**finding.evidence, "authserver": facts}))
    totals = dict(report.totals)
    if withdrawn:
        key = str(Rule.NEW_TOKEN_WHILE_VALID)
        totals[key] = max(0, totals.get(key, 0) - withdrawn)
        notes.append(
            f"{withdrawn} {key} findings withdrawn: the AuthServer had revoked the previous"
            " token before the new CONNECT"
        )
    if len(wanted) == MAX_LOOKUPS:
        notes.append(f"the AuthServer was asked about the first {MAX_LOOKUPS} tokens only")
    return replace(report, findings=tuple(findings), totals=totals, notes=tuple(notes))


async def _record(authserver: AuthServerAdmin, token_id: str) -> dict[str, Any]:
    try:
        doc = await authserver.token(token_id)
    except AdminRefused as exc:
        if exc.status == 404:
            return {"status": "unknown to this AuthServer"}
        raise
    return {k: doc.get(k) for k in ("issued_ms", "expire_ms", "status", "revoked_ms")}


def _revoked_before(finding: Finding, facts: Mapping[str, Mapping[str, Any]]) -> bool:
    previous = facts.get(str(finding.evidence.get("previous_token_id")))
    revoked_ms = previous.get("revoked_ms") if previous else None
    return isinstance(revoked_ms, int) and revoked_ms <= finding.last_ms


def to_junit(report: AuditReport, rules: Iterable[Rule] = tuple(Rule)) -> str:
    """JUnit XML: one test case per rule (class ``device-audit``); a rule some client
    broke is a ``<failure>`` listing the findings with their evidence."""
    cases = list(rules)
    suite = ET.Element(
        "testsuite",
        name="mqtt-token-sim device audit",
        tests=str(len(cases)),
        failures=str(sum(1 for r in cases if report.by_rule(r) or report.totals.get(str(r)))),
        errors="0",
        skipped="0",
    )
    for rule in cases:
        case = ET.SubElement(suite, "testcase", classname="device-audit", name=str(rule))
        found = report.by_rule(rule)
        count = report.totals.get(str(rule), 0)
        if found or count:
            text = "\n".join([f"rule ({RULE_SOURCES[rule]})", *(f.line() for f in found)])
            clients = sorted({c for f in found for c in f.client_ids})
            message = f"{count} times, {len(clients)} clients: {', '.join(clients[:5])}"
            ET.SubElement(case, "failure", message=message).text = text
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"
