"""Reconnect storm vs the raw connect rate of the same broker, measured in the same run.

    python bench/reconnect_storm.py --clients 2000 [--rounds 3] [--inline] [--floor]

Runs the ``reconnect-storm`` scenario (stack in a child process unless ``--inline``) and
prints the ratio ``reconnect_seconds / (N / raw_connect_rate)`` -- the target of
docs/scenarios.md is <= 1.3, an observation a loaded machine moves, not the scenario's
verdict -- with the baseline, the storm, the CPU each side used and
the request counts (target 0 AppServer requests and 0 AuthServer applies).  Medians of ``--rounds``.

``--floor`` then runs the same storm with bare transport connections instead of SDK
clients (open, wait for the loss, sleep the same jitter, open again: no token logic, no
events, no backoff bookkeeping) against a fresh child stack, with its own baseline: the
ratio the SDK could reach at best with this client library on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from scenarios.base import ScenarioParams, run_scenario


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inline", action="store_true", help="stack in this process")
    parser.add_argument("--floor", action="store_true", help="also the bare-transport storm")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in ("amqtt", "transitions", "gmqtt", "sim.customer.client.gmqtt"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    options = {"rounds": str(args.rounds), "stack_process": str(not args.inline).lower()}
    report = asyncio.run(
        run_scenario("reconnect-storm", ScenarioParams(clients=args.clients, options=options))
    )
    if report.error:
        print(f"error: {report.error}", file=sys.stderr)
        return 2
    f = report.figures
    ideal = f["clients"] / f["raw_connect_rate"]
    print(f"clients                      {f['clients']}")
    print(
        f"raw connect rate (baseline)  {f['raw_connect_rate']:.0f}/s "
        f"(min {f['raw_connect_rate_min']:.0f}, max {f['raw_connect_rate_max']:.0f}) "
        f"-> N / rate = {ideal:.3f} s"
    )
    lo, hi = f.get("reconnect_seconds_min", 0), f.get("reconnect_seconds_max", 0)
    print(
        f"storm: all back after        {f['reconnect_seconds']:.3f} s (min {lo:.3f}, max {hi:.3f})"
    )
    print(
        f"ratio storm / baseline       {f['reconnect_seconds'] / ideal:.2f}  (target <= 1.3: "
        "observed, not the scenario's verdict)"
    )
    print(f"retry delays vs full jitter  {f['retry_delay_stdev_ratio']:.2f}  (verdict: >= 0.5)")
    print(
        f"connect latency p50/p99      {f['connect_latency_p50_ms']:.1f} / "
        f"{f['connect_latency_p99_ms']:.1f} ms"
    )
    print(
        f"CPU during a storm           clients {f['client_cpu_seconds']:.2f} s, "
        f"stack {f.get('stack_cpu_seconds', float('nan')):.2f} s"
    )
    print(
        f"CPU during a baseline round  clients {f['raw_client_cpu_seconds']:.2f} s, "
        f"stack {f.get('raw_stack_cpu_seconds', float('nan')):.2f} s"
    )
    print(
        f"AppServer requests / AuthServer applies during the storms: "
        f"{f['appserver_requests_during_storm']} / {f['upstream_applies_during_storm']} "
        "(target 0 / 0)"
    )
    print(report.verdict())
    if args.floor:
        asyncio.run(_floor(args.clients))
    return 0 if report.passed else 1


async def _floor(n: int) -> None:
    import gc
    import random
    import statistics
    import time

    from scenarios.connect_rate import fetch_token, measure_connect_rate
    from scenarios.env import UNTHROTTLED, scenario_stack
    from scenarios.stack_proc import subprocess_environment
    from sim.customer.client.transport import Connection, parse_broker_url

    config = scenario_stack().with_appserver(**UNTHROTTLED)
    async with subprocess_environment(config) as env:
        rates = [
            (await measure_connect_rate(env, n, client_prefix=f"GID_floor@@@r{k}-")).rate
            for k in range(3)
        ]
        rate = statistics.median(rates)
        window = 0.8 * n / rate
        tok = await fetch_token(env, "GID_rawrate@@@owner", "raw-rate-secret", ["rawrate/#"])
        address = parse_broker_url(env.endpoints.broker_url)
        rng = random.Random(0)
        back: dict[int, float] = {}
        armed = [0.0]
        up = asyncio.Event()
        first = [0]
        all_first = asyncio.Event()

        async def device(i: int) -> None:
            while True:
                conn = Connection(f"GID_floor@@@c{i}", on_message=lambda _m: None)
                await conn.open(address, username=tok["username"], password=tok["password"])
                if not armed[0]:
                    first[0] += 1
                    if first[0] == n:
                        all_first.set()
                else:
                    back.setdefault(i, time.monotonic())
                    if len(back) == n:
                        up.set()
                await conn.lost
                await asyncio.sleep(rng.uniform(0.0, window))

        tasks = [asyncio.ensure_future(device(i)) for i in range(n)]
        try:
            await asyncio.wait_for(all_first.wait(), 60)
            times = []
            for _ in range(3):
                gc.freeze()  # as the scenario does before each storm (see there)
                back.clear()
                up.clear()
                armed[0] = time.monotonic()
                await env.kick_all()
                await asyncio.wait_for(up.wait(), 60)
                times.append(max(back.values()) - armed[0])
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    storm = statistics.median(times)
    print(
        f"floor (bare transport, no SDK): baseline {rate:.0f}/s -> N / rate {n / rate:.3f} s; "
        f"all back after {storm:.3f} s; ratio {storm / (n / rate):.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
