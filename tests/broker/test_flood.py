"""An unauthenticated flood leaves nothing behind (docs/broker.md "Bounded memory").

A broker process (``mqtt-token-sim broker``, following an AuthServer) is sent thousands
of CONNECTs with well-formed ~60 KB forged passwords, each one different.  Each is
refused (CONNACK 5); the broker's resident memory afterwards stays within a few MB of
what it was before the flood (after a warm-up of the same kind, so allocator pools and
buffers are already at their working size), and the refusals are counted per source
address in its metrics.

The default suite runs 2,000 logins; the long form (``pytest -m slow``) runs 20,000.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from mock_authserver.config import AuthServerConfig
from mock_authserver.runner import run_authserver
from sim.shared.clock import ManualClock

from .conftest import USER
from .rawmqtt import connect_packet

PASSWORD_BYTES = 60 * 1024
WORKERS = 8
WARM_UP = 400
RSS_SLACK_KB = 8 * 1024  # "within a few MB"


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no VmRSS")


class BrokerProcess:
    def __init__(self, proc: asyncio.subprocess.Process, port: int, metrics_url: str) -> None:
        self.proc, self.port, self.metrics_url = proc, port, metrics_url

    async def metric(self, name: str, **labels: str) -> float:
        async with aiohttp.ClientSession() as http, http.get(self.metrics_url) as resp:
            text = await resp.text()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(f"{name}{{{want}}} ") or (
                not labels and line.startswith(name + " ")
            ):
                return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture
async def broker_process(tmp_path: Path) -> AsyncIterator[BrokerProcess]:
    clock = ManualClock(1_800_000_000.0)
    async with run_authserver(AuthServerConfig(data_dir=tmp_path / "auth"), clock=clock) as auth:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sim", "broker", "--port", "0", "--metrics-port", "0",
            "--authserver", auth.url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            port = re.search(r"mqtt://127\.0\.0\.1:(\d+)", line)
            metrics = re.search(r"http://127\.0\.0\.1:\d+/metrics", line)
            assert port and metrics, line
            yield BrokerProcess(proc, int(port.group(1)), metrics.group(0))
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def flood(port: int, first: int, count: int) -> list[int]:
    """``count`` CONNECTs with distinct well-formed forged passwords; their CONNACK codes."""
    filler = ("Zm9yZ2Vk" * (PASSWORD_BYTES // 8 + 1))[:PASSWORD_BYTES]
    codes: list[int] = []
    todo = iter(range(first, first + count))

    async def worker() -> None:
        for i in todo:
            password = f"RW|{i:010d}{filler[10:]}"
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(connect_packet(f"GID_flood@@@d{i % 50}", USER, password))
                await writer.drain()
                ack = await asyncio.wait_for(reader.readexactly(4), 30)
                codes.append(ack[3])
            finally:
                writer.close()

    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return codes


async def _flood_leaves_no_trace(broker: BrokerProcess, logins: int) -> None:
    assert set(await flood(broker.port, 0, WARM_UP)) == {5}
    before = rss_kb(broker.proc.pid)
    assert set(await flood(broker.port, WARM_UP, logins)) == {5}
    after = rss_kb(broker.proc.pid)
    print(f"\nbroker RSS {before} KiB -> {after} KiB after {logins} refused 60 KB logins")
    assert after - before <= RSS_SLACK_KB, f"RSS grew {after - before} KiB over {logins} logins"
    refused = await broker.metric("mqtt_broker_refused_logins_total", source="127.0.0.1")
    assert refused == WARM_UP + logins


@pytest.mark.timeout(120)
async def test_a_flood_of_large_forged_passwords_leaves_no_trace(
    broker_process: BrokerProcess,
) -> None:
    await _flood_leaves_no_trace(broker_process, 2_000)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_twenty_thousand_large_forged_passwords_leave_no_trace(
    broker_process: BrokerProcess,
) -> None:
    await _flood_leaves_no_trace(broker_process, 20_000)
