"""``mqtt-token-sim fleet --clients N --duration S``: a fleet against a running stack.

Targets ``mqtt-token-sim up`` on its default ports, or any endpoints given by
``--appserver``/``--broker`` (a staging stack, the provider).  With ``--authserver`` the
fleet runs on that AuthServer's clock (``GET /admin/clock``: manual, scaled or system,
:mod:`sim.shared.clockfollow`); ``--clock manual`` and ``--time-scale S`` ask for one
(the AuthServer of ``up``'s default port unless ``--authserver`` says another).
Progress goes to stderr at once (a redrawn line on a terminal, a line every 5 s
elsewhere), then a summary to stdout (``--json`` for a machine) with hints when clients
did not connect.  Exit status: 0 all connected, 1 not all, 2 could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

from sim.shared.clock import ClockSpec, add_clock_arguments, clock_spec_from_args
from sim.shared.exits import EXIT_FAILED, EXIT_OK, CannotRun
from sim.shared.limits import raise_nofile_limit
from sim.shared.procstats import cpu_seconds, rss_kb
from sim.shared.shutdown import StopRequest, stop_requested
from sim.shared.stats import percentile

__all__ = ["add_arguments", "hints", "run", "summary_lines"]

#: ``mqtt-token-sim up``'s AuthServer: the clock a fleet follows when asked for one.
DEFAULT_AUTHSERVER = "http://127.0.0.1:18080"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, required=True, help="how many clients")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="real seconds to run (0: until Ctrl-C)"
    )
    parser.add_argument("--appserver", default="http://127.0.0.1:18081", metavar="URL")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL")
    parser.add_argument(
        "--authserver",
        metavar="URL",
        help="run on this AuthServer's clock (manual, scaled or system); with --clock"
        f" manual or --time-scale the default is {DEFAULT_AUTHSERVER}",
    )
    add_clock_arguments(
        parser,
        manual_help="'manual': follow the AuthServer's manual clock (advance it there)",
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


def _progress(fleet: Any, elapsed: float, starting: bool) -> str:
    if starting and not fleet.clients:
        return (
            f"[{elapsed:6.1f}s] creating {fleet.config.clients} AppServer accounts ..."
            f"  rss {_rss_mb():.0f} MB"
        )
    states = fleet.states()
    t = fleet.counters()
    return (
        f"[{elapsed:6.1f}s] connected {fleet.connected_count}/{len(fleet.clients)}"
        f"  connecting {states.get('connecting', 0) + states.get('idle', 0)}"
        f"  backoff {states.get('backoff', 0)}  refused {states.get('refused', 0)}"
        f"  asks {t.token_requests} (failed {t.token_request_failures})"
        f"  refresh up/re {t.refreshes_upload}/{t.refreshes_reconnect}"
        f"  notices {t.expire_notices}/{t.invalid_notices}  rss {_rss_mb():.0f} MB"
    )


def _failures(fleet: Any, limit: int = 3) -> dict[str, list[str]]:
    """A few distinct failures of each kind the clients saw (their event logs)."""
    from sim.customer.client.events import EventKind

    kinds = {
        EventKind.TOKEN_REQUEST_FAILED: "token_request",
        EventKind.NOT_AUTHORIZED: "not_authorized",
        EventKind.CONNECT_FAILED: "connect",
        EventKind.REFUSED: "refused",
    }
    out: dict[str, list[str]] = {}
    for client in fleet.clients:
        for event in client.events.events:
            kind = kinds.get(event.kind)
            if kind is None:
                continue
            text = str(event.detail.get("error") or event.detail.get("code") or event.kind)
            seen = out.setdefault(kind, [])
            if text not in seen and len(seen) < limit:
                seen.append(text)
    return out


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
        "kb_per_client": round((rss - rss0) * 1024 / max(n, 1), 1),
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
        "failures": _failures(fleet),
    }


def hints(s: dict[str, Any]) -> list[str]:
    """What to change when not every client connected (pure: from a :func:`summary`)."""
    if s["connected"] >= s["clients"]:
        return []
    out: list[str] = []
    failures = s.get("failures", {})
    asks = failures.get("token_request", [])
    if any("503" in text or "draining" in text for text in asks):
        out.append(
            "the AppServer answered 503 (its bounded drain of upstream applies was full):"
            " against `mqtt-token-sim up`, raise --drain-rate/--drain-burst, or start the"
            " fleet slower with a lower --concurrency"
        )
    elif asks:
        out.append(f"token requests failed: {'; '.join(asks)}")
    if s["states"].get("connecting", 0) + s["states"].get("idle", 0) and not asks:
        out.append(
            "clients were still on their first connect: the AppServer checks each"
            " client's password hash once (`up --password-hash-cost`, lower is faster),"
            " or give the fleet a longer --duration"
        )
    if failures.get("not_authorized"):
        out.append(
            "the broker refused tokens (CONNACK 4/5): " + "; ".join(failures["not_authorized"])
        )
    if failures.get("connect"):
        out.append("connections failed: " + "; ".join(failures["connect"]))
    if failures.get("refused"):
        out.append("the AppServer refused clients for good: " + "; ".join(failures["refused"]))
    return out


def _or(value: Any, text: str) -> str:
    return text if value is None else str(value)


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The summary for a person (the ``--json`` form is ``s`` itself)."""
    lat = s["first_connect_ms"]
    rows = [
        ("all connected after", _or(s["all_connected_after_s"], "not all connected") + (
            " s" if s["all_connected_after_s"] is not None else ""
        )),
        ("first connect (ms)", f"p50 {_or(lat['p50'], '-')}  p95 {_or(lat['p95'], '-')}"
                               f"  p99 {_or(lat['p99'], '-')}"),
        ("memory", f"{s['rss_mb']} MB, {s['kb_per_client']} KB per client"),
        ("cpu", f"{s['cpu_s']} s; idle "
                + (f"{s['idle_cpu_pct']} % of a core" if s["idle_cpu_pct"] is not None
                   else "not measured (never all connected for 1 s)")),
        ("states", ", ".join(f"{k} {v}" for k, v in sorted(s["states"].items()))),
        *((k, str(v)) for k, v in s["counters"].items()),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows) + 2
    out = [f"fleet summary: {s['connected']}/{s['clients']} connected after {s['seconds']} s"]
    out += [f"  {k.ljust(width)}{v}" for k, v in rows]
    out += [f"hint: {h}" for h in hints(s)]
    return out


