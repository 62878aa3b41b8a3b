"""`mqtt-token-sim up` as a subprocess, used by a real MQTT client (paho), stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from base64 import b64encode
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

pytestmark = pytest.mark.timeout(90)


class Up:
    """``mqtt-token-sim up`` on free ports (0: each part binds its own, and the banner
    says which; ports picked beforehand could be taken by another process meanwhile)."""

    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        log_level: str = "WARNING",
        split_stderr: bool = False,
        hash_cost: str | None = "4",
    ):
        self.auth_port = self.broker_port = self.app_port = self.status_port = 0
        cmd = [sys.executable, "-m", "sim", "--log-level", log_level, "up"]
        cmd += ["--data-dir", str(data_dir)]
        cmd += ["--password-hash-cost", hash_cost] if hash_cost else []
        cmd += ["--authserver-port", "0", "--broker-port", "0", "--appserver-port", "0"]
        cmd += ["--status-port", "0", *extra]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if split_stderr else subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.errors: list[str] = []  # stderr, when split_stderr
        threading.Thread(target=self._pump, daemon=True).start()
        self._errors_done = threading.Thread(target=self._pump_errors, daemon=True)
        if split_stderr:
            self._errors_done.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def _pump_errors(self) -> None:
        assert self.proc.stderr is not None
        self.errors.extend(self.proc.stderr)

    def wait_for(self, text: str, within: float = 30) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self._note_port(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} in output:\n{''.join(self.output)}")

    def _note_port(self, line: str) -> None:
        """The banner's endpoint lines: ``AuthServer  http://127.0.0.1:PORT ...``."""
        words = line.split()
        attr = {
            "AuthServer": "auth_port",
            "Broker": "broker_port",
            "AppServer": "app_port",
            "status": "status_port",
        }
        if len(words) >= 2 and words[0] in attr and "://" in words[1]:
            port = urllib.parse.urlsplit(words[1]).port
            setattr(self, attr[words[0]], port)

    def http(self, port: int, path: str, body: object | None = None, auth: str | None = None):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
        if body is not None:
            req.data = json.dumps(body).encode()
            req.add_header("Content-Type", "application/json")
        if auth:
            req.add_header("Authorization", "Basic " + b64encode(auth.encode()).decode())
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def token(self) -> dict:
        return self.http(
            self.app_port,
            "/v1/tokens",
            {"resources": ["dev/#"], "actions": "R,W"},
            auth="GID_dev@@@dev-1:dev-secret",
        )

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def stderr_text(self) -> str:
        """All of stderr (split_stderr), once the process has ended."""
        assert self.proc.poll() is not None
        self._errors_done.join(10)
        return "".join(self.errors)


def test_up_serves_a_real_client_expires_it_on_advance_and_stops_on_sigterm(tmp_path: Path):
    up = Up(tmp_path / "data", "--clock", "manual")
    try:
        up.wait_for("Ctrl-C or SIGTERM")
        banner = "".join(up.output)
        for text in (f"mqtt://127.0.0.1:{up.broker_port}", "dev-ak", "dev-sk", "GID_dev@@@dev-1"):
            assert text in banner
        token = up.token()
        assert token["username"] == "Token|dev-ak|mqtt-dev"

        got: queue.Queue[tuple[str, bytes]] = queue.Queue()
        gone = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="GID_dev@@@dev-1")
        c.username_pw_set(token["username"], token["password"])
        c.on_message = lambda _c, _u, m: got.put((m.topic, m.payload))
        c.on_disconnect = lambda *_a: gone.set()
        c.connect("127.0.0.1", up.broker_port, keepalive=60)
        c.loop_start()
        try:
            result, _ = c.subscribe("dev/#", qos=1)
            assert result == mqtt.MQTT_ERR_SUCCESS
            deadline = time.monotonic() + 10
            while True:  # the SUBACK may trail the CONNACK: publish until it comes back
                c.publish("dev/hello", b"world", qos=1).wait_for_publish(5)
                try:
                    topic, payload = got.get(timeout=0.5)
                    break
                except queue.Empty:
                    assert time.monotonic() < deadline, "no message back"
            assert (topic, payload) == ("dev/hello", b"world")
            # the manual clock of every part, driven from outside: the token expires
            now = up.http(up.auth_port, "/admin/clock")["now_ms"]
            up.http(up.auth_port, "/admin/clock/advance", {"seconds": 3601})
            assert up.http(up.auth_port, "/admin/clock")["now_ms"] >= now + 3_601_000
            assert gone.wait(10), "the broker did not drop the expired client"
            topics = set()
            while not got.empty():
                topics.add(got.get()[0])
            # both notices reached the client without a subscription (SPEC §4)
            assert {"$SYS/tokenExpireNotice", "$SYS/tokenInvalidNotice"} <= topics
        finally:
            c.loop_stop()
        assert up.stop() == 0
        assert "stopped" in "".join(up.output)
    finally:
        if up.proc.poll() is None:
            up.proc.kill()

    # data flushed: a fresh process on the same data dir hands out the same cached token
    again = Up(tmp_path / "data", "--clock", "manual")
    try:
        again.wait_for("Ctrl-C or SIGTERM")
        assert again.token()["token"] == token["token"]
        assert again.stop() == 0
    finally:
        if again.proc.poll() is None:
            again.proc.kill()


def test_up_rejects_bad_flags(tmp_path: Path):
    flags = ["--data-dir", str(tmp_path), "--clock", "manual", "--time-scale", "60"]
    proc = subprocess.run(
        [sys.executable, "-m", "sim", "up", *flags],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "exclude each other" in proc.stderr


def test_fleet_cli_against_up(tmp_path: Path):
    up = Up(tmp_path / "data", "--drain-rate", "1000", "--drain-burst", "1000")
    try:
        up.wait_for("Ctrl-C or SIGTERM")
        cmd = [sys.executable, "-m", "sim", "--log-level", "WARNING", "fleet", "--clients", "25"]
        cmd += ["--duration", "1", "--json", "--store-dir", str(tmp_path / "tokens")]
        cmd += ["--appserver", f"http://127.0.0.1:{up.app_port}"]
        cmd += ["--broker", f"mqtt://127.0.0.1:{up.broker_port}"]
        cmd += ["--authserver", f"http://127.0.0.1:{up.auth_port}"]
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stderr
        report = json.loads(first.stdout.strip().splitlines()[-1])
        assert report["connected"] == 25
        assert report["counters"]["token_requests"] == 25
        assert "connected 25/25" in first.stderr  # the progress line
        # a second run reuses every stored token: zero AppServer requests
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        report = json.loads(second.stdout.strip().splitlines()[-1])
        assert report["connected"] == 25
        assert report["counters"]["token_requests"] == 0
        assert report["counters"]["tokens_from_store"] == 25
        assert up.stop() == 0
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
