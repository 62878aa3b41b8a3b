"""``mqtt-token-sim run``: exit status, JSON and HTML reports, argument errors."""

from __future__ import annotations

import json
import subprocess
import sys

from scenarios.report import ScenarioReport


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim", "--log-level", "WARNING", "run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_run_writes_reports_and_exits_zero(tmp_path):
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    proc = _run("cache-reuse", "--clients", "4", "--report", str(out), "--html", str(page))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "cache-reuse: PASSED" in proc.stdout
    assert "client_restart_upstream_applies" in proc.stdout  # the summary table
    assert "first start" in proc.stderr  # the progress bar (plain text on a pipe)
    doc = json.loads(out.read_text())
    report = ScenarioReport.from_dict(doc)
    assert report.passed and doc["figures"]["clients"] == 4
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html and "<script" not in html


def test_failed_expectation_exits_one(tmp_path):
    out = tmp_path / "r.json"
    proc = _run(
        "revocation",
        "--clients",
        "3",
        "--set",
        "revoke=1",
        "--set",
        "limit_s=0.000001",
        "--report",
        str(out),
        "--quiet",
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "[FAIL]" in proc.stdout
    assert json.loads(out.read_text())["passed"] is False


def test_bad_arguments_exit_two():
    proc = _run("cache-reuse", "--authserver", "http://127.0.0.1:1")
    assert proc.returncode == 2
    assert "all of --authserver, --appserver and --broker" in proc.stderr
    proc = _run("cache-reuse", "--set", "novalue")
    assert proc.returncode == 2 and "NAME=VALUE" in proc.stderr


def test_unreachable_endpoints_exit_two_with_a_report(tmp_path):
    out = tmp_path / "r.json"
    proc = _run(
        "cache-reuse",
        "--authserver",
        "http://127.0.0.1:9",
        "--appserver",
        "http://127.0.0.1:9",
        "--broker",
        "mqtt://127.0.0.1:9",
        "--report",
        str(out),
    )
    assert proc.returncode == 2
    doc = json.loads(out.read_text())
    assert doc["passed"] is False and "not reachable" in doc["error"]


def test_registry_is_consistent():
    from scenarios.base import DESCRIPTIONS, SCENARIOS, load_scenario

    assert set(DESCRIPTIONS) == set(SCENARIOS)
    for name in SCENARIOS:
        module = load_scenario(name)
        assert name == module.NAME
        assert module.CLOCK in ("system", "scaled", "manual")
        assert module.DEFAULT_CLIENTS >= 1
        assert callable(module.run) and callable(module.stack_config)
        assert not hasattr(module, "DESCRIPTION")  # one place: DESCRIPTIONS


def test_a_defect_run_exits_one_naming_what_caught_it(tmp_path):
    out = tmp_path / "r.json"
    proc = _run(
        "cache-reuse",
        "--clients",
        "3",
        "--set",
        "defect=no-token-persistence",
        "--quiet",
        "--report",
        str(out),
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stdout.rstrip().splitlines()[-1]
    assert last.startswith("cache-reuse: FAILED (client restart: no token requests")
    assert "DEFECT INJECTED" in proc.stdout
    assert json.loads(out.read_text())["params"]["defect"] == "no-token-persistence"


def test_an_unknown_defect_exits_two_listing_the_known_ones():
    proc = _run("revocation", "--set", "defect=no-cache")
    assert proc.returncode == 2
    assert "revocation has no defect 'no-cache'; its defects: broker-ignores-revocations" in (
        proc.stderr
    )


def test_help_lists_every_defect():
    from scenarios.base import DEFECTS

    proc = _run("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for name, defects in DEFECTS.items():
        for defect in defects:
            assert f"{name} {defect}:" in text
