"""``mqtt-token-sim fleet --clients N --duration S``: a fleet against a running stack.

Targets ``mqtt-token-sim up`` on its default ports, or any endpoints given by
``--appserver``/``--broker`` (a staging stack, the provider).  With ``--authserver`` the
fleet reads that AuthServer's clock (``GET /admin/clock``) and runs on the same scaled
time.  Prints a live progress line, then a summary (``--json`` for a machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from sim.shared.limits import raise_nofile_limit
from sim.shared.procstats import cpu_seconds, rss_kb
from sim.shared.shutdown import StopRequest, stop_requested
from sim.shared.stats import percentile

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, required=True, help="how many clients")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="real seconds to run (0: until Ctrl-C)"
    )
    parser.add_argument("--appserver", default="http://127.0.0.1:18081", metavar="URL")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL")
    parser.add_argument(
        "--authserver", metavar="URL", help="follow this AuthServer's clock (scaled stacks)"
    )
    parser.add_argument("--mode", choices=["upload", "reconnect", "mixed"], default="mixed")
    parser.add_argument(
        "--store-dir", type=Path, default=Path("data/fleet-tokens"), help="persisted tokens"
    )
    parser.add_argument("--concurrency", type=int, default=200, help="first connects in flight")
    parser.add_argument("--group", default="fleet", help="GID_<group>@@@... client ids")
    parser.add_argument("--seed", type=int, default=0, help="Faker and jitter seed")
    parser.add_argument(
        "--publish-interval", type=float, default=None, help="QoS 1 publish per client every S"
    )
    parser.add_argument(
        "--no-create-accounts", action="store_true", help="accounts exist on the AppServer"
    )
    parser.add_argument("--no-fsync", action="store_true", help="do not fsync token files")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--adapter",
        default="builtin",
        metavar="FILE",
        help="how to ask the AppServer for tokens (docs/your-appserver.md); the clients are"
        " then the adapter's [clients] (default: builtin, the reference AppServer)",
    )


def _rss_mb() -> float:
    try:
        return rss_kb() / 1024
    except OSError:  # no /proc: the peak instead
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def latency_summary(seconds: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 of durations in ms, one decimal (:func:`sim.shared.stats.percentile`,
    the scenarios' definition); None without samples."""
    return {
        name: round(percentile(seconds, p) * 1000, 1) if seconds else None
        for name, p in (("p50", 50), ("p95", 95), ("p99", 99))
    }


async def _clock_for(authserver: str | None) -> Any:
    from sim.shared.clock import ScaledClock, SystemClock

    if authserver is None:
        return SystemClock()
    import aiohttp

    async with (
        aiohttp.ClientSession() as http,
        http.get(authserver.rstrip("/") + "/admin/clock") as resp,
    ):
        data = await resp.json(content_type=None)
    if data.get("mode") == "manual":
        print(
            "fleet: the AuthServer runs a manual clock; the fleet uses real time "
            "(drive expiry with POST /admin/clock/advance)",
            file=sys.stderr,
        )
        return SystemClock()
    scale = float(data.get("scale", 1.0))
    if scale == 1.0:
        return SystemClock()
    return ScaledClock(scale, epoch=data["now_ms"] / 1000.0, wall0=time.time())


def _progress(fleet: Any, elapsed: float) -> str:
    states = fleet.states()
    t = fleet.counters()
    return (
        f"[{elapsed:6.1f}s] connected {fleet.connected_count}/{len(fleet.clients)}"
        f"  connecting {states.get('connecting', 0) + states.get('idle', 0)}"
        f"  backoff {states.get('backoff', 0)}  refused {states.get('refused', 0)}"
        f"  asks {t.token_requests}  refresh up/re {t.refreshes_upload}/{t.refreshes_reconnect}"
        f"  notices {t.expire_notices}/{t.invalid_notices}  rss {_rss_mb():.0f} MB"
    )


