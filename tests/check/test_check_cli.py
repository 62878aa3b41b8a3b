"""``mqtt-token-sim check appserver`` as a process: exit codes, one line on stderr when
it cannot run, and the report files (JUnit XML a CI reads).  The stack runs on the
system clock, as a user's AppServer does."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from sim.shared.clock import SystemClock
from tests.clirun import cli_async

from .conftest import ADAPTER, foreign_appserver, stack


async def cli(*args: str) -> tuple[int, str, str]:
    return await cli_async("--log-level", "WARNING", "check", "appserver", *args, within=110)


async def test_a_full_run_on_the_system_clock_writes_every_report(tmp_path: Path) -> None:
    async with (
        stack(tmp_path, SystemClock()) as handle,
        foreign_appserver(handle, tmp_path / "f.sqlite", manual=False) as foreign,
    ):
        code, out, err = await cli(
            "--adapter", str(ADAPTER),
            "--appserver", foreign.url,
            "--authserver", handle.authserver_url,
            "--broker", handle.broker_url,
            "--restart-cmd", foreign.restart_cmd,
            "--backlog", "6",
            "--json", str(tmp_path / "r.json"),
            "--html", str(tmp_path / "r.html"),
            "--junit", str(tmp_path / "r.xml"),
        )  # fmt: skip
    assert code == 0, out + err
    assert "forged-identity" in out and "10 passed, 1 not measured" in out
    root = ET.parse(tmp_path / "r.xml").getroot()  # noqa: S314 - our own report
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("11", "0", "1")
    (skipped,) = [c for c in suite.iter("testcase") if c.find("skipped") is not None]
    # real time cannot be moved: the stale fallback is "not measured", with the reason
    assert skipped.get("name") == "outage-stale-fallback"
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["exit_code"] == 0 and doc["totals"]["passed"] == 10
    assert "recovery-drain" in (tmp_path / "r.html").read_text()


async def test_a_failed_check_exits_1_and_fails_the_junit_case(tmp_path: Path) -> None:
    async with (
        stack(tmp_path, SystemClock()) as handle,
        foreign_appserver(handle, tmp_path / "f.sqlite", "--any-secret", manual=False) as f,
    ):
        code, out, _ = await cli(
            "--adapter", str(ADAPTER), "--appserver", f.url,
            "--authserver", handle.authserver_url, "--broker", handle.broker_url,
            "--only", "forged-identity", "--junit", str(tmp_path / "r.xml"),
        )  # fmt: skip
    assert code == 1, out
    root = ET.parse(tmp_path / "r.xml").getroot()  # noqa: S314 - our own report
    case = root.find("testsuite/testcase")
    assert case is not None and case.get("name") == "forged-identity"
    failure = case.find("failure")
    assert failure is not None and "forged identity" in (failure.text or "")


async def test_an_unreachable_url_exits_2_with_one_line(tmp_path: Path) -> None:
    async with stack(tmp_path, SystemClock()) as handle:
        code, out, err = await cli(
            "--adapter", str(ADAPTER), "--appserver", "http://127.0.0.1:9",
            "--authserver", handle.authserver_url, "--broker", handle.broker_url,
        )  # fmt: skip
    assert code == 2
    assert err.count("\n") == 1 and "AppServer at http://127.0.0.1:9" in err, err
    assert out == ""


async def test_a_bad_adapter_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(ADAPTER.read_text().replace('auth = "basic"', 'auth = "basik"'))
    code, _, err = await cli("--adapter", str(bad))
    assert code == 2
    assert err.count("\n") == 1, err
    assert f"{bad}:8: [request] auth: must be one of basic" in err
