"""``mqtt-token-sim fleet`` against ``up``: progress at once, a summary that reads, no
line per client at INFO, and (slow) the 1,000 clients a default ``up`` must carry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.stack.test_up import Up

from .conftest import cli


def _fleet(up: Up, tmp_path: Path, clients: int, *extra: str, timeout: float = 90):
    return cli(
        "--log-level", "INFO", "fleet", "--clients", str(clients),
        "--store-dir", str(tmp_path / "tokens"),
        "--appserver", f"http://127.0.0.1:{up.app_port}",
        "--broker", f"mqtt://127.0.0.1:{up.broker_port}", *extra,
        timeout=timeout,
    )  # fmt: skip


@pytest.mark.timeout(120)
def test_fleet_shows_progress_at_once_and_a_summary_that_reads(tmp_path: Path) -> None:
    up = Up(tmp_path / "data")
    try:
        up.wait_for("Ctrl-C or SIGTERM")
        proc = _fleet(up, tmp_path, 20, "--duration", "1")
        assert proc.returncode == 0, proc.stderr
        err = proc.stderr.splitlines()
        assert err[0].startswith("fleet: 20 clients, AppServer http://127.0.0.1:")
        assert err[1].startswith("[   0.0s] ")  # the first progress line, at once
        # INFO is what happened, not each client's connection (gmqtt narrates two each)
        assert not [line for line in err if "gmqtt" in line or "CONNACK" in line], err
        out = proc.stdout
        assert "None" not in out and "all connected after" in out
        assert "token_request_failures  0" in out or "token_request_failures 0" in out
        assert up.stop() == 0
    finally:
        if up.proc.poll() is None:
            up.proc.kill()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_default_up_carries_a_fleet_of_1000(tmp_path: Path) -> None:
    """``fleet --clients 1000`` against ``up`` with its own defaults (hash cost, drain):
    every client connected, no token request refused (it was 555/1000 after 29 s)."""
    up = Up(tmp_path / "data", hash_cost=None)
    try:
        up.wait_for("Ctrl-C or SIGTERM")
        proc = _fleet(up, tmp_path, 1000, "--duration", "60", "--json", timeout=200)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert result["connected"] == 1000
        assert result["counters"]["token_request_failures"] == 0
        assert up.stop() == 0
    finally:
        if up.proc.poll() is None:
            up.proc.kill()