def summary(
    fleet: Any,
    *,
    elapsed: float,
    rss0: float,
    cpu0: float,
    idle_from: tuple[float, float] | None = None,
) -> dict[str, Any]:
    t = fleet.counters()
    n = len(fleet.clients)
    lat = fleet.connect_latencies
    rss = _rss_mb()
    return {
        "clients": n,
        "connected": fleet.connected_count,
        "states": dict(fleet.states()),
        "seconds": round(elapsed, 2),
        "all_connected_after_s": (
            None if fleet.all_connected_after is None else round(fleet.all_connected_after, 3)
        ),
        "first_connect_ms": latency_summary(lat),
        "rss_mb": round(rss, 1),
        "kb_per_client": round((rss - rss0) * 1024 / n, 1),
        "cpu_s": round(cpu_seconds() - cpu0, 2),
        # CPU share of one core once every client was connected (the idle fleet's cost)
        "idle_cpu_pct": (
            None
            if idle_from is None or time.perf_counter() - idle_from[1] < 1
            else round(
                (cpu_seconds() - idle_from[0]) / (time.perf_counter() - idle_from[1]) * 100, 2
            )
        ),
        "messages_received": fleet.received,
        "counters": {k: round(v, 3) for k, v in t.as_dict().items()},
    }


def _print_summary(s: dict[str, Any]) -> None:
    print(f"fleet summary: {s['connected']}/{s['clients']} connected after {s['seconds']} s")
    print(f"  all connected after   {s['all_connected_after_s']} s")
    lat = s["first_connect_ms"]
    print(f"  first connect (ms)    p50 {lat['p50']}  p95 {lat['p95']}  p99 {lat['p99']}")
    print(f"  memory                {s['rss_mb']} MB, {s['kb_per_client']} KB per client")
    print(f"  cpu                   {s['cpu_s']} s; idle {s['idle_cpu_pct']} % of a core")
    print(f"  states                {s['states']}")
    for key, value in s["counters"].items():
        print(f"  {key:22}{value}")


def run(args: argparse.Namespace) -> int:
    from sim.customer.adapter import AdapterError, load_adapter
    from sim.customer.fleet import FleetConfig

    try:
        adapter = load_adapter(args.adapter)
    except AdapterError as exc:
        print(f"mqtt-token-sim fleet: {exc}", file=sys.stderr)
        return 2
    try:
        config = FleetConfig(
            clients=args.clients,
            appserver_url=args.appserver,
            broker_url=args.broker,
            store_dir=args.store_dir,
            group=args.group,
            mode=args.mode,
            concurrency=args.concurrency,
            create_accounts=not args.no_create_accounts,
            publish_interval_s=args.publish_interval,
            subscribe_own=args.publish_interval is not None,
            fsync=not args.no_fsync,
            seed=args.seed,
            adapter=adapter,
        )
        if args.duration < 0:
            raise ValueError("--duration must be >= 0")
    except ValueError as exc:
        print(f"mqtt-token-sim fleet: {exc}", file=sys.stderr)
        return 2
    raise_nofile_limit(args.clients + 256)
    return asyncio.run(_run(config, args))


async def _run(config: Any, args: argparse.Namespace) -> int:
    async with stop_requested() as stop:
        return await _run_until(config, args, stop)


async def _run_until(config: Any, args: argparse.Namespace, stop: StopRequest) -> int:
    from sim.customer.fleet import Fleet

    clock = await _clock_for(args.authserver)
    rss0, cpu0 = _rss_mb(), cpu_seconds()
    fleet = Fleet(config, clock=clock)
    tty = sys.stderr.isatty()
    t0 = time.perf_counter()
    try:
        try:
            await fleet.start()
        except Exception as exc:
            print(f"mqtt-token-sim fleet: cannot start: {exc}", file=sys.stderr)
            return 1
        last_line = -5.0
        idle_from: tuple[float, float] | None = None
        while not stop.is_set():
            elapsed = time.perf_counter() - t0
            if idle_from is None and fleet.all_connected_after is not None:
                idle_from = (cpu_seconds(), time.perf_counter())
            if args.duration and elapsed >= args.duration:
                break
            if tty:
                print("\r" + _progress(fleet, elapsed), end="", file=sys.stderr, flush=True)
            elif elapsed - last_line >= 5:
                last_line = elapsed
                print(_progress(fleet, elapsed), file=sys.stderr, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        elapsed = time.perf_counter() - t0
        print(("\r" if tty else "") + _progress(fleet, elapsed), file=sys.stderr, flush=True)
        result = summary(fleet, elapsed=elapsed, rss0=rss0, cpu0=cpu0, idle_from=idle_from)
    finally:
        await fleet.close()
    if args.json:
        print(json.dumps(result))
    else:
        _print_summary(result)
    return 0 if result["connected"] == result["clients"] else 1
