"""``mqtt-token-sim broker``: flags, and a run that stops cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

import aiohttp
from amqtt.errors import BrokerError

from sim.shared.clock import (
    ClockSpec,
    ManualClock,
    add_clock_arguments,
    clock_from_spec,
    clock_spec_from_args,
)
from sim.shared.limits import raise_nofile_limit
from sim.shared.shutdown import stop_requested

from .audit import AuditBounds
from .config import BrokerConfig, parse_bool
from .errors import MockBrokerError

__all__ = ["add_arguments", "config_from_args", "run"]

log = logging.getLogger("mock_broker")


def _on_off(text: str) -> bool:
    return parse_bool(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1883, help="MQTT/TCP port (0: a free one)")
    parser.add_argument("--ws-port", type=int, default=None, help="also serve MQTT over WebSocket")
    parser.add_argument(
        "--tls-port", type=int, default=None, help="MQTT over TLS (default 8883 with --tls-cert)"
    )
    parser.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate chain for TLS")
    parser.add_argument("--tls-key", type=Path, default=None, help="PEM private key for TLS")
    parser.add_argument(
        "--authserver",
        default=None,
        metavar="URL",
        help="AuthServer base URL whose bootstrap and revocation feed the broker follows",
    )
    parser.add_argument(
        "--auth",
        type=_on_off,
        default=True,
        metavar="on|off",
        help="'off': no credential or ACL checks (baseline); default on",
    )
    parser.add_argument(
        "--profile",
        choices=["provider", "mqtt"],
        default="provider",
        help="provider (default): refuse what the provider's broker lacks (SPEC §4a); "
        "mqtt: plain MQTT 3.1.1 (wills, retained, no topic limits)",
    )
    parser.add_argument(
        "--violation",
        choices=["notice", "gentle"],
        default="notice",
        help="notice: invalid notice then disconnect (the provider); gentle: SUBACK 0x80 / drop",
    )
    parser.add_argument(
        "--expire-notice-lead",
        type=float,
        default=300.0,
        metavar="S",
        help="virtual seconds before expiry to send $SYS/tokenExpireNotice (default 300)",
    )
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics")
    parser.add_argument(
        "--connect-timeout", type=float, default=10.0, help="seconds to wait for CONNECT"
    )
    parser.add_argument(
        "--feed-poll-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="real seconds of one long poll of the AuthServer's feed (<= 30; default 10)",
    )
    parser.add_argument(
        "--audit-bounds",
        default="",
        metavar="NAME=V,...",
        help="the device audit's bounds, e.g. tight_retry_run=5,early_fraction=0.6"
        " (docs/your-appserver.md)",
    )
    add_clock_arguments(
        parser,
        manual_help="'manual': follow the AuthServer's manual clock (polls GET /admin/clock)",
    )


def config_from_args(args: argparse.Namespace) -> tuple[BrokerConfig, ClockSpec]:
    try:
        spec = clock_spec_from_args(args)
    except ValueError as exc:
        raise MockBrokerError(str(exc)) from None
    tls_port = args.tls_port
    if tls_port is None and args.tls_cert is not None:
        tls_port = 8883
    config = BrokerConfig(
        host=args.host,
        port=args.port,
        ws_port=args.ws_port,
        tls_port=tls_port,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        authserver_url=args.authserver,
        auth_enabled=args.auth,
        profile=args.profile,
        violation=args.violation,
        expire_notice_lead=args.expire_notice_lead,
        metrics_port=args.metrics_port,
        connect_timeout=args.connect_timeout,
        feed_poll_timeout=args.feed_poll_timeout,
        audit=AuditBounds.parse(args.audit_bounds),
    )
    if config.auth_enabled and not config.authserver_url:
        raise MockBrokerError("--authserver URL is required unless --auth off")
    if spec.mode == "manual" and not config.authserver_url:
        raise MockBrokerError("--clock manual follows the AuthServer's clock: needs --authserver")
    return config, spec


async def _follow_manual_clock(clock: ManualClock, base_url: str) -> None:
    """Keep a manual clock level with the AuthServer's (``GET /admin/clock``)."""
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError, KeyError):
                async with http.get(
                    base_url.rstrip("/") + "/admin/clock", timeout=aiohttp.ClientTimeout(total=5)
                ) as resp:
                    now_ms = (await resp.json())["now_ms"]
                if isinstance(now_ms, int) and now_ms / 1000 > clock.now():
                    clock.set(now_ms / 1000)
            await asyncio.sleep(0.1)


async def _serve(config: BrokerConfig, spec: ClockSpec) -> None:
    from .broker import run_broker

    if not log.isEnabledFor(logging.DEBUG):
        # amqtt logs two INFO lines per connection; a storm would drown the log.
        logging.getLogger("amqtt").setLevel(logging.WARNING)

    clock = clock_from_spec(spec)
    follower = None
    if isinstance(clock, ManualClock) and config.authserver_url:
        follower = asyncio.create_task(_follow_manual_clock(clock, config.authserver_url))
    try:
        async with stop_requested() as stop, run_broker(config, clock) as broker:
            extra = []
            if broker.ws_port is not None:
                extra.append(f"ws://{config.host}:{broker.ws_port}")
            if broker.tls_port is not None:
                extra.append(f"mqtts://{config.host}:{broker.tls_port}")
            if broker.metrics_port is not None:
                base = f"http://{config.host}:{broker.metrics_port}"
                extra.append(f"metrics {base}/metrics fidelity {base}/fidelity audit {base}/audit")
            auth = f"following {config.authserver_url}" if config.auth_enabled else "auth off"
            print(
                f"Broker listening on {broker.url} {' '.join(extra)}"
                f" ({auth}, {config.profile} profile)",
                flush=True,
            )
            await stop.wait()
            for line in broker.audit().lines():  # the fidelity report's uses included
                print(line, flush=True)
    finally:
        if follower is not None:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
    log.info("broker stopped")


def run(args: argparse.Namespace) -> int:
    try:
        config, spec = config_from_args(args)
    except (MockBrokerError, ValueError) as exc:
        print(f"mqtt-token-sim broker: {exc}", file=sys.stderr)
        return 2
    raise_nofile_limit()  # one descriptor per MQTT connection
    try:
        asyncio.run(_serve(config, spec))
    except OSError as exc:  # e.g. the port is taken
        print(f"mqtt-token-sim broker: {exc}", file=sys.stderr)
        return 1
    except (MockBrokerError, BrokerError) as exc:
        print(f"mqtt-token-sim broker: {exc}", file=sys.stderr)
        return 1
    return 0
