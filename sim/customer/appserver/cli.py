"""``mqtt-token-sim appserver``: run the reference AppServer until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from sim.shared.clock import ClockSpec, add_clock_arguments, clock_spec_from_args
from sim.shared.clockfollow import part_clock
from sim.shared.exits import CannotRun, cannot_listen
from sim.shared.httplimits import add_http_limit_arguments, http_limits_from_args
from sim.shared.shutdown import stop_requested

from .config import AppServerConfig
from .errors import AppServerError

__all__ = ["add_arguments", "config_from_args", "run"]

log = logging.getLogger(__name__)
_DEFAULTS = AppServerConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    parser.add_argument("--host", default=d.host, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=d.port, help="0 picks a free port")
    parser.add_argument("--authserver", default=d.authserver_url, help="AuthServer base URL")
    parser.add_argument("--access-key", default=d.access_key, help="AccessKeyId to apply with")
    parser.add_argument(
        "--secret-key",
        default=d.secret_key,
        help="AccessKeySecret (default: the dev account's; better in the environment, as"
        " MQTT_TOKEN_SIM_APPSERVER_SECRET_KEY, than on a command line)",
    )
    parser.add_argument("--instance", default=d.instance_id, help="MQTT instance id")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".mqtt-token-sim/customer/appserver"),
        help="directory of the SQLite store (default %(default)s)",
    )
    parser.add_argument("--accounts-file", type=Path, help='JSON {"accounts": [...]} to import')
    parser.add_argument("--token-ttl", type=float, default=d.token_ttl_s, help="seconds")
    parser.add_argument("--refresh-margin", type=float, default=d.refresh_margin_s, help="seconds")
    parser.add_argument("--upstream-timeout", type=float, default=d.upstream_timeout_s)
    parser.add_argument("--breaker-failures", type=int, default=d.breaker_failures)
    parser.add_argument("--breaker-open", type=float, default=d.breaker_open_s, help="seconds")
    parser.add_argument("--drain-rate", type=float, default=d.drain_rate_per_s, help="applies/s")
    parser.add_argument("--drain-burst", type=int, default=d.drain_burst)
    parser.add_argument(
        "--no-serve-stale",
        action="store_true",
        help="answer 503 instead of a stale cached token when the AuthServer fails",
    )
    parser.add_argument(
        "--revoke-api",
        choices=["openapi", "legacy"],
        default=d.revoke_api,
        help="revoke with the OpenAPI's RevokeToken (5/s) or the legacy /token/revoke "
        "(1/min) (default %(default)s)",
    )
    parser.add_argument(
        "--openapi-url", default=None, help="OpenAPI endpoint (default: the --authserver URL)"
    )
    parser.add_argument(
        "--revoke-limit",
        type=int,
        default=None,
        help="revokes per --revoke-window at most (default: the provider's limit of the API)",
    )
    parser.add_argument("--revoke-window", type=float, default=None, help="seconds")
    parser.add_argument(
        "--revoke-retry", type=float, default=d.revoke_retry_s, help="backoff base, seconds"
    )
    parser.add_argument(
        "--revoke-retry-max", type=float, default=d.revoke_retry_max_s, help="backoff cap, seconds"
    )
    parser.add_argument(
        "--password-hash-cost", type=int, default=d.password_hash_cost, help="scrypt log2 N"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the jitter")
    add_clock_arguments(
        parser,
        manual_help="'manual': follow the AuthServer's manual clock (polls GET /admin/clock)",
    )
    add_http_limit_arguments(parser, d.http)


def config_from_args(args: argparse.Namespace) -> AppServerConfig:
    return AppServerConfig(
        host=args.host,
        port=args.port,
        authserver_url=args.authserver,
        access_key=args.access_key,
        secret_key=args.secret_key,
        instance_id=args.instance,
        data_dir=args.data_dir,
        accounts_file=args.accounts_file,
        token_ttl_s=args.token_ttl,
        refresh_margin_s=args.refresh_margin,
        upstream_timeout_s=args.upstream_timeout,
        breaker_failures=args.breaker_failures,
        breaker_open_s=args.breaker_open,
        drain_rate_per_s=args.drain_rate,
        drain_burst=args.drain_burst,
        serve_stale=not args.no_serve_stale,
        revoke_api=args.revoke_api,
        openapi_url=args.openapi_url,
        revoke_limit=args.revoke_limit,
        revoke_window_s=args.revoke_window,
        revoke_retry_s=args.revoke_retry,
        revoke_retry_max_s=args.revoke_retry_max,
        password_hash_cost=args.password_hash_cost,
        seed=args.seed,
        http=http_limits_from_args(args),
    )


async def _serve(config: AppServerConfig, spec: ClockSpec) -> None:
    from .runner import run_appserver

    async with (
        part_clock(spec, config.authserver_url) as clock,
        stop_requested() as stop,
        run_appserver(config, clock=clock) as handle,
    ):
        # Parsed by tests and the stack: keep the format.
        print(f"appserver listening on {handle.url}", flush=True)
        log.info("AppServer on %s, AuthServer %s", handle.url, config.authserver_url)
        await stop.wait()


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        spec = clock_spec_from_args(args)
    except (AppServerError, ValueError) as exc:
        raise CannotRun(f"invalid configuration: {exc}") from None
    try:
        asyncio.run(_serve(config, spec))
    except (AppServerError, OSError) as exc:
        failure = cannot_listen(
            exc, "AppServer", f"{config.host}:{config.port}", "--port (0: a free port)"
        )
        raise failure or CannotRun(str(exc)) from None
    return 0