def _clock_request(args: argparse.Namespace) -> tuple[ClockSpec | None, str | None]:
    """The clock the flags ask for (None: the AuthServer's, whatever it is) and the
    AuthServer to read it from."""
    spec = clock_spec_from_args(args)
    asked = spec.mode != "system" or spec.scale != 1.0
    if not asked:
        return (None, args.authserver) if args.authserver else (spec, None)
    return spec, args.authserver or DEFAULT_AUTHSERVER


def run(args: argparse.Namespace) -> int:
    from sim.customer.adapter import AdapterError, load_adapter
    from sim.customer.fleet import FleetConfig

    try:
        adapter = load_adapter(args.adapter)
    except AdapterError as exc:
        raise CannotRun(str(exc)) from None
    try:
        clock = _clock_request(args)
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
        raise CannotRun(str(exc)) from None
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # A refused CONNACK is logged by the transport at ERROR, per client: the summary
        # counts them (not_authorized) and says why.
        logging.getLogger("sim.customer.client.gmqtt").setLevel(logging.CRITICAL)
    raise_nofile_limit(args.clients + 256)
    return asyncio.run(_run(config, clock, args))


async def _run(config: Any, clock: tuple[ClockSpec | None, str | None], args: Any) -> int:
    from sim.shared.clockfollow import part_clock

    async with part_clock(*clock) as the_clock, stop_requested() as stop:
        return await _run_until(config, the_clock, args, stop)


async def _run_until(config: Any, clock: Any, args: argparse.Namespace, stop: StopRequest) -> int:
    from sim.customer.fleet import Fleet

    rss0, cpu0 = _rss_mb(), cpu_seconds()
    fleet = Fleet(config, clock=clock)
    tty = sys.stderr.isatty()
    t0 = time.perf_counter()
    print(
        f"fleet: {config.clients} clients, AppServer {config.appserver_url}, broker"
        f" {config.broker_url}, {'until Ctrl-C' if not args.duration else f'{args.duration:g} s'}",
        file=sys.stderr,
        flush=True,
    )
    starting = asyncio.ensure_future(fleet.start())
    try:
        last_line = -5.0
        idle_from: tuple[float, float] | None = None
        while not stop.is_set():
            elapsed = time.perf_counter() - t0
            if starting.done() and starting.exception() is not None:
                exc = starting.exception()
                raise CannotRun(f"cannot start the fleet: {exc or type(exc).__name__}")
            if idle_from is None and fleet.all_connected_after is not None:
                idle_from = (cpu_seconds(), time.perf_counter())
            if args.duration and elapsed >= args.duration:
                break
            line = _progress(fleet, elapsed, not starting.done())
            if tty:
                print("\r" + line, end="", file=sys.stderr, flush=True)
            elif elapsed - last_line >= 5:
                last_line = elapsed
                print(line, file=sys.stderr, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        elapsed = time.perf_counter() - t0
        line = _progress(fleet, elapsed, not starting.done())
        print(("\r" if tty else "") + line, file=sys.stderr, flush=True)
        result = summary(fleet, elapsed=elapsed, rss0=rss0, cpu0=cpu0, idle_from=idle_from)
    finally:
        if not starting.done():
            starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)
        await fleet.close()
    if args.json:
        print(json.dumps(result))
    else:
        print("\n".join(summary_lines(result)))
    return EXIT_OK if result["connected"] == result["clients"] else EXIT_FAILED
