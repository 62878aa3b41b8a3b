"""``mqtt-token-sim broker`` as its own process, beside an AuthServer process."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sim.shared.protocol import TokenType, build_token_password

from .authapi import apply_token, revoke_token
from .conftest import USER, connect_raw
from .rawmqtt import PUBLISH, RawClient

pytestmark = pytest.mark.timeout(60)


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    assert line, (await proc.stderr.read()).decode() if proc.stderr else "no output"
    return proc, line


async def _stop(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 15)


@pytest.fixture
async def procs() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_broker_process_auth_off_exits_0_on_sigterm(
    procs: list[asyncio.subprocess.Process],
) -> None:
    proc, line = await _start("broker", "--port", "0", "--auth", "off")
    procs.append(proc)
    port = int(re.search(r"mqtt://127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
    client, rc, _ = await RawClient.connected(port, "anything")
    assert rc == 0
    assert await _stop(proc) == 0
    assert await client.closed()


async def test_broker_process_needs_an_authserver(procs: list[asyncio.subprocess.Process]) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim", "broker", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    procs.append(proc)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert b"--authserver" in err and b"Traceback" not in err


async def test_revocation_across_processes(
    tmp_path: Path, procs: list[asyncio.subprocess.Process]
) -> None:
    auth, line = await _start("authserver", "--port", "0", "--data-dir", str(tmp_path / "auth"))
    procs.append(auth)
    auth_url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)  # type: ignore[union-attr]
    # A 30 s long poll: the notice coming sooner shows the open poll was answered at once.
    broker, line = await _start(
        "broker", "--port", "0", "--authserver", auth_url, "--feed-poll-timeout", "30"
    )
    procs.append(broker)
    port = int(re.search(r"mqtt://127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        token = await apply_token(http, auth_url, int((time.time() + 3600) * 1000), "R,W", "dev/#")
        client = await connect_raw(
            port, "GID_test@@@one", build_token_password({TokenType.RW: token})
        )
        assert await client.subscribe(("dev/b", 0)) == [0]  # a dev parent topic (bootstrap)
        await revoke_token(http, auth_url, token)
        notice = await client.expect(PUBLISH, within=20)
        assert json.loads(notice.payload) == {"code": 3, "type": "RW"}
        assert await client.closed()
    _, rc, _ = await RawClient.connected(
        port, "GID_test@@@one", USER, build_token_password({TokenType.RW: token})
    )
    assert rc == 5
    assert await _stop(broker) == 0
    assert await _stop(auth) == 0


async def test_manual_clock_follows_the_authservers(
    tmp_path: Path, procs: list[asyncio.subprocess.Process]
) -> None:
    auth, line = await _start(
        "authserver", "--port", "0", "--data-dir", str(tmp_path / "auth"), "--clock", "manual",
        "--clock-epoch", "1800000000",
    )  # fmt: skip
    procs.append(auth)
    auth_url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)  # type: ignore[union-attr]
    broker, line = await _start(
        "broker", "--port", "0", "--authserver", auth_url, "--clock", "manual"
    )
    procs.append(broker)
    port = int(re.search(r"mqtt://127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        token = await apply_token(http, auth_url, (1_800_000_000 + 600) * 1000, "R", "a/#")
        client = await connect_raw(
            port, "GID_test@@@man", build_token_password({TokenType.R: token})
        )
        async with http.post(f"{auth_url}/admin/clock/advance", json={"seconds": 600}) as resp:
            assert resp.status == 200
        expire = await client.expect(PUBLISH, within=15)
        invalid = await client.expect(PUBLISH, within=15)
        assert expire.topic == "$SYS/tokenExpireNotice"
        assert (invalid.topic, json.loads(invalid.payload)["code"]) == (
            "$SYS/tokenInvalidNotice",
            2,
        )
        assert await client.closed()
    assert await _stop(broker) == 0
    assert await _stop(auth) == 0
