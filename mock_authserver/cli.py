"""``mqtt-token-sim authserver``: flags, and a run that stops cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from sim.shared.clock import add_clock_arguments, clock_spec_from_args
from sim.shared.exits import CannotRun, cannot_listen
from sim.shared.httplimits import add_http_limit_arguments, http_limits_from_args
from sim.shared.shutdown import stop_requested

from .config import DEFAULT_PORT, AuthServerConfig, load_accounts_file
from .ratelimit import OPERATIONS, WIRES, RateLimits, parse_rate

__all__ = [
    "add_arguments",
    "add_rate_limit_arguments",
    "config_from_args",
    "rate_limits_from_args",
    "run",
]

log = logging.getLogger("mock_authserver")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free port, printed at start)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("./data"),
        help="directory of the SQLite store: accounts, signing key, issued and revoked"
        " tokens (default ./data)",
    )
    add_clock_arguments(
        parser, manual_help="'manual': time moves only by POST /admin/clock/advance"
    )
    parser.add_argument(
        "--accounts",
        type=Path,
        default=None,
        metavar="FILE",
        help="accounts to create or update at start, and parent topics per instance,"
        ' JSON or TOML: {"accounts": [{"access_key_id", "secret", "instances", "enabled"}],'
        ' "instances": {"<id>": {"parent_topics": ["fleet"]}}} (docs/authserver.md)',
    )
    parser.add_argument(
        "--no-dev-account",
        action="store_true",
        help="do not create the dev account (dev-ak/dev-sk, instance mqtt-dev)",
    )
    parser.add_argument(
        "--admin-allow-remote",
        action="store_true",
        help="answer the admin API for non-loopback peers too (default: loopback only)",
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="seed of the fault dice")
    add_rate_limit_arguments(parser)
    add_http_limit_arguments(parser)


def _rate(text: str) -> object:
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_rate_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """``--no-rate-limits`` and one ``--limit-<wire>-<operation> RATE`` per limit."""
    group = parser.add_argument_group(
        "rate limits (SPEC §3b, per account, on the server's clock; RATE is N/s, N/min, N/h or off)"
    )
    group.add_argument(
        "--no-rate-limits",
        action="store_true",
        help="turn every API rate limit off (default: on, as the provider has them)",
    )
    defaults = RateLimits()
    for wire in WIRES:
        for op in OPERATIONS:
            group.add_argument(
                f"--limit-{wire}-{op}",
                dest=f"limit_{wire}_{op}",
                type=_rate,
                default=defaults.rate(wire, op),
                metavar="RATE",
                help=f"{wire} {op} limit (default {defaults.rate(wire, op)})",
            )


def rate_limits_from_args(args: argparse.Namespace) -> RateLimits:
    if args.no_rate_limits:
        return RateLimits.off()
    return RateLimits(
        **{f"{w}_{o}": getattr(args, f"limit_{w}_{o}") for w in WIRES for o in OPERATIONS}
    )


def config_from_args(args: argparse.Namespace) -> AuthServerConfig:
    spec = clock_spec_from_args(args)
    loaded = load_accounts_file(args.accounts) if args.accounts else None
    return AuthServerConfig(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        clock=spec,
        accounts=loaded.accounts if loaded else (),
        instances=loaded.instances if loaded else (),
        dev_account=not args.no_dev_account,
        admin_allow_remote=args.admin_allow_remote,
        fault_seed=args.fault_seed,
        rate_limits=rate_limits_from_args(args),
        http=http_limits_from_args(args),
    )


async def _serve(config: AuthServerConfig) -> None:
    from .runner import run_authserver

    async with stop_requested() as stop, run_authserver(config) as auth:
        print(f"AuthServer listening on {auth.url} (data dir {config.data_dir})", flush=True)
        limits = config.rate_limits.describe()
        print("rate limits per account: " + ", ".join(f"{k} {v}" for k, v in limits.items()))
        await stop.wait()
    log.info("AuthServer stopped")


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as exc:
        raise CannotRun(str(exc)) from None
    try:
        asyncio.run(_serve(config))
    except OSError as exc:  # e.g. the port is taken
        failure = cannot_listen(
            exc, "AuthServer", f"{config.host}:{config.port}", "--port (0: a free port)"
        )
        raise failure or CannotRun(str(exc)) from None
    except ValueError as exc:  # e.g. parent topics for an instance no account owns
        raise CannotRun(str(exc)) from None
    return 0
