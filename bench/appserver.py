"""Benchmark of the reference AppServer (docs/appserver.md), baselines measured in the same run.

1. Cache-hit ``POST /v1/tokens`` requests/s against an aiohttp hello-world answering the
   same requests (same path, headers and body; it only reads the body and returns a
   constant JSON) -- target ratio >= 0.5.  The account's secret is hashed with the
   production scrypt cost (2**14), so the figure includes credential checking through
   the verified-credential cache.
2. 1,000 concurrent identical asks on a cold cache, each on a connection of its own
   opened for the storm -> upstream applies, counted by the mock AuthServer's own
   metrics -- target 1; and the slow secret hashes they caused, counted by the
   AppServer's metrics -- target 1 (concurrent identical checks share one).
3. Secret verification: one scrypt verification vs one verified-cache hit.

Each server runs in its own subprocess (AuthServer and AppServer together in one); the
load is one aiohttp session with N concurrent workers for a fixed duration.

    python bench/appserver.py [--duration 8] [--rounds 4] [--workers 32] [--asks 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.harness.admin import AdminClient  # noqa: E402
from sim.shared.procstats import cpu_seconds  # noqa: E402

HELLO = """
import asyncio
from aiohttp import web

async def hello(request):
    await request.read()
    return web.json_response({"hello": "world"})

