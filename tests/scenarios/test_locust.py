"""The locustfiles, headless, against a stack each test starts: small, bounded in count
and time, loopback only, free ports.

* the busy users in distributed mode (``--processes 2``: a master and two workers):
  every request kind, no failure, connects never 0 ms, one MQTT socket per user;
* the storm shape in distributed mode: every device kicked by the broker comes back,
  with no token traffic, and the figures reach the master;
* the fleet shape: idle devices stay connected on keep-alive alone and refresh their
  tokens in session on the broker's expire notice;
* a generator starved of descriptors is reported as the generator's limit (exit 3,
  ``generator:overloaded``), never as broker or AppServer failures.
"""

from __future__ import annotations

import asyncio
import csv
import json
import resource
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from scenarios.env import UNTHROTTLED, Environment, embedded_environment, scenario_stack
from sim.shared.clock import ScaledClock

ROOT = Path(__file__).resolve().parents[2] / "scenarios"
LOCUSTFILE = ROOT / "locustfile.py"
STORM = ROOT / "locust_storm.py"
FLEET = ROOT / "locust_fleet.py"

EXIT_GENERATOR_LIMIT = 3  # scenarios.load.runtime (not imported: it needs gevent)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    returncode: int
    log: str
    stats: dict[str, dict[str, str]]
    failures: list[dict[str, str]]
    report: dict[str, Any]

    def count(self, name: str) -> int:
        return int(self.stats[name]["Request Count"]) if name in self.stats else 0

    def failed(self, name: str) -> int:
        return int(self.stats[name]["Failure Count"]) if name in self.stats else 0


