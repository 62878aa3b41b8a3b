"""``mqtt-token-sim up``: AuthServer, broker and AppServer together (sim.harness.stack).

Prints each endpoint and the dev credentials, serves until Ctrl-C or SIGTERM, then
stops every part cleanly (SQLite stores closed, data flushed) and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sim.shared.clock import add_clock_arguments, clock_spec_from_args
from sim.shared.devaccount import (
    DEV_ACCESS_KEY,
    DEV_CLIENT_ACTIONS,
    DEV_CLIENT_ID,
    DEV_CLIENT_RESOURCES,
    DEV_CLIENT_SECRET,
    DEV_INSTANCE,
    DEV_SECRET_KEY,
)
from sim.shared.limits import raise_nofile_limit
from sim.shared.shutdown import stop_requested

if TYPE_CHECKING:  # pragma: no cover - the stack imports every part: only when run
    from sim.harness.stack import StackConfig, StackHandle

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


def _config(args: argparse.Namespace) -> StackConfig:
    from mock_authserver.config import AuthServerConfig
    from mock_broker.config import BrokerConfig
    from sim.customer.appserver.config import AppServerConfig
    from sim.harness.stack import StackConfig

    return StackConfig(
        data_dir=args.data_dir,
        clock=clock_spec_from_args(args),
        authserver=AuthServerConfig(host=args.host, port=args.authserver_port),
        broker=BrokerConfig(
            host=args.host, port=args.broker_port, expire_notice_lead=args.expire_notice_lead
        ),
        appserver=AppServerConfig(
            host=args.host,
            port=args.appserver_port,
            token_ttl_s=args.token_ttl,
            password_hash_cost=args.password_hash_cost,
            drain_rate_per_s=args.drain_rate,
            drain_burst=args.drain_burst,
        ),
        authserver_url=args.authserver,
        broker_url=args.broker,
        dev_client=not args.no_dev_client,
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
    except ValueError as exc:  # the parts' config errors are ValueErrors too
        print(f"mqtt-token-sim up: {exc}", file=sys.stderr)
        return 2
    raise_nofile_limit()  # one descriptor per MQTT connection
    try:
        return asyncio.run(_serve(config))
    except OSError as exc:
        print(f"mqtt-token-sim up: cannot start: {exc}", file=sys.stderr)
        return 1


def _banner(stack: StackHandle) -> str:
    cfg = stack.config
    clock = stack.clock
    lines = [
        "mqtt-token-sim stack is up",
        f"  AuthServer  {stack.authserver_url}   (admin API under /admin/)",
        f"  Broker      {stack.broker_url}",
        f"  AppServer   {stack.appserver_url}   (POST /v1/tokens, OpenAPI at /openapi.json)",
        f"  data dir    {stack.data_dir.resolve()}",
        f"  clock       {clock.mode}"
        + (f" x{clock.scale:g}" if clock.mode == "scaled" else "")
        + (
            f'   (advance: POST {stack.authserver_url}/admin/clock/advance {{"seconds": N}})'
            if clock.mode == "manual"
            else ""
        ),
        "dev credentials",
        f"  AuthServer account   AccessKeyId {DEV_ACCESS_KEY}  AccessKeySecret {DEV_SECRET_KEY}"
        f"  instance {DEV_INSTANCE}",
    ]
    if cfg.dev_client:
        grant = {"resources": list(DEV_CLIENT_RESOURCES), "actions": DEV_CLIENT_ACTIONS}
        lines.append(
            f"  AppServer client     {DEV_CLIENT_ID} / {DEV_CLIENT_SECRET}"
            f"  resources {','.join(DEV_CLIENT_RESOURCES)} ({DEV_CLIENT_ACTIONS})"
        )
        lines.append(
            f"  try: curl -s -u '{DEV_CLIENT_ID}:{DEV_CLIENT_SECRET}' -H 'Content-Type: "
            f"application/json' -d '{json.dumps(grant, separators=(',', ':'))}' "
            f"{stack.appserver_url}/v1/tokens"
        )
    lines.append("Ctrl-C or SIGTERM stops it.")
    return "\n".join(lines)


async def _serve(config: StackConfig) -> int:
    from sim.harness.audit import exit_summary
    from sim.harness.stack import run_stack

    async with stop_requested() as stop, run_stack(config) as stack:
        print(_banner(stack), flush=True)
        await stop.wait()
        print("stopping ...", flush=True)
        print(exit_summary(stack), flush=True)
    print("stopped; data flushed to", stack.data_dir.resolve(), flush=True)
    return 0
