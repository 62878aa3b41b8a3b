"""``mqtt-token-sim broker``: flags, and a run that stops cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from amqtt.errors import BrokerError

from sim.shared.clock import ClockSpec, add_clock_arguments, clock_spec_from_args
from sim.shared.clockfollow import part_clock
from sim.shared.exits import CannotRun, cannot_listen
from sim.shared.limits import raise_nofile_limit
from sim.shared.protocol.credentials import CLIENT_ID_RULE
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


async def _serve(config: BrokerConfig, spec: ClockSpec) -> None:
    from .broker import run_broker

    async with (
        part_clock(spec, config.authserver_url) as clock,
        stop_requested() as stop,
        run_broker(config, clock) as broker,
    ):
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
        if config.auth_enabled:
            print(f"MQTT {CLIENT_ID_RULE}; others get CONNACK 2.", flush=True)
        await stop.wait()
        for line in broker.audit().lines():  # the fidelity report's uses included
            print(line, flush=True)
    log.info("broker stopped")


def _where(config: BrokerConfig) -> str:
    ports = [f"{config.host}:{config.port}"]
    ports += [f"{kind} {p}" for kind, p in (("ws", config.ws_port), ("tls", config.tls_port)) if p]
    return ", ".join(ports)


def run(args: argparse.Namespace) -> int:
    try:
        config, spec = config_from_args(args)
    except (MockBrokerError, ValueError) as exc:
        raise CannotRun(str(exc)) from None
    raise_nofile_limit()  # one descriptor per MQTT connection
    try:
        asyncio.run(_serve(config, spec))
    except (OSError, MockBrokerError, BrokerError) as exc:  # e.g. the port is taken
        failure = cannot_listen(
            exc, "broker", _where(config), "--port, --ws-port or --tls-port (0: a free port)"
        )
        raise failure or CannotRun(str(exc)) from None
    return 0
