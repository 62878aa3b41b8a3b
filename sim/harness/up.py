"""``mqtt-token-sim up``: AuthServer, broker and AppServer together (sim.harness.stack).

Prints each endpoint and the dev credentials, serves until Ctrl-C or SIGTERM, then
stops every part cleanly (SQLite stores closed, data flushed) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from sim.shared.clock import add_clock_arguments, clock_spec_from_args
from sim.shared.limits import raise_nofile_limit

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address of every part (loopback)")
    parser.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="one data dir (default ./data)"
    )
    parser.add_argument("--authserver-port", type=int, default=18080)
    parser.add_argument("--broker-port", type=int, default=1883)
    parser.add_argument("--appserver-port", type=int, default=18081)
    add_clock_arguments(
        parser,
        manual_help="manual: time moves only on POST /admin/clock/advance (AuthServer), all parts",
    )
    parser.add_argument(
        "--authserver", metavar="URL", help="use this AuthServer instead of starting one"
    )
    parser.add_argument("--broker", metavar="URL", help="use this broker instead of starting one")
    parser.add_argument("--token-ttl", type=float, default=3600.0, help="AppServer token TTL (s)")
    parser.add_argument(
        "--expire-notice-lead", type=float, default=300.0, help="broker expire notice lead (s)"
    )
    parser.add_argument(
        "--password-hash-cost",
        type=int,
        default=14,
        help="scrypt cost of AppServer client secrets (lower it for big fleets)",
    )
    parser.add_argument(
        "--drain-rate",
        type=float,
        default=50.0,
        help="AppServer upstream applies/s (its bounded drain); raise it for big fleets",
    )
    parser.add_argument("--drain-burst", type=int, default=20, help="AppServer apply burst")
    parser.add_argument(
        "--no-dev-client", action="store_true", help="do not create the AppServer dev client"
    )


def _config(args: argparse.Namespace) -> object:
    from sim.harness.stack import StackConfig

    return StackConfig(
        host=args.host,
        data_dir=args.data_dir,
        authserver_port=args.authserver_port,
        broker_port=args.broker_port,
        appserver_port=args.appserver_port,
        clock=clock_spec_from_args(args),
        authserver_url=args.authserver,
        broker_url=args.broker,
        token_ttl_s=args.token_ttl,
        expire_notice_lead_s=args.expire_notice_lead,
        password_hash_cost=args.password_hash_cost,
        appserver_drain_rate_per_s=args.drain_rate,
        appserver_drain_burst=args.drain_burst,
        dev_client=not args.no_dev_client,
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"mqtt-token-sim up: {exc}", file=sys.stderr)
        return 2
    raise_nofile_limit()  # one descriptor per MQTT connection
    try:
        return asyncio.run(_serve(config))
    except OSError as exc:
        print(f"mqtt-token-sim up: cannot start: {exc}", file=sys.stderr)
        return 1


def _banner(stack: object) -> str:
    from sim.harness.stack import (
        DEV_ACCESS_KEY,
        DEV_CLIENT_ID,
        DEV_CLIENT_RESOURCES,
        DEV_CLIENT_SECRET,
        DEV_INSTANCE,
        DEV_SECRET_KEY,
        StackHandle,
    )

    assert isinstance(stack, StackHandle)
    cfg = stack.config
    lines = [
        "mqtt-token-sim stack is up",
        f"  AuthServer  {stack.authserver_url}   (admin API under /admin/)",
        f"  Broker      {stack.broker_url}",
        f"  AppServer   {stack.appserver_url}   (POST /v1/tokens, OpenAPI at /openapi.json)",
        f"  data dir    {cfg.data_dir.resolve()}",
        f"  clock       {stack.clock.mode}"
        + (f" x{stack.clock.scale:g}" if stack.clock.mode == "scaled" else "")
        + (
            f'   (advance: POST {stack.authserver_url}/admin/clock/advance {{"seconds": N}})'
            if stack.clock.mode == "manual"
            else ""
        ),
        "dev credentials",
        f"  AuthServer account   AccessKeyId {DEV_ACCESS_KEY}  AccessKeySecret {DEV_SECRET_KEY}"
        f"  instance {DEV_INSTANCE}",
    ]
    if cfg.dev_client:
        lines.append(
            f"  AppServer client     {DEV_CLIENT_ID} / {DEV_CLIENT_SECRET}"
            f"  resources {','.join(DEV_CLIENT_RESOURCES)} (R,W)"
        )
        lines.append(
            f"  try: curl -s -u '{DEV_CLIENT_ID}:{DEV_CLIENT_SECRET}' -H 'Content-Type: "
            f'application/json\' -d \'{{"resources":["dev/#"],"actions":"R,W"}}\' '
            f"{stack.appserver_url}/v1/tokens"
        )
    lines.append("Ctrl-C or SIGTERM stops it.")
    return "\n".join(lines)


async def _serve(config: object) -> int:
    from sim.harness.stack import StackConfig, run_stack

    assert isinstance(config, StackConfig)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with run_stack(config) as stack:
            print(_banner(stack), flush=True)
            await stop.wait()
            print("stopping ...", flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("stopped; data flushed to", config.data_dir.resolve(), flush=True)
    return 0