async def _locust(
    tmp_path: Path,
    locustfile: Path,
    env: Environment,
    *args: str,
    processes: int = 2,
    deadline_s: float = 120,
    preexec: Callable[[], None] | None = None,
) -> Run:
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless"]
    if processes:
        # The master binds '*:5557' unless told otherwise: loopback only, and a free
        # port so that two runs on one machine do not collide.
        port = str(_free_port())
        cmd += ["--processes", str(processes), "--master-bind-host", "127.0.0.1"]
        cmd += ["--master-bind-port", port, "--master-port", port]
    report = tmp_path / "load.json"
    cmd += [
        "--host", env.endpoints.appserver_url,
        "--broker", env.endpoints.broker_url,
        "--authserver", env.endpoints.authserver_url,
        "--csv", str(tmp_path / "lc"), "--only-summary",
        "--load-report", str(report),
        *args,
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=preexec,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout=deadline_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    log = err.decode(errors="replace")
    stats_csv = tmp_path / "lc_stats.csv"
    failures_csv = tmp_path / "lc_failures.csv"
    rows = (
        {r["Name"]: r for r in csv.DictReader(stats_csv.read_text().splitlines())}
        if stats_csv.exists()
        else {}
    )
    failures = (
        list(csv.DictReader(failures_csv.read_text().splitlines())) if failures_csv.exists() else []
    )
    doc = json.loads(report.read_text()) if report.exists() else {}
    assert proc.returncode is not None
    return Run(proc.returncode, log, rows, failures, doc)


def _no_failures(run: Run) -> None:
    assert not run.failures, (run.failures, run.log[-3000:])
    assert run.failed("Aggregated") == 0


async def test_locust_distributed_smoke(tmp_path):
    async with embedded_environment(scenario_stack().with_appserver(**UNTHROTTLED)) as env:
        run = await _locust(
            tmp_path, LOCUSTFILE, env,
            "MqttTokenUser", "AppServerUser",
            "-u", "8", "-r", "8", "--run-time", "6s", "--stop-timeout", "5",
            # busy devices: a reconnect or a refresh every couple of seconds each
            "--mqtt-task-wait", "0.05,0.2",
        )  # fmt: skip
    assert run.returncode == 0, run.log[-3000:]
    assert "2 workers connected" in run.log  # really distributed: master + 2 workers
    _no_failures(run)
    for name in (
        "admin:account",
        "token:apply",
        "connect:fresh-token",
        "connect:cached-token",
        "subscribe",
        "publish:qos1",
        "token:upload",
    ):
        assert run.count(name) > 0, (name, run.stats.keys())
    # A connect is timed from TCP open to CONNACK: never 0 ms.
    for name in ("connect:fresh-token", "connect:cached-token"):
        assert float(run.stats[name]["Min Response Time"]) > 0
        assert run.stats[name]["Type"] == "MQTT"
    assert "generator:overloaded" not in run.stats
    gen = run.report["generator"]
    assert gen["workers"] == 2 and not gen["was_the_limit"]
    # One MQTT socket per user, however often each reconnected (counted by the kernel's
    # socket table, not by the users): a reconnect that leaked its old socket shows here.
    assert 0 < gen["mqtt_sockets"] <= gen["users"], gen  # users: the MQTT users


async def test_locust_users_ask_a_foreign_appserver_through_its_adapter(tmp_path):
    """The busy users, distributed, against an AppServer that is not ours (its own
    process and API, pointed at this stack's AuthServer), asked as its adapter file says;
    the users are the adapter's [clients].  No failure, and the broker's device audit
    finds nothing wrong with them."""
    from tests.check.conftest import ADAPTER, foreign_appserver

    config = scenario_stack().with_broker(metrics_port=0)
    async with embedded_environment(config) as env:
        assert env.stack is not None and env.stack.broker is not None
        await env.admin.authserver.add_parent_topic("mqtt-dev", "shop")
        async with foreign_appserver(env.stack, tmp_path / "f.sqlite", manual=False) as foreign:
            env.endpoints = replace(env.endpoints, appserver_url=foreign.url)
            run = await _locust(
                tmp_path, LOCUSTFILE, env,
                "MqttTokenUser", "AppServerUser", "--adapter", str(ADAPTER),
                "-u", "6", "-r", "6", "--run-time", "6s", "--stop-timeout", "5",
                "--mqtt-task-wait", "0.05,0.2",
            )  # fmt: skip
        audit = env.stack.broker.audit()
    assert run.returncode == 0, run.log[-3000:]
    assert "2 workers connected" in run.log
    _no_failures(run)
    for name in ("token:apply", "connect:fresh-token", "publish:qos1", "token:upload"):
        assert run.count(name) > 0, (name, run.stats.keys())
    assert run.count("admin:account") == 0  # the adapter's clients exist on their server
    # the MQTT users were the adapter's clients (their tokens for shop/dev-<n>/# carried
    # their publishes), two workers never one client; and they broke no client rule
    assert audit.clients >= 3  # the MqttTokenUsers (half of -u 6)
    audit.assert_clean()


async def test_a_bad_adapter_is_a_clear_error_before_any_user(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[request]\nurl = "/x"\nauth = "basik"\n')
    async with embedded_environment(scenario_stack()) as env:
        run = await _locust(
            tmp_path, LOCUSTFILE, env, "MqttTokenUser", "--adapter", str(bad),
            "-u", "1", "--run-time", "2s", processes=0,
        )  # fmt: skip
    assert run.returncode == 2, run.log[-2000:]
    assert "mqtt-token-sim load: " in run.log and "bad.toml:3" in run.log


async def _serve_kick(env: Environment) -> tuple[web.AppRunner, str]:
    """The storm's lever over HTTP: ``POST /kick`` makes the broker drop every client
    (what ``scenarios.stack_proc`` serves for a stack in a child process)."""

    async def kick(_r: web.Request) -> web.Response:
        return web.json_response({"kicked": await env.kick_all()})

    app = web.Application()
    app.router.add_post("/kick", kick)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/kick"


async def test_storm_shape_distributed(tmp_path):
    devices = 24
    async with embedded_environment(scenario_stack().with_appserver(**UNTHROTTLED)) as env:
        runner, kick_url = await _serve_kick(env)
        try:
            run = await _locust(
                tmp_path, STORM, env,
                "-u", str(devices), "-r", str(devices),
                "--storm-kick-url", kick_url, "--storm-rounds", "1",
                "--storm-settle", "0.5", "--storm-deadline", "30",
                "--reconnect-window", "0.5", "--setup-timeout", "60",
            )  # fmt: skip
        finally:
            await runner.cleanup()
    assert run.returncode == 0, run.log[-3000:]
    assert "2 workers connected" in run.log
    _no_failures(run)
    assert float(run.stats["connect:cached-token"]["Min Response Time"]) > 0
    assert run.count("connect:cached-token") >= devices  # every device came back
    assert run.count("token:apply") == devices  # once each, at the start: none in the storm
    (storm,) = run.report["storm"]
    assert storm["lever"] == "kick"
    assert storm["complete"], storm
    assert storm["lost"] == storm["back"] == devices
    assert storm["seconds_back"] > 0
    # tokens were valid: no token traffic, no upstream apply (SPEC §7)
    assert storm["device_token_asks"] == 0
    assert storm["appserver_token_requests"] == 0
    assert storm["upstream_applies"] == 0
    assert run.count("storm:all-back") == 1
    # both workers' devices were in it
    assert sum(1 for w in run.report["workers"].values() if w["storm_lost"] > 0) == 2


async def test_fleet_shape_keepalive_and_refresh(tmp_path):
    # Tokens live 4 real seconds (120 virtual s at x30); the broker's expire notice
    # comes 30 virtual s before expiry, when the AppServer (margin 60 s) has a new one.
    devices = 10
    options = (
        scenario_stack()
        .with_appserver(token_ttl_s=120.0, refresh_margin_s=60.0, **UNTHROTTLED)
        .with_broker(expire_notice_lead=30.0)
    )
    async with embedded_environment(options, clock=ScaledClock(30.0)) as env:
        run = await _locust(
            tmp_path, FLEET, env,
            "-u", str(devices), "-r", str(devices),
            # keep-alive 1 s: a session the worker does not service between tasks is
            # dropped by the broker after 1.5 s of silence
            "--mqtt-keepalive", "1", "--fleet-hold", "6", "--setup-timeout", "60",
            processes=0,
        )  # fmt: skip
    assert run.returncode == 0, run.log[-3000:]
    _no_failures(run)
    fleet = run.report["fleet"]
    assert fleet["connected"] == fleet["connected_after_hold"] == devices
    assert fleet["lost_during_hold"] == 0
    assert fleet["seconds_to_all_connected"] > 0
    assert "broker_kb_per_connection" in fleet  # the stack runs on this machine
    # every device refreshed in session at least once (expire notice -> upload)
    assert run.count("token:upload") >= devices
    assert run.count("connection:lost") == 0


async def test_generator_out_of_descriptors_is_the_generators_failure(tmp_path):
    # 40 open files for a process that wants ~25 for itself and one per user: the
    # connects past the limit fail with EMFILE inside the generator.
    def tiny_nofile() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    async with embedded_environment(scenario_stack().with_appserver(**UNTHROTTLED)) as env:
        run = await _locust(
            tmp_path, LOCUSTFILE, env,
            "MqttTokenUser", "-u", "40", "-r", "40", "--run-time", "5s",
            "--mqtt-task-wait", "0.1,0.3",
            processes=0, preexec=tiny_nofile,
        )  # fmt: skip
    assert run.returncode == EXIT_GENERATOR_LIMIT, run.log[-3000:]
    assert "THE LOAD GENERATOR WAS THE LIMIT (descriptors" in run.log
    assert run.failed("generator:overloaded") > 0
    assert run.stats["generator:overloaded"]["Type"] == "GENERATOR"
    # not one failure counted against the broker or the AppServer
    for name, row in run.stats.items():
        if name not in ("generator:overloaded", "Aggregated"):
            assert int(row["Failure Count"]) == 0, (name, row, run.failures)
    assert all("(descriptors)" in f["Error"] for f in run.failures), run.failures
    # (no load report here: a process out of descriptors cannot open a file to write it)


HOG_LOCUSTFILE = '''
import locust  # (must stay first)

import time

from locust import User, constant, task

from scenarios.load import plugin  # noqa: F401
from scenarios.load.users import MqttTokenUser


class EventLoopHog(User):
    """Holds the worker's event loop 1.5 s at a time: CPU the generator does not have."""

    wait_time = constant(0.2)
    fixed_count = 1

    @task
    def spin(self):
        end = time.perf_counter() + 1.5
        while time.perf_counter() < end:
            pass
'''


async def test_generator_short_of_cpu_is_the_generators_failure(tmp_path):
    # The worker's loop is blocked 1.5 s of every 1.7 s: answers wait unread past the
    # 1 s timeout, keep-alives go out late. Every failure that causes is the generator's.
    locustfile = tmp_path / "hogged.py"
    locustfile.write_text(HOG_LOCUSTFILE)
    async with embedded_environment(scenario_stack().with_appserver(**UNTHROTTLED)) as env:
        run = await _locust(
            tmp_path, locustfile, env,
            "-u", "21", "-r", "21", "--run-time", "8s",
            "--mqtt-task-wait", "0.05,0.2", "--mqtt-timeout", "1", "--mqtt-keepalive", "1",
            processes=0,
        )  # fmt: skip
    assert run.returncode == EXIT_GENERATOR_LIMIT, run.log[-3000:]
    assert "THE LOAD GENERATOR WAS THE LIMIT" in run.log
    assert run.failed("generator:overloaded") > 0
    for name, row in run.stats.items():
        if name not in ("generator:overloaded", "Aggregated"):
            assert int(row["Failure Count"]) == 0, (name, row, run.failures)
    gen = run.report["generator"]
    assert gen["was_the_limit"]
    assert {"hub-lag", "cpu"} & set(gen["overload_reasons"]), gen
    assert gen["peak_lag_s"] >= 1.0


async def test_bad_option_is_a_clear_error_before_any_user(tmp_path):
    for bad, said in (("3,1", "MIN,MAX"), ("fast", "MIN,MAX")):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "-u", "1", "--run-time", "1s", "--mqtt-task-wait", bad,
            cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
        text = err.decode(errors="replace")
        assert proc.returncode == 2, text[-2000:]
        assert f"--mqtt-task-wait wants {said}" in text
        assert "Traceback" not in text
