"""How many token-aware SDK clients does one process hold? (docs/sdk.md: target >= 5,000)

Starts ``mqtt-token-sim up`` in a child process (fleet-friendly: scrypt cost 4, no
AppServer drain limit), then, each in its own process so that memory figures do not mix:

* baseline -- N bare MQTT connections through the SDK's own transport
  (``sim.customer.client.transport.Connection``, gmqtt) with one shared token: no AppServer, no
  store, no refresh timer, no events;
* fleet, first start -- ``Fleet(N)``: Faker accounts created in bulk, N AppServer token
  requests, tokens persisted, N connects;
* fleet, restart -- the same fleet again: every token from the store (0 requests).

For each: seconds until all connected, KB of RSS per client, CPU ms per client to get
there, and the idle CPU share of one core over ``--idle`` seconds; ratios against the
baseline.

    python bench/fleet.py --clients 5000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _stack import start_up

from sim.shared.limits import raise_nofile_limit
from sim.shared.procstats import cpu_seconds, rss_kb


async def _baseline(n: int, app: str, broker: str, idle: float) -> dict[str, float]:
    import aiohttp

    from sim.customer.client.transport import Connection, parse_broker_url
    from sim.harness.admin import AdminClient, ClientAccount

    async with aiohttp.ClientSession() as http:
        async with AdminClient(None, app, http=http) as admin:
            owner = ClientAccount("GID_bench@@@owner", "bench-secret", ("bench/#",))
            await admin.appserver.import_accounts([owner])
        auth = base64.b64encode(b"GID_bench@@@owner:bench-secret").decode()
        async with http.post(
            f"{app}/v1/tokens",
            json={"resources": ["bench/#"], "actions": "R,W"},
            headers={"Authorization": f"Basic {auth}"},
        ) as r:
            token = await r.json()
    address = parse_broker_url(broker)
    sem = asyncio.Semaphore(200)
    rss0, cpu0, t0 = rss_kb(), cpu_seconds(), time.perf_counter()

    async def one(i: int) -> Connection:
        async with sem:
            c = Connection(f"GID_bench@@@raw-{i}", on_message=lambda _m: None)
            await c.open(address, username=token["username"], password=token["password"])
            return c

    conns = await asyncio.gather(*(one(i) for i in range(n)))
    out = _figures(n, t0, rss0, cpu0)
    cpu1 = cpu_seconds()
    await asyncio.sleep(idle)  # the sleep IS the measurement of the idle cost
    out["idle_cpu_pct"] = (cpu_seconds() - cpu1) / idle * 100
    for i in range(0, n, 500):
        await asyncio.gather(*(c.close() for c in conns[i : i + 500]))
    return out


async def _fleet(n: int, app: str, broker: str, store: str, idle: float) -> dict[str, float]:
    from sim.customer.fleet import Fleet, FleetConfig
    from sim.shared.clock import SystemClock

    cfg = FleetConfig(clients=n, appserver_url=app, broker_url=broker, store_dir=Path(store))
    fleet = Fleet(cfg, clock=SystemClock())
    rss0, cpu0, t0 = rss_kb(), cpu_seconds(), time.perf_counter()
    await fleet.start()
    await fleet.wait_connected()
    if fleet.connected_count != n:
        raise SystemExit(f"only {fleet.connected_count}/{n} connected: {fleet.states()}")
    out = _figures(n, t0, rss0, cpu0)
    cpu1 = cpu_seconds()
    await asyncio.sleep(idle)
    out["idle_cpu_pct"] = (cpu_seconds() - cpu1) / idle * 100
    totals = fleet.counters()
    out["appserver_requests"] = totals.token_requests
    out["tokens_from_store"] = totals.tokens_from_store
    await fleet.close()
    return out


def _figures(n: int, t0: float, rss0: int, cpu0: float) -> dict[str, float]:
    return {
        "all_connected_s": time.perf_counter() - t0,
        "kb_per_client": (rss_kb() - rss0) / n,
        "cpu_ms_per_client": (cpu_seconds() - cpu0) * 1000 / n,
    }


def _worker(args: argparse.Namespace) -> int:
    raise_nofile_limit()
    # Import the libraries before the baseline RSS so that code is not counted per client.
    import aiohttp  # noqa: F401
    import faker  # noqa: F401

    import sim.customer.fleet  # noqa: F401

    if args.worker == "baseline":
        out = asyncio.run(_baseline(args.clients, args.app, args.broker, args.idle))
    else:
        out = asyncio.run(_fleet(args.clients, args.app, args.broker, args.store, args.idle))
    print(json.dumps(out))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--idle", type=float, default=10.0, help="idle seconds measured")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--app", help=argparse.SUPPRESS)
    p.add_argument("--broker", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return _worker(args)

    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    up, ends = start_up(tmp)
    results: dict[str, dict[str, Any]] = {}
    try:
        app, broker = ends["appserver"], ends["broker"]
        for name, worker in (
            ("baseline", "baseline"),
            ("fleet first start", "fleet"),
            ("fleet restart", "fleet"),
        ):
            cmd = [sys.executable, __file__, "--worker", worker, "--clients", str(args.clients)]
            cmd += ["--idle", str(args.idle), "--app", app, "--broker", broker]
            cmd += ["--store", str(tmp / "fleet-tokens")]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                print(f"{name}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
                return 1
            results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        up.terminate()
        up.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)

    base = results["baseline"]
    cols = ("all_connected_s", "kb_per_client", "cpu_ms_per_client", "idle_cpu_pct")
    print(f"{args.clients} clients in one process; stack (up) in another; 2 shared cores")
    print(f"{'':18}" + "".join(f"{c:>28}" for c in cols) + f"{'AppServer asks':>16}")
    for name, r in results.items():
        cells = "".join(
            f"{r[c]:>16.2f} ({r[c] / base[c] if base[c] else 0:5.2f}x)   " for c in cols
        )
        print(f"{name:18}{cells}{r.get('appserver_requests', '-'):>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
