"""What ``mqtt-token-sim up`` tells and serves a newcomer: the client-id rule, the status
port, the fidelity report on exit, the profile, the AuthServer's rate limits, a clock
that starts at the real now, and an INFO log that does not narrate each connection."""

from __future__ import annotations

import json
import queue
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from sim.shared.protocol.signing import LEGACY_APPLY_SIGNED, legacy_sign
from tests.stack.test_up import Up

pytestmark = pytest.mark.timeout(120)


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _connect(up: Up, client_id: str, token: dict) -> tuple[mqtt.Client, int]:
    """A paho client; returns it (connected when the code is 0) and the CONNACK code."""
    codes: queue.Queue[int] = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.username_pw_set(token["username"], token["password"])
    c.on_connect = lambda _c, _u, _f, rc, _p: codes.put(rc.value)
    c.connect("127.0.0.1", up.broker_port, keepalive=60)
    c.loop_start()
    return c, codes.get(timeout=10)


def _stopped(up: Up) -> str:
    assert up.stop() == 0
    return "".join(up.output)


def test_up_banner_status_port_fidelity_on_exit_and_a_quiet_info_log(tmp_path: Path) -> None:
    up = Up(tmp_path / "data", log_level="INFO", split_stderr=True)
    try:
        up.wait_for("Ctrl-C or SIGTERM")
        banner = "".join(up.output)
        assert "GID_ or GID-" in banner and "@@@" in banner and "CONNACK 2" in banner
        assert "(provider profile)" in banner
        # the combined health, the broker's metrics and fidelity on the status port
        status, body = _get(up.status_port, "/health")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok", health
        assert set(health["parts"]) == {"authserver", "broker", "appserver"}
        token = up.token()
        clients = []
        for i in range(5):
            c, rc = _connect(up, f"GID_dev@@@dev-{i}", token)
            assert rc == 0
            clients.append(c)
        # a retained publish: the provider keeps none (SPEC §4a), the report says so
        clients[0].publish("dev/state", b"on", qos=1, retain=True).wait_for_publish(5)
        for _ in range(3):  # three clients of plain MQTT habits: no GID_ id
            c, rc = _connect(up, "mosquitto-sub-1234", token)
            assert rc == 133  # paho's name for CONNACK 2: "Client identifier not valid"
            c.loop_stop()
        status, metrics = _get(up.status_port, "/metrics")
        assert status == 200 and b'mqtt_broker_connects_total{outcome="client_id"} 3.0' in metrics
        status, body = _get(up.status_port, "/fidelity")
        assert status == 200 and json.loads(body)["totals"] == {"retain": 1}
        for c in clients:
            c.disconnect()
            c.loop_stop()
        out = _stopped(up)
        assert "retain x1" in out and "GID_dev@@@dev-0" in out  # the fidelity report
        log = up.stderr_text()
        # one WARNING for three refusals of one kind, saying the rule
        refused = [line for line in log.splitlines() if "refused client id" in line]
        assert len(refused) == 1, log
        assert "WARNING" in refused[0] and "GID_ or GID-" in refused[0]
        # INFO tells what happened, not each of 8 connections
        assert "amqtt" not in log and "transitions" not in log, log
        assert len(log.splitlines()) < 8, log
    finally:
        if up.proc.poll() is None:
            up.proc.kill()


def test_up_says_nothing_was_used_when_nothing_was(tmp_path: Path) -> None:
    up = Up(tmp_path / "data")
    try:
        up.wait_for("Ctrl-C or SIGTERM")
        assert "nothing the provider lacks was used" in _stopped(up)
    finally:
        if up.proc.poll() is None:
            up.proc.kill()


def test_up_profile_mqtt_keeps_retained_messages(tmp_path: Path) -> None:
    up = Up(tmp_path / "data", "--profile", "mqtt")
    try:
        up.wait_for("Ctrl-C or SIGTERM")
        assert "(mqtt profile)" in "".join(up.output)
        token = up.token()
        first, rc = _connect(up, "GID_dev@@@dev-1", token)
        assert rc == 0
        first.publish("dev/state", b"on", qos=1, retain=True).wait_for_publish(5)
        got: queue.Queue[bytes] = queue.Queue()
        second, rc = _connect(up, "GID_dev@@@dev-2", token)
        second.on_message = lambda _c, _u, m: got.put(m.payload)
        second.subscribe("dev/#", qos=1)
        assert got.get(timeout=10) == b"on"  # stored and sent on SUBSCRIBE
        for c in (first, second):
            c.disconnect()
            c.loop_stop()
        assert up.stop() == 0
    finally:
        if up.proc.poll() is None:
            up.proc.kill()


def _legacy_apply(port: int, resources: str) -> tuple[int, dict]:
    params = {
        "actions": "R,W", "expireTime": str(int(time.time() * 1000) + 600_000),
        "instanceId": "mqtt-dev", "resources": resources, "serviceName": "mq",
        "proxyType": "MQTT", "accessKey": "dev-ak",
    }  # fmt: skip
    params["signature"] = legacy_sign({k: params[k] for k in LEGACY_APPLY_SIGNED}, "dev-sk")
    body = urllib.parse.urlencode(params).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/token/apply", data=body)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_up_sets_the_authservers_rate_limits(tmp_path: Path) -> None:
    up = Up(tmp_path / "data", "--limit-legacy-apply", "1/min")
    try:
        up.wait_for("Ctrl-C or SIGTERM")
        status, _ = _legacy_apply(up.auth_port, "dev/a")
        assert status == 200
        status, body = _legacy_apply(up.auth_port, "dev/b")
        assert status == 429 and body["success"] is False, body
        assert up.stop() == 0
    finally:
        if up.proc.poll() is None:
            up.proc.kill()


def test_up_manual_clock_starts_at_the_real_now(tmp_path: Path) -> None:
    """An official demo computes expireTime from the real clock: a stack in 2027 refused
    it (code 400).  Now the clock starts at the real now."""
    before = time.time()
    up = Up(tmp_path / "data", "--clock", "manual")
    try:
        up.wait_for("Ctrl-C or SIGTERM")
        now = up.http(up.auth_port, "/admin/clock")["now_ms"] / 1000
        assert before <= now <= time.time()  # a manual clock stands still since start
        status, body = _legacy_apply(up.auth_port, "dev/a")  # expireTime: real now + 10 min
        assert status == 200 and body["success"], body
        assert up.stop() == 0
    finally:
        if up.proc.poll() is None:
            up.proc.kill()


async def test_health_names_the_part_that_is_down(tmp_path: Path) -> None:
    import aiohttp

    from sim.harness.stack import StackConfig, run_stack
    from sim.harness.status import serve_status

    config = StackConfig(data_dir=None).with_free_ports().with_appserver(password_hash_cost=4)
    async with (
        run_stack(config) as stack,
        serve_status(stack, "127.0.0.1", 0) as url,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{url}/health") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
        async with http.get(f"{url}/audit") as resp:
            assert resp.status == 200 and (await resp.json())["clean"] is True
        await stack.stop("appserver")
        async with http.get(f"{url}/health") as resp:
            doc = await resp.json()
        assert resp.status == 503 and doc["status"] == "degraded"
        assert doc["parts"]["appserver"]["status"] == "down"
        assert doc["parts"]["broker"]["status"] == "ok"
        await stack.stop("broker")
        async with http.get(f"{url}/metrics") as resp:
            assert resp.status == 404  # no broker in this process any more
