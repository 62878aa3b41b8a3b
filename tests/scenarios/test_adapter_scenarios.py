"""The storm, cache-reuse and outage scenarios drive an AppServer that is not ours
(tests/foreign_appserver: its own process, its own API) through its adapter, beside an
AuthServer and broker the run starts (docs/scenarios.md "Your AppServer")."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scenarios.base import ScenarioParams, run_scenario
from scenarios.env import AppServerTarget
from scenarios.report import ScenarioReport
from sim.customer.adapter import load_adapter
from tests.clirun import cli_async
from tests.foreign_appserver.launch import ADAPTER, running


@dataclass
class Target:
    url: str
    authserver_port: int
    restart_cmd: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def foreign_appserver(tmp_path: Path, *flags: str) -> AsyncIterator[Target]:
    """The foreign AppServer, configured for an AuthServer on a port the run will start
    one on (as a user's AppServer is configured for 127.0.0.1:18080)."""
    port = _free_port()
    db = tmp_path / "foreign.sqlite"
    async with running(f"http://127.0.0.1:{port}", db, *flags) as foreign:
        yield Target(foreign.url, port, foreign.restart_cmd)


async def run_against(
    foreign: Target, name: str, clients: int, *, restart: bool = True, **options: str
) -> ScenarioReport:
    target = AppServerTarget(
        foreign.url, load_adapter(ADAPTER), restart_cmd=foreign.restart_cmd if restart else None
    )
    params = ScenarioParams(
        clients=clients, options={"authserver_port": str(foreign.authserver_port), **options}
    )
    return await run_scenario(name, params, target=target)


def _passed(report: ScenarioReport) -> None:
    assert report.error is None, report.error
    assert report.passed, [(e.name, e.detail) for e in report.failed_expectations()]
    assert report.params["appserver"].startswith("http://127.0.0.1:")
    assert "through the adapter" in report.params["appserver"]
    # The clients are the adapter's; their parent topic was made on the mock.
    assert "created parent topic 'shop' on instance mqtt-dev" in report.notes


async def test_the_storm_drives_a_foreign_appserver(tmp_path: Path) -> None:
    async with foreign_appserver(tmp_path) as foreign:
        report = await run_against(foreign, "reconnect-storm", 10, rounds="2")
    _passed(report)
    f = report.figures
    assert any(e.name.startswith("retries drawn with full jitter") for e in report.expectations)
    assert report.params["stack"] == "embedded (child process)"
    assert f["clients_back"] == 10 and f["sdk_token_requests_during_storm"] == 0
    assert f["upstream_applies_during_storm"] == 0  # the mock AuthServer's figures work
    # What only our AppServer's metrics could say is "not measured", with the reason.
    assert "appserver_requests_during_storm" not in f
    assert "no metrics of ours" in report.not_measured["appserver_requests_during_storm"]
    assert report.fidelity is not None and report.fidelity["available"] is True


async def test_cache_reuse_drives_a_foreign_appserver_and_restarts_it(tmp_path: Path) -> None:
    async with foreign_appserver(tmp_path) as foreign:
        report = await run_against(foreign, "cache-reuse", 6)
    _passed(report)
    f = report.figures
    assert f["first_start_upstream_applies"] == 6
    assert f["empty_stores_client_token_requests"] == 6 and f["empty_stores_upstream_applies"] == 0
    # restarted by its own command (SIGHUP, re-exec), its SQLite cache kept the tokens
    assert f["appserver_restart_connected"] == 6 and f["appserver_restart_upstream_applies"] == 0
    assert "first_start_appserver_requests" not in f


async def test_cache_reuse_fails_a_foreign_appserver_without_a_cache(tmp_path: Path) -> None:
    async with foreign_appserver(tmp_path, "--no-cache") as foreign:
        report = await run_against(foreign, "cache-reuse", 6)
    assert report.error is None, report.error
    failed = {e.name for e in report.failed_expectations()}
    assert failed == {"empty_stores: no upstream applies", "appserver_restart: no upstream applies"}
    assert "cache-reuse: FAILED (empty_stores: no upstream applies: 6 (wanted 0)" in (
        report.verdict()
    )


async def test_without_a_restart_command_the_restart_is_not_measured(tmp_path: Path) -> None:
    async with foreign_appserver(tmp_path) as foreign:
        report = await run_against(foreign, "cache-reuse", 3, restart=False)
    assert report.passed and report.error is None
    reason = report.not_measured["appserver_restart: every expectation"]
    assert "--set appserver_restart_cmd=" in reason
    assert "appserver_restart_connected" not in report.figures


async def test_outage_recovery_drives_a_foreign_appserver(tmp_path: Path) -> None:
    async with foreign_appserver(tmp_path) as foreign:
        report = await run_against(
            foreign, "outage-recovery", 4, new_clients="6", outage_s="1.5", deadline_s="60"
        )
    _passed(report)
    f = report.figures
    # Its own process keeps its own time: the run takes real time then.
    assert report.params["clock"] == "system"
    assert f["cached_reconnected_during_outage"] == 4 and f["new_clients_connected"] == 6
    assert 500 <= f["probe_status"] <= 599
    assert f["throttled_applies_recovery"] == 0
    assert "drain_limit_per_s" in report.not_measured


async def test_a_defect_of_our_appserver_is_refused_beside_yours() -> None:
    foreign = Target("http://127.0.0.1:9", 9, "true")  # refused before anything starts
    report = await run_against(foreign, "cache-reuse", 2, defect="no-appserver-cache")
    assert report.error is not None and "a switch on our AppServer" in report.error


async def test_a_scenario_without_adapters_says_so() -> None:
    target = AppServerTarget("http://127.0.0.1:9", load_adapter(ADAPTER))
    report = await run_scenario("revocation", ScenarioParams(clients=2), target=target)
    assert report.error is not None and "drives our AppServer only" in report.error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--adapter", str(ADAPTER)], "--adapter needs --appserver URL"),
        (["--adapter", "/nonexistent.toml", "--appserver", "http://127.0.0.1:9"], "cannot read"),
    ],
)
def test_cli_adapter_mistakes_exit_two(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sim", "run", "cache-reuse", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


async def test_cli_runs_a_scenario_against_your_appserver(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    async with foreign_appserver(tmp_path, "--no-cache") as foreign:
        status, stdout, stderr = await cli_async(
            "run",
            "cache-reuse",
            "--clients",
            "3",
            "--quiet",
            "--adapter",
            str(ADAPTER),
            "--appserver",
            foreign.url,
            "--set",
            f"authserver_port={foreign.authserver_port}",
            "--set",
            f"appserver_restart_cmd={foreign.restart_cmd}",
            "--report",
            str(out),
            within=120,
        )
    assert status == 1, stderr[-2000:]
    assert "[FAIL] empty_stores: no upstream applies" in stdout
    doc = json.loads(out.read_text())
    assert doc["passed"] is False and "through the adapter" in doc["params"]["appserver"]
