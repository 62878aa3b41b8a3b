"""Clocks start at the real now unless given an epoch, and the parts of one stack agree
(docs/stack.md "Clocks"; SPEC §2)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mock_authserver.config import AuthServerConfig
from mock_authserver.runner import run_authserver
from sim.customer import fleet_cli
from sim.harness.admin import AdminClient, ClientAccount
from sim.shared.clock import ClockSpec, ManualClock, ScaledClock, clock_from_spec
from sim.shared.clockfollow import part_clock
from sim.shared.exits import CannotRun
from sim.shared.waiting import wait_until

pytestmark = pytest.mark.timeout(90)


def test_a_manual_clock_starts_at_the_real_now_unless_given_an_epoch() -> None:
    before = time.time()
    clocks = [ManualClock(), clock_from_spec(ClockSpec(mode="manual"))]
    after = time.time()
    for clock in clocks:
        assert before <= clock.now() <= after
    assert ManualClock(1_800_000_000.0).now() == 1_800_000_000.0
    assert clock_from_spec(ClockSpec(mode="manual", epoch=5.0)).now() == 5.0


@pytest.fixture
async def scaled_authserver(tmp_path: Path) -> AsyncIterator[tuple[str, ScaledClock]]:
    """An AuthServer on x60 whose virtual time is a day behind the real one."""
    clock = ScaledClock(60, epoch=time.time() - 86_400, wall0=time.time())
    config = AuthServerConfig(port=0, data_dir=tmp_path / "auth", clock=ClockSpec("scaled", 60))
    async with run_authserver(config, clock=clock) as auth:
        yield auth.url, clock


async def test_a_scaled_part_takes_the_authservers_now_as_its_epoch(
    scaled_authserver: tuple[str, ScaledClock],
) -> None:
    url, auth_clock = scaled_authserver
    async with part_clock(ClockSpec(mode="scaled", scale=60), url) as clock:
        assert isinstance(clock, ScaledClock) and clock.scale == 60
        # a day apart if it had started at its own real now; a request's latency x60 here
        assert abs(clock.now() - auth_clock.now()) < 60


async def test_a_fleet_given_an_authserver_runs_on_its_clock(
    scaled_authserver: tuple[str, ScaledClock],
) -> None:
    url, auth_clock = scaled_authserver
    args = argparse.Namespace(time_scale=None, clock="system", clock_epoch=None,
                              clock_wall0=None, authserver=url)  # fmt: skip
    async with part_clock(*fleet_cli._clock_request(args)) as clock:
        assert clock.mode == "scaled" and abs(clock.now() - auth_clock.now()) < 60


def test_a_fleet_asked_for_a_clock_reads_ups_authserver_by_default() -> None:
    args = argparse.Namespace(time_scale=None, clock="manual", clock_epoch=None,
                              clock_wall0=None, authserver=None)  # fmt: skip
    spec, url = fleet_cli._clock_request(args)
    assert spec is not None and spec.mode == "manual" and url == fleet_cli.DEFAULT_AUTHSERVER
    args.clock = "system"
    assert fleet_cli._clock_request(args) == (ClockSpec(), None)  # real time, no AuthServer


async def test_manual_needs_a_manual_authserver(
    scaled_authserver: tuple[str, ScaledClock],
) -> None:
    url, _ = scaled_authserver
    with pytest.raises(CannotRun, match="runs a scaled clock, not a manual one"):
        async with part_clock(ClockSpec(mode="manual"), url):
            pass


async def _start(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sim", "--log-level", "WARNING", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    assert line, (await proc.stderr.read()).decode() if proc.stderr else ""
    url = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert url, line
    return proc, url.group(0)


async def test_appserver_alone_follows_the_authservers_manual_clock(tmp_path: Path) -> None:
    """`appserver --clock manual` was "ambiguous option"; now it follows the AuthServer:
    advanced there, its cached token nears expiry and it applies for a new one."""
    procs = []
    try:
        auth, auth_url = await _start("authserver", "--port", "0", "--clock", "manual",
                                      "--data-dir", str(tmp_path / "auth"))  # fmt: skip
        procs.append(auth)
        app, app_url = await _start("appserver", "--port", "0", "--clock", "manual",
                                    "--authserver", auth_url, "--password-hash-cost", "4",
                                    "--data-dir", str(tmp_path / "app"))  # fmt: skip
        procs.append(app)
        async with AdminClient(auth_url, app_url) as admin:
            await admin.appserver.import_accounts(
                [ClientAccount("GID_dev@@@dev-1", "pw", ("dev/#",))]
            )
            async with aiohttp.ClientSession() as http:

                async def token() -> str:
                    auth_header = base64.b64encode(b"GID_dev@@@dev-1:pw").decode()
                    async with http.post(
                        f"{app_url}/v1/tokens",
                        json={"resources": ["dev/#"], "actions": "R,W"},
                        headers={"Authorization": f"Basic {auth_header}"},
                    ) as resp:
                        assert resp.status == 200, await resp.text()
                        return str(json.loads(await resp.text())["token"])

                first = await token()
                assert await token() == first  # cached
                await admin.authserver.advance_clock(3500)  # within the refresh margin

                async def renewed() -> bool:
                    return await token() != first

                await wait_until(renewed, timeout=20, interval=0.1,
                                 what="the AppServer to see the advanced clock")  # fmt: skip
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
