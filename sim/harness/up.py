"""``mqtt-token-sim up``: AuthServer, broker and AppServer together (sim.harness.stack).

Prints each endpoint, the dev credentials and the client-id rule, serves until Ctrl-C or
SIGTERM, then prints the broker's fidelity report (what the clients used that the
provider lacks, docs/fidelity.md), stops every part cleanly (SQLite stores closed, data
flushed) and exits 0.  A mistake (a bad value, a port taken, a data dir it cannot write)
is one line on stderr and exit 2 (:mod:`sim.shared.exits`).

Its defaults carry a 1,000-client fleet (``mqtt-token-sim fleet --clients 1000``): the
AppServer's password hashes are cheaper and its upstream drain faster than the
AppServer's own production defaults (docs/stack.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from mock_authserver.cli import add_rate_limit_arguments, rate_limits_from_args
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
from sim.shared.exits import CannotRun
from sim.shared.limits import raise_nofile_limit
from sim.shared.protocol.credentials import CLIENT_ID_RULE
from sim.shared.shutdown import stop_requested

if TYPE_CHECKING:  # pragma: no cover - the stack imports every part: only when run
    from sim.harness.stack import StackConfig, StackHandle

__all__ = ["UP_DEFAULTS", "add_arguments", "run"]

#: ``up``'s own defaults where they differ from the parts' (module docstring).  scrypt
#: at cost 10 takes ~4 ms a hash here (14: ~60 ms, a minute of CPU for 1,000 accounts);
#: 500 applies/s stays under the provider's legacy apply limit of 1,000/s (SPEC §3b).
UP_DEFAULTS = {"password_hash_cost": 10, "drain_rate": 500.0, "drain_burst": 100}

#: Which flag sets a configuration field, to name it in an error.
_FLAG_OF = {
    "password_hash_cost": "--password-hash-cost",
    "drain_rate_per_s": "--drain-rate",
    "drain_burst": "--drain-burst",
    "token_ttl_s": "--token-ttl",
    "refresh_margin_s": "--token-ttl",
    "expire_notice_lead": "--expire-notice-lead",
    "authserver_url": "--authserver",
    "broker_url": "--broker",
}
#: The flag of each part's port, to say which one to change.
_PORT_FLAG = {
    "authserver": "--authserver-port",
    "broker": "--broker-port",
    "appserver": "--appserver-port",
    "status endpoint": "--status-port",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address of every part (loopback)")
    parser.add_argument(
        "--data-dir", type=Path, default=Path("data"), help="one data dir (default ./data)"
    )
    parser.add_argument("--authserver-port", type=int, default=18080, help="0: a free port")
    parser.add_argument("--broker-port", type=int, default=1883, help="0: a free port")
    parser.add_argument("--appserver-port", type=int, default=18081, help="0: a free port")
    parser.add_argument(
        "--status-port",
        type=int,
        default=18082,
        help="combined /health, the broker's /metrics and /fidelity (default 18082; 0: a"
        " free port)",
    )
    add_clock_arguments(
        parser,
        manual_help="manual: time moves only on POST /admin/clock/advance (AuthServer), all parts",
    )
    parser.add_argument(
        "--profile",
        choices=["provider", "mqtt"],
        default="provider",
        help="provider (default): the broker refuses what the provider's lacks (SPEC §4a);"
        " mqtt: plain MQTT 3.1.1 (wills, retained, no topic limits)",
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
        default=UP_DEFAULTS["password_hash_cost"],
        help="scrypt cost (log2 N, 1..20) of AppServer client secrets (default %(default)s;"
        " the AppServer's own default is 14)",
    )
    parser.add_argument(
        "--drain-rate",
        type=float,
        default=UP_DEFAULTS["drain_rate"],
        help="AppServer upstream applies/s, its bounded drain (default %(default)s)",
    )
    parser.add_argument(
        "--drain-burst",
        type=int,
        default=UP_DEFAULTS["drain_burst"],
        help="AppServer apply burst (default %(default)s)",
    )
    parser.add_argument(
        "--no-dev-client", action="store_true", help="do not create the AppServer dev client"
    )
    add_rate_limit_arguments(parser)


def _in_words(exc: Exception) -> str:
    """A configuration error with the flag names a user typed, not the field names."""
    text = str(exc)
    for name, flag in _FLAG_OF.items():
        text = re.sub(rf"\b{name}\b", flag, text)
    return text


def _config(args: argparse.Namespace) -> StackConfig:
    from mock_authserver.config import AuthServerConfig
    from mock_broker.config import BrokerConfig
    from sim.customer.appserver.config import AppServerConfig
    from sim.harness.stack import StackConfig

    try:
        return StackConfig(
            data_dir=args.data_dir,
            clock=clock_spec_from_args(args),
            authserver=AuthServerConfig(
                host=args.host,
                port=args.authserver_port,
                rate_limits=rate_limits_from_args(args),
            ),
            broker=BrokerConfig(
                host=args.host,
                port=args.broker_port,
                expire_notice_lead=args.expire_notice_lead,
                profile=args.profile,
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
    except ValueError as exc:  # the parts' config errors are ValueErrors too
        raise CannotRun(_in_words(exc)) from None


def run(args: argparse.Namespace) -> int:
    from sim.harness.preflight import check_writable_dir

    config = _config(args)
    if not 0 <= args.status_port <= 65535:
        raise CannotRun(f"--status-port must be 0..65535, got {args.status_port}")
    check_writable_dir(args.data_dir, "--data-dir")
    raise_nofile_limit()  # one descriptor per MQTT connection
    return asyncio.run(_serve(config, args.host, args.status_port))


def _banner(stack: StackHandle, status_url: str) -> str:
    cfg = stack.config
    clock = stack.clock
    lines = [
        "mqtt-token-sim stack is up",
        f"  AuthServer  {stack.authserver_url}   (admin API under /admin/)",
        f"  Broker      {stack.broker_url}   ({cfg.broker.profile} profile)",
        f"  AppServer   {stack.appserver_url}   (POST /v1/tokens, OpenAPI at /openapi.json)",
        f"  status      {status_url}/health   (all parts; the broker's /metrics, /fidelity,"
        " /audit)",
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
    lines.append(f"MQTT {CLIENT_ID_RULE}; others get CONNACK 2.")
    lines.append("Ctrl-C or SIGTERM stops it.")
    return "\n".join(lines)


async def _serve(config: StackConfig, host: str, status_port: int) -> int:
    from sim.harness.audit import exit_summary
    from sim.harness.errors import HarnessError, PartDidNotStart
    from sim.harness.stack import run_stack
    from sim.harness.status import serve_status

    try:
        async with (
            stop_requested() as stop,
            run_stack(config) as stack,
            serve_status(stack, host, status_port) as status_url,
        ):
            print(_banner(stack, status_url), flush=True)
            await stop.wait()
            print("stopping ...", flush=True)
            if stack.broker is not None:
                for line in stack.broker.fidelity().lines():
                    print(line, flush=True)
            print(exit_summary(stack), flush=True)
    except PartDidNotStart as exc:
        flag = _PORT_FLAG.get(exc.part, "")
        hint = f"; choose another with {flag} (0: a free port)" if flag else ""
        raise CannotRun(f"{exc}{hint}") from None
    except HarnessError as exc:
        raise CannotRun(str(exc)) from None
    print("stopped; data flushed to", stack.data_dir.resolve(), flush=True)
    return 0
