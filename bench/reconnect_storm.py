"""Reconnect storm vs the raw connect rate of the same broker, measured in the same run.

    python bench/reconnect_storm.py --clients 2000 [--rounds 3] [--inline]

Runs the ``reconnect-storm`` scenario (stack in a child process unless ``--inline``) and
prints the ratio ``reconnect_seconds / (N / raw_connect_rate)`` -- the issue's target is
<= 1.3 -- with the baseline, the storm, the CPU each side used and the request counts
(target 0 AppServer requests and 0 AuthServer applies).  Medians of ``--rounds``.
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in ("amqtt", "transitions", "gmqtt", "sim.client.gmqtt"):
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
    print(f"ratio storm / baseline       {f['reconnect_seconds'] / ideal:.2f}  (target <= 1.3)")
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
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