async def main():
    app = web.Application()
    app.router.add_post("/v1/tokens", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print("listening on http://127.0.0.1:%d" % runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""

STACK = """
import asyncio, sys
from sim.harness.stack import StackConfig, run_stack
from sim.shared.shutdown import stop_requested

async def main(data_dir):
    config = StackConfig(data_dir=data_dir, without={"broker"}, dev_client=False)
    async with stop_requested() as stop, run_stack(config.with_free_ports()) as stack:
        print("listening on %s %s" % (stack.appserver_url, stack.authserver_url), flush=True)
        await stop.wait()

asyncio.run(main(sys.argv[1]))
"""

CLIENT_ID, SECRET = "GID_bench@@@d1", "bench-secret"
GRANTS = [{"resources": ["bench/#"], "actions": "R,W"}]
HEADERS = {"Authorization": "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()}
BODY = {"resources": ["bench/d1/up", "bench/d1/down"], "actions": "R,W"}


@contextlib.contextmanager
def serve(code: str, *args: str) -> Iterator[tuple[int, list[str]]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, cwd=ROOT, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"server did not start: {line!r}")
        yield proc.pid, line.split()[2:]
    finally:
        proc.terminate()
        proc.wait(10)


async def load(url: str, duration: float, workers: int, pid: int) -> tuple[float, int, float]:
    """Requests/s of 200 answers, the count of other answers, and the server's CPU
    seconds per answered request."""
    done = errors = 0
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(20):  # warm up: connections, caches
            async with http.post(f"{url}/v1/tokens", json=BODY, headers=HEADERS) as resp:
                await resp.read()
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < deadline:
                async with http.post(f"{url}/v1/tokens", json=BODY, headers=HEADERS) as resp:
                    await resp.read()
                    if resp.status == 200:
                        done += 1
                    else:
                        errors += 1

        cpu0 = cpu_seconds(pid)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(pid) - cpu0
    return done / elapsed, errors, cpu / max(done, 1)


async def put_account(admin: AdminClient) -> None:
    await admin.appserver.put_account(CLIENT_ID, secret=SECRET, grants=GRANTS)


async def applies(admin: AdminClient) -> float:
    metrics = await admin.authserver.metrics()
    return metrics.total("mqtt_authserver_requests_total", operation="apply")


async def slow_hashes(admin: AdminClient) -> float:
    metrics = await admin.appserver.metrics()
    return metrics.total("appserver_secret_verifications")


async def storm(url: str, auth_url: str, asks: int) -> tuple[float, float, dict[int, int], float]:
    """Upstream applies, slow secret hashes, statuses and seconds of ``asks`` concurrent
    identical asks.  The asks' session has no connection open yet (the admin calls use
    the admin client's own), so no ask gets a head start on a warm connection: they
    reach the AppServer as one burst, as a fleet's first asks do."""
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        AdminClient(auth_url, url) as admin,
    ):
        await put_account(admin)
        before = await applies(admin)
        hashes_before = await slow_hashes(admin)
        body = {"resources": ["bench/storm"], "actions": "R"}

        async def ask() -> int:
            async with http.post(f"{url}/v1/tokens", json=body, headers=HEADERS) as resp:
                await resp.read()
                return resp.status

        t0 = time.perf_counter()
        statuses = await asyncio.gather(*(ask() for _ in range(asks)))
        elapsed = time.perf_counter() - t0
        counts: dict[int, int] = {}
        for s in statuses:
            counts[s] = counts.get(s, 0) + 1
        hashes = await slow_hashes(admin) - hashes_before
        return await applies(admin) - before, hashes, counts, elapsed


def verification() -> tuple[float, float]:
    from sim.customer.appserver.passwords import VerifiedCache, hash_secret, verify_secret

    encoded = hash_secret(SECRET, 14)
    n = 10
    t0 = time.perf_counter()
    for _ in range(n):
        verify_secret(SECRET, encoded)
    slow = (time.perf_counter() - t0) / n
    cache = VerifiedCache(60, 1000)
    cache.remember(CLIENT_ID, SECRET, encoded, 0)
    n = 100_000
    t0 = time.perf_counter()
    for _ in range(n):
        cache.check(CLIENT_ID, SECRET, encoded, 1)
    return slow, (time.perf_counter() - t0) / n


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per server")
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--asks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per server")
    args = parser.parse_args()

    # Both servers up at once; rounds alternate so that the shared machine's noise
    # falls on both alike; the medians are compared.
    hello_runs: list[float] = []
    app_runs: list[float] = []
    hello_cpu: list[float] = []
    app_cpu: list[float] = []
    hello_err = app_err = 0
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(HELLO) as (hello_pid, (hello_url,)),
        serve(STACK, tmp) as (app_pid, (url, _)),
    ):
        async with AdminClient(None, url) as admin:
            await put_account(admin)
        per_round = args.duration / args.rounds
        for _ in range(args.rounds):
            rps, err, cpu = await load(hello_url, per_round, args.workers, hello_pid)
            hello_runs.append(rps)
            hello_cpu.append(cpu)
            hello_err += err
            rps, err, cpu = await load(url, per_round, args.workers, app_pid)
            app_runs.append(rps)
            app_cpu.append(cpu)
            app_err += err
    hello_rps, app_rps = statistics.median(hello_runs), statistics.median(app_runs)
    with tempfile.TemporaryDirectory() as tmp, serve(STACK, tmp) as (_, (url, auth_url)):
        upstream, hashes, statuses, storm_s = await storm(url, auth_url, args.asks)
    slow, fast = verification()

    ratio = app_rps / hello_rps
    hello_us = statistics.median(hello_cpu) * 1e6
    app_us = statistics.median(app_cpu) * 1e6
    print(f"workers={args.workers} duration={args.duration:g}s per server, {args.rounds} rounds")
    print(
        f"hello rounds {[round(r) for r in hello_runs]}  app rounds {[round(r) for r in app_runs]}"
    )
    print(f"aiohttp hello-world          {hello_rps:9.0f} req/s   (non-200: {hello_err})")
    print(f"AppServer cache-hit tokens   {app_rps:9.0f} req/s   (non-200: {app_err})")
    print(
        f"ratio                        {ratio:9.2f}         target >= 0.5  "
        f"{'OK' if ratio >= 0.5 else 'BELOW TARGET'}"
    )
    print(
        f"server CPU per request: hello {hello_us:.0f} us, AppServer {app_us:.0f} us "
        f"-> server-bound ratio {hello_us / app_us:.2f}"
    )
    print(
        f"{args.asks} concurrent identical asks -> {upstream:.0f} upstream apply(s) "
        f"in {storm_s:.2f}s, statuses {statuses}   target 1  "
        f"{'OK' if upstream == 1 else 'ABOVE TARGET'}"
    )
    print(
        f"{args.asks} concurrent identical asks -> {hashes:.0f} slow secret hash(es)   "
        f"target 1  {'OK' if hashes == 1 else 'ABOVE TARGET'}"
    )
    print(
        f"secret verification: scrypt 2**14 {slow * 1e3:.1f} ms, cached {fast * 1e6:.2f} us "
        f"({slow / fast:,.0f}x)"
    )


if __name__ == "__main__":
    asyncio.run(main())
