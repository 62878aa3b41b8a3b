"""The AppServer as a process: ``python -m sim appserver ...``.  A token acknowledged to
a client survives ``kill -9``; SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp

from sim.harness.admin import AdminClient
from sim.shared.clock import SystemClock

from .conftest import basic
from .stack import authserver


async def start(auth_url: str, data_dir: Path) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim",
        "--log-level",
        "WARNING",
        "appserver",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--authserver",
        auth_url,
        "--access-key",
        "dev-ak",
        "--secret-key",
        "dev-sk",
        "--instance",
        "mqtt-dev",
        "--data-dir",
        str(data_dir),
        "--password-hash-cost",
        "4",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.startswith(b"appserver listening on http://127.0.0.1:"), line
    return proc, line.decode().split()[-1]


async def test_token_survives_kill_9_and_sigterm_exits_0(tmp_path: Path) -> None:
    async with (
        authserver(SystemClock(), tmp_path / "auth") as auth,
        aiohttp.ClientSession() as http,
    ):
        data_dir = tmp_path / "app"
        proc, url = await start(auth.url, data_dir)
        try:
            admin = AdminClient(auth.url, url, http=http)
            await admin.appserver.put_account(
                "c1", secret="pw", grants=[{"resources": ["a/#"], "actions": "R,W"}]
            )
            async with http.post(
                f"{url}/v1/tokens",
                headers=basic("c1", "pw"),
                json={"resources": ["a/b"], "actions": "R,W"},
            ) as resp:
                assert resp.status == 200
                first = await resp.json()
        finally:
            proc.kill()  # SIGKILL: no shutdown code runs
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL

        proc, url = await start(auth.url, data_dir)
        try:
            async with http.post(
                f"{url}/v1/tokens",
                headers=basic("c1", "pw"),
                json={"resources": ["a/b"], "actions": "R,W"},
            ) as resp:
                assert resp.status == 200
                again = await resp.json()
            assert again["token"] == first["token"] and again["stale"] is False
            metrics = await AdminClient(auth.url, http=http).authserver.metrics()
            assert metrics.total("mqtt_authserver_requests_total", operation="apply") == 1
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_cli_rejects_invalid_configuration(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim",
        "appserver",
        "--token-ttl",
        "10",
        "--data-dir",
        str(tmp_path),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"token_ttl_s" in err
