"""A newcomer's mistakes end in one line on stderr and the documented exit status
(docs/stack.md "Exit status and errors"): 2 could not run, 130 interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack.test_up import Up

from .conftest import cli, one_line

pytestmark = pytest.mark.timeout(120)

FREE = ["--authserver-port", "0", "--appserver-port", "0", "--status-port", "0"]


# --------------------------------------------------------------------------- ports


def test_up_when_the_broker_port_is_taken(tmp_path: Path, taken_port: int) -> None:
    proc = cli("up", "--data-dir", str(tmp_path), *FREE, "--broker-port", str(taken_port))
    err = one_line(proc, 2)
    assert f"the broker cannot listen on 127.0.0.1:{taken_port}" in err
    assert "already in use" in err and "--broker-port" in err


def test_up_when_the_status_port_is_taken(tmp_path: Path, taken_port: int) -> None:
    args = ["--authserver-port", "0", "--appserver-port", "0", "--broker-port", "0"]
    proc = cli("up", "--data-dir", str(tmp_path), *args, "--status-port", str(taken_port))
    assert "--status-port" in one_line(proc, 2)


@pytest.mark.parametrize(
    ("command", "part"),
    [
        (["broker", "--auth", "off"], "broker"),
        (["authserver"], "AuthServer"),
        (["appserver"], "AppServer"),
    ],
)
def test_a_part_alone_when_its_port_is_taken(
    tmp_path: Path, taken_port: int, command: list[str], part: str
) -> None:
    extra = [] if command[0] == "broker" else ["--data-dir", str(tmp_path)]
    proc = cli(*command, *extra, "--port", str(taken_port))
    err = one_line(proc, 2)
    assert f"the {part} cannot listen on 127.0.0.1:{taken_port}" in err and "--port" in err


# --------------------------------------------------------------------------- values


def test_up_refuses_an_out_of_range_hash_cost_naming_the_flag(tmp_path: Path) -> None:
    proc = cli("up", "--data-dir", str(tmp_path), "--password-hash-cost", "40")
    assert "--password-hash-cost must be within 1..20, got 40" in one_line(proc, 2)


def test_up_refuses_a_data_dir_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    proc = cli("up", "--data-dir", str(tmp_path / "file" / "data"))
    assert "--data-dir" in one_line(proc, 2)


def test_log_level_goes_after_the_subcommand_too(tmp_path: Path) -> None:
    proc = cli("up", "--log-level", "debug", "--password-hash-cost", "40")
    assert "--password-hash-cost" in one_line(proc, 2)  # parsed; refused for the value


def test_version() -> None:
    from importlib.metadata import version

    proc = cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"mqtt-token-sim {version('mqtt-token-sim')}"


# --------------------------------------------------------------------------- run


def test_run_refuses_an_unknown_option() -> None:
    err = one_line(cli("run", "reconnect-storm", "--set", "rouds=1"), 2)
    assert "no option 'rouds'" in err and "rounds" in err  # the options it has


def test_run_refuses_a_bad_option_value_before_starting() -> None:
    proc = cli("run", "reconnect-storm", "--set", "method=teleport")
    assert "--set method must be one of kick, restart" in one_line(proc, 2)
    assert proc.stdout == ""  # nothing ran


def test_run_accepts_the_defect_option_of_every_scenario() -> None:
    from scenarios.base import SCENARIOS
    from scenarios.options import check_options

    for name in SCENARIOS:
        check_options(name, {"defect": "anything", "stack_process": "false"})


def test_run_checks_its_report_paths_before_running(tmp_path: Path) -> None:
    proc = cli("run", "cache-reuse", "--report", str(tmp_path / "missing" / "x.json"))
    assert "--report" in one_line(proc, 2) and proc.stdout == ""
    proc = cli("run", "cache-reuse", "--html", str(tmp_path))
    assert "is a directory" in one_line(proc, 2)


def test_run_refuses_a_data_dir_it_cannot_write(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    proc = cli("run", "cache-reuse", "--data-dir", str(tmp_path / "file" / "d"))
    assert "--data-dir" in one_line(proc, 2)


def test_run_against_an_unreachable_url(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    urls = ["--authserver", "http://127.0.0.1:9", "--appserver", "http://127.0.0.1:9"]
    proc = cli("run", "cache-reuse", *urls, "--broker", "mqtt://127.0.0.1:9", "--quiet",
               "--report", str(out))  # fmt: skip
    err = one_line(proc, 2)
    assert "could not run" in err and "not reachable" in err and str(out) in err
    assert json.loads(out.read_text())["passed"] is False


def test_run_against_endpoints_that_refuse_the_scenario(tmp_path: Path) -> None:
    up = Up(tmp_path / "data")
    try:
        up.wait_for("Ctrl-C or SIGTERM")
        proc = cli(
            "run", "reconnect-storm", "--quiet", "--clients", "2",
            "--authserver", f"http://127.0.0.1:{up.auth_port}",
            "--appserver", f"http://127.0.0.1:{up.app_port}",
            "--broker", f"mqtt://127.0.0.1:{up.broker_port}",
        )  # fmt: skip
        err = one_line(proc, 2)
        assert "could not run" in err and "needs the embedded stack" in err
        assert up.stop() == 0
    finally:
        if up.proc.poll() is None:
            up.proc.kill()


def test_ctrl_c_during_run_writes_the_report_marked_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim", "run", "cache-reuse", "--clients", "20",
         "--report", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # the progress bar, a line per phase on a pipe
            seen.append(line)
            if line.startswith("first start"):
                break
        else:
            raise AssertionError("".join(seen))
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert f"cache-reuse interrupted; report written to {out}" in stderr
    assert "cache-reuse: INTERRUPTED" in stdout
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and doc["passed"] is False


# --------------------------------------------------------------------------- environment


def test_every_flag_comes_from_the_environment(tmp_path: Path) -> None:
    env = {"MQTT_TOKEN_SIM_UP_PASSWORD_HASH_COST": "40"}
    proc = cli("up", "--data-dir", str(tmp_path), env=env)
    assert "--password-hash-cost must be within 1..20, got 40" in one_line(proc, 2)
    # the command line wins over the environment
    env["MQTT_TOKEN_SIM_UP_DRAIN_RATE"] = "-1"
    proc = cli("up", "--data-dir", str(tmp_path), "--drain-rate", "0", env=env)
    assert "--drain-rate must be > 0, got 0" in one_line(proc, 2)


def test_a_misspelt_or_bad_environment_setting_is_refused(tmp_path: Path) -> None:
    proc = cli("up", "--data-dir", str(tmp_path), env={"MQTT_TOKEN_SIM_UP_PROFLE": "mqtt"})
    assert "MQTT_TOKEN_SIM_UP_PROFLE: up has no flag --profle" in one_line(proc, 2)
    proc = cli("up", "--data-dir", str(tmp_path), env={"MQTT_TOKEN_SIM_UP_NO_DEV_CLIENT": "maybe"})
    assert "MQTT_TOKEN_SIM_UP_NO_DEV_CLIENT='maybe'" in one_line(proc, 2)
    proc = cli("up", "--data-dir", str(tmp_path), env={"MQTT_TOKEN_SIM_UP_PROFILE": "mosquitto"})
    assert "invalid choice 'mosquitto'" in one_line(proc, 2)
