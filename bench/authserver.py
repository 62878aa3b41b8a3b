"""Benchmark: legacy apply and query requests/s against the mock AuthServer, and the same
client against an aiohttp hello-world, in the same run (target ratio >= 0.6).

Each server runs in its own subprocess (so client and server do not share a GIL); the
client is one aiohttp session with N concurrent workers hitting one server at a time for
a fixed duration.  The hello-world answers the very same requests (same path, same body)
with a constant JSON body, without reading or checking anything.

Besides requests/s (which the shared machine's load moves a lot), each server's CPU
seconds per answered request are measured (``/proc``): the server-bound ratio, hello's
CPU per request over the mock's, is the steadier figure of the two.

    python bench/authserver.py [--duration 3] [--workers 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.shared.procstats import cpu_seconds  # noqa: E402
from sim.shared.protocol.signing import LEGACY_APPLY_SIGNED, legacy_sign  # noqa: E402

HELLO = """
import sys
from aiohttp import web

async def hello(request):
    return web.json_response({"success": True, "code": 200, "message": "ok", "tokenData": ""})

async def main():
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("listening on http://127.0.0.1:%d" % site._server.sockets[0].getsockname()[1],
          flush=True)
    import asyncio
    await asyncio.Event().wait()

import asyncio
asyncio.run(main())
"""


@dataclass(frozen=True)
class Server:
    url: str
    pid: int


@dataclass(frozen=True)
class Figure:
    """One measurement: answered requests/s and the server's CPU seconds per request."""

    rps: float
    cpu_per_request: float


@contextlib.contextmanager
def server(cmd: list[str]) -> Iterator[Server]:
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "http://" not in line:
            raise RuntimeError(f"server did not start: {line!r}")
        yield Server(line[line.index("http://") :].split()[0], proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


Request = Callable[[aiohttp.ClientSession, str], object]


async def measure(target: Server, make: Request, workers: int, duration: float) -> Figure:
    """``make`` against ``target``: N workers for ``duration`` seconds."""
    url = target.url
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(20):  # warm up connections and the server
            await make(session, url)  # type: ignore[misc]
        done = 0
        stop_at = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await make(session, url)  # type: ignore[misc]
                done += 1

        cpu0 = cpu_seconds(target.pid)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds(target.pid) - cpu0
        return Figure(done / elapsed, cpu / max(done, 1))


def apply_params() -> dict[str, str]:
    params = {
        "actions": "R,W",
        "expireTime": str(int(time.time() * 1000) + 3_600_000),
        "instanceId": "mqtt-dev",
        "resources": "bench/+,devices/#",
        "serviceName": "mq",
    }
    signature = legacy_sign({k: params[k] for k in LEGACY_APPLY_SIGNED}, "dev-sk")
    return {**params, "proxyType": "MQTT", "accessKey": "dev-ak", "signature": signature}


async def run(args: argparse.Namespace) -> None:
    apply_form = apply_params()

    async def apply(session: aiohttp.ClientSession, url: str) -> None:
        async with session.post(f"{url}/token/apply", data=apply_form) as r:
            body = await r.read()
            if r.status != 200 or b'"success": true' not in body:
                raise RuntimeError(f"apply failed: {r.status} {body[:200]!r}")

    with tempfile.TemporaryDirectory() as data_dir:
        mock_cmd = [
            sys.executable,
            "-m",
            "sim",
            "--log-level",
            "WARNING",
            "authserver",
            "--port",
            "0",
            "--data-dir",
            data_dir,
            # Throughput, not the provider's per-account limits (1,000 legacy applies/s,
            # SPEC §3b), is measured here: a limited server would answer code 429.
            "--no-rate-limits",
        ]
        hello_cmd = [sys.executable, "-c", HELLO]
        with server(mock_cmd) as mock, server(hello_cmd) as hello:
            mock_url = mock.url
            async with (
                aiohttp.ClientSession() as s,
                s.post(f"{mock_url}/token/apply", data=apply_form) as r,
            ):
                token = (await r.json())["tokenData"]
            query_params = {
                "token": token,
                "accessKey": "dev-ak",
                "signature": legacy_sign({"token": token}, "dev-sk"),
            }

            async def query(session: aiohttp.ClientSession, url: str) -> None:
                async with session.get(f"{url}/token/query", params=query_params) as r:
                    body = await r.read()
                    if r.status != 200 or b'"success": true' not in body:
                        raise RuntimeError(f"query failed: {r.status} {body[:200]!r}")

            print(
                f"workers={args.workers} duration={args.duration}s per measurement,"
                f" {args.rounds} alternating rounds, median shown"
            )
            rows = []
            for name, make in (("apply", apply), ("query", query)):
                hellos: list[Figure] = []
                mocks: list[Figure] = []
                for _ in range(args.rounds):  # alternate, so noise hits both alike
                    hellos.append(await measure(hello, make, args.workers, args.duration))
                    mocks.append(await measure(mock, make, args.workers, args.duration))
                rows.append((name, mocks, hellos))
            print(f"{'operation':<10}{'mock req/s':>12}{'hello req/s':>13}{'ratio':>8}")
            for name, mocks, hellos in rows:
                mock_rps = statistics.median(f.rps for f in mocks)
                hello_rps = statistics.median(f.rps for f in hellos)
                print(f"{name:<10}{mock_rps:>12.0f}{hello_rps:>13.0f}{mock_rps / hello_rps:>8.2f}")
            print("server CPU per request (median of the rounds):")
            for name, mocks, hellos in rows:
                mock_us = statistics.median(f.cpu_per_request for f in mocks) * 1e6
                hello_us = statistics.median(f.cpu_per_request for f in hellos) * 1e6
                print(
                    f"{name:<10} hello {hello_us:4.0f} us, mock {mock_us:4.0f} us "
                    f"-> server-bound ratio {hello_us / mock_us:.2f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=32, help="concurrent client workers")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
