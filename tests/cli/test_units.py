"""The pure pieces behind the command line: flags from the environment, the scenarios'
declared options, the fleet's summary and hints, the client-id faults."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from scenarios.base import SCENARIOS
from scenarios.options import COMMON, OPTIONS, check_options
from sim.customer.fleet_cli import hints, summary_lines
from sim.harness.cli import build_parser
from sim.harness.envdefaults import apply_env_defaults, env_name
from sim.shared.protocol.credentials import client_id_fault, validate_client_id


def test_env_names() -> None:
    assert env_name("up", "--broker-port") == "MQTT_TOKEN_SIM_UP_BROKER_PORT"


def test_env_defaults_convert_like_the_flags() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=1)
    parser.add_argument("--no-x", action="store_true")
    parser.add_argument("--mode", choices=["a", "b"], default="a")
    parser.add_argument("--set", dest="options", action="append", default=[])
    parser.add_argument("--clients", type=int, required=True)
    env = {
        "MQTT_TOKEN_SIM_T_PORT": "7",
        "MQTT_TOKEN_SIM_T_NO_X": "false",
        "MQTT_TOKEN_SIM_T_MODE": "b",
        "MQTT_TOKEN_SIM_T_SET": "a=1 b=2",
        "MQTT_TOKEN_SIM_T_CLIENTS": "3",
    }
    assert apply_env_defaults(parser, "t", env) == []
    args = parser.parse_args([])
    assert (args.port, args.no_x, args.mode, args.options, args.clients) == (
        7, False, "b", ["a=1", "b=2"], 3,
    )  # fmt: skip
    assert parser.parse_args(["--port", "9"]).port == 9  # the command line wins
    env = {"MQTT_TOKEN_SIM_T_NO_X": "true"}
    apply_env_defaults(parser, "t", env)
    assert parser.parse_args([]).no_x is True


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"MQTT_TOKEN_SIM_T_PORT": "x"}, "MQTT_TOKEN_SIM_T_PORT='x'"),
        ({"MQTT_TOKEN_SIM_T_NO_X": "maybe"}, "not a boolean"),
        ({"MQTT_TOKEN_SIM_T_MODE": "c"}, "invalid choice 'c'"),
        ({"MQTT_TOKEN_SIM_T_PROT": "1"}, "t has no flag --prot"),
    ],
)
def test_env_problems_are_named(env: dict[str, str], problem: str) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=1)
    parser.add_argument("--no-x", action="store_true")
    parser.add_argument("--mode", choices=["a", "b"], default="a")
    problems = apply_env_defaults(parser, "t", env)
    assert len(problems) == 1 and problem in problems[0]


def test_every_command_takes_the_global_flags_after_it() -> None:
    parser = build_parser({})
    for command, extra in (("up", []), ("fleet", ["--clients", "1"]), ("run", ["revocation"])):
        args = parser.parse_args([command, *extra, "--log-level", "debug"])
        assert args.log_level == "DEBUG"
        assert parser.parse_args([command, *extra]).log_level == "INFO"


def test_every_part_takes_the_clock_flags() -> None:
    parser = build_parser({})
    for command, extra in (
        ("authserver", []),
        ("broker", []),
        ("appserver", []),
        ("up", []),
        ("fleet", ["--clients", "1"]),
    ):
        args = parser.parse_args([command, *extra, "--clock", "manual"])
        assert args.clock == "manual", command
        args = parser.parse_args([command, *extra, "--time-scale", "60"])
        assert args.time_scale == 60, command


def test_every_option_a_scenario_reads_is_declared() -> None:
    """``ctx.option("name", ...)`` / ``params.option("name", ...)`` in each module."""
    root = Path(__file__).resolve().parents[2] / "scenarios"
    for scenario, module in SCENARIOS.items():
        source = (root / f"{module.rsplit('.', 1)[1]}.py").read_text()
        read = set(re.findall(r"\.option\(\s*\"(\w+)\"", source))
        declared = {o.name for o in (*OPTIONS[scenario], *COMMON)}
        assert read <= declared, (scenario, read - declared)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rouds": "1"}, "no option 'rouds'"),
        ({"method": "teleport"}, "method must be one of kick, restart"),
        ({"rounds": "0"}, "rounds must be >= 1"),
        ({"rounds": "two"}, "rounds must be a whole number"),
        ({"jitter_factor": "0"}, "jitter_factor must be > 0"),
        ({"subscribe": "maybe"}, "subscribe must be true or false"),
    ],
)
def test_bad_options_are_refused(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_options("reconnect-storm", options)


def test_good_options_pass() -> None:
    check_options("reconnect-storm", {"method": "restart", "rounds": "1", "subscribe": "yes"})
    check_options("expiry-refresh", {"mode": "upload", "lifetimes": "2"})


def _summary(**changes: object) -> dict:
    s = {
        "clients": 1000, "connected": 555, "states": {"connected": 555, "backoff": 445},
        "seconds": 29.1, "all_connected_after_s": None,
        "first_connect_ms": {"p50": 1.0, "p95": 2.0, "p99": 3.0}, "rss_mb": 90.0,
        "kb_per_client": 40.0, "cpu_s": 3.0, "idle_cpu_pct": None, "messages_received": 0,
        "counters": {"token_request_failures": 445, "connects": 555}, "failures": {},
    }  # fmt: skip
    s.update(changes)
    return s


def test_the_fleet_summary_reads_as_text() -> None:
    text = "\n".join(summary_lines(_summary()))
    assert "None" not in text
    assert "not all connected" in text
    assert re.search(r"token_request_failures +445", text)  # a gap between key and value


def test_the_fleet_says_what_to_change() -> None:
    s = _summary(failures={"token_request": ["AppServer answered 503: draining backlog"]})
    assert any("--drain-rate" in h for h in hints(s))
    s = _summary(states={"connected": 555, "connecting": 445})
    assert any("--password-hash-cost" in h for h in hints(s))
    assert hints(_summary(connected=1000)) == []


@pytest.mark.parametrize(
    ("client_id", "fault"),
    [
        ("GID_dev@@@dev-1", None),
        ("GID-demo@@@dev1", None),
        ("mosquitto-sub-1", "no '@@@'"),
        ("GID_a@@@d", "Group ID not 7-64"),
        ("GXD_demo@@@d", "does not start with GID_ or GID-"),
        ("GID_demo@@@dev:1", "characters other than"),
        ("GID_demo@@@", "empty Device ID"),
        ("", "empty client id"),
        ("GID_demo@@@" + "d" * 60, "longer than 64"),
    ],
)
def test_client_id_faults_agree_with_the_rule(client_id: str, fault: str | None) -> None:
    found = client_id_fault(client_id)
    if fault is None:
        assert found is None
        validate_client_id(client_id)
    else:
        assert found is not None and fault in found
        with pytest.raises(ValueError):
            validate_client_id(client_id)
