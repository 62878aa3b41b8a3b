"""A stack for the benchmarks: ``mqtt-token-sim up`` in a child process on free ports,
fleet-friendly (scrypt cost 4, no AppServer drain limit, WARNING logs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports free right now (bound together, so distinct)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_up(
    data_dir: Path, *, drain_rate: str = "1000000"
) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """Start ``up``; return the process and its endpoints once it serves."""
    auth_port, broker_port, app_port = free_ports(3)
    cmd = [sys.executable, "-m", "sim", "--log-level", "WARNING", "up", "--data-dir", str(data_dir)]
    cmd += ["--authserver-port", str(auth_port), "--broker-port", str(broker_port)]
    cmd += ["--appserver-port", str(app_port), "--password-hash-cost", "4"]
    cmd += ["--drain-rate", drain_rate, "--drain-burst", drain_rate]
    up = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    assert up.stdout is not None
    for line in up.stdout:
        if "SIGTERM stops it" in line:
            break
    else:
        raise SystemExit("mqtt-token-sim up did not start")
    return up, {
        "authserver": f"http://127.0.0.1:{auth_port}",
        "broker": f"mqtt://127.0.0.1:{broker_port}",
        "appserver": f"http://127.0.0.1:{app_port}",
    }
