"""The Locust file, headless, in distributed mode (``--processes 2``: a master and two
workers) against a stack this test starts: small, bounded, loopback only."""

from __future__ import annotations

import asyncio
import csv
import socket
import sys
from pathlib import Path

from scenarios.env import embedded_environment

LOCUSTFILE = Path(__file__).resolve().parents[2] / "scenarios" / "locustfile.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_locust_distributed_smoke(tmp_path):
    # The master binds '*:5557' unless told otherwise: loopback only, and a free port so
    # that two runs on one machine do not collide.
    port = str(_free_port())
    async with embedded_environment() as env:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "locust",
            "-f", str(LOCUSTFILE),
            "--headless", "--processes", "2",
            "--master-bind-host", "127.0.0.1", "--master-bind-port", port, "--master-port", port,
            "-u", "6", "-r", "6", "--run-time", "4s", "--stop-timeout", "5",
            "--host", env.endpoints.appserver_url,
            "--broker", env.endpoints.broker_url,
            "--csv", str(tmp_path / "lc"), "--only-summary",
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    log = err.decode(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert "2 workers connected" in log  # really distributed: master + 2 workers
    text = (tmp_path / "lc_stats.csv").read_text()
    rows = {r["Name"]: r for r in csv.DictReader(text.splitlines())}
    for name in ("token:apply", "connect:fresh-token", "subscribe", "publish:qos1"):
        assert int(rows[name]["Request Count"]) > 0, name
        assert int(rows[name]["Failure Count"]) == 0, (name, rows[name])
    # A connect is timed from TCP open to CONNACK: never 0 ms.
    assert float(rows["connect:fresh-token"]["Min Response Time"]) > 0
    assert rows["connect:fresh-token"]["Type"] == "MQTT"
