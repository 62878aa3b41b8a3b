"""Build and run the token broker (SPEC §4, CONTRACTS.md "Broker").

The broker is a :class:`~mock_broker.hardened.HardenedBroker` (amqtt's listeners and
codecs, our connection path) enforcing a :class:`~mock_broker.token_policy.TokenPolicy`
(SPEC §4's rules, decided by the pure :mod:`mock_broker.decision`).  :func:`run_broker`
also follows the AuthServer's bootstrap and feed and serves the metrics.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sim.shared.clock import Clock, SystemClock

from .audit import AuditReport
from .authority import TokenAuthority
from .config import BrokerConfig
from .errors import BrokerConfigError
from .fidelity import FidelityReport
from .follower import FeedFollower
from .hardened import HardenedBroker
from .metrics import BrokerMetrics, serve_metrics
from .token_policy import TokenPolicy

__all__ = ["BrokerHandle", "listeners_of", "run_broker"]


def listeners_of(config: BrokerConfig) -> dict[str, dict[str, Any]]:
    """The listeners of a :class:`BrokerConfig`, as amqtt configures them."""
    listeners: dict[str, dict[str, Any]] = {
        "default": {"type": "tcp", "bind": f"{config.host}:{config.port}"}
    }
    if config.ws_port is not None:
        listeners["ws"] = {"type": "ws", "bind": f"{config.host}:{config.ws_port}"}
    if config.tls_port is not None:
        listeners["tls"] = {
            "type": "tcp",
            "bind": f"{config.host}:{config.tls_port}",
            "ssl": True,
            "certfile": str(config.tls_cert),
            "keyfile": str(config.tls_key),
        }
    return listeners


@dataclass
class BrokerHandle:
    broker: HardenedBroker
    policy: TokenPolicy
    config: BrokerConfig
    authority: TokenAuthority
    metrics: BrokerMetrics
    clock: Clock
    port: int
    ws_port: int | None = None
    tls_port: int | None = None
    metrics_port: int | None = None
    follower: FeedFollower | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.config.host}:{self.port}"

    def fidelity(self) -> FidelityReport:
        """What the clients used that the provider's broker lacks, per client (SPEC §4a,
        docs/fidelity.md); also ``GET /fidelity`` on the metrics port."""
        return self.policy.fidelity.report()

    def audit(self) -> AuditReport:
        """The device audit (docs/your-appserver.md): the client rules each client broke,
        with the evidence, and the fidelity report's uses; also ``GET /audit`` on the
        metrics port."""
        return self.policy.audit_report()

    async def kick_all(self) -> int:
        """Drop every client at once (the scenarios' mass kick); return how many.
        Wills are published, as for any abnormal disconnect."""
        return await self.broker.close_all("kicked")


@asynccontextmanager
async def run_broker(
    config: BrokerConfig,
    clock: Clock | None = None,
    *,
    authority: TokenAuthority | None = None,
) -> AsyncIterator[BrokerHandle]:
    """Run the broker until the block exits.

    With ``authserver_url`` the broker follows that AuthServer's bootstrap and feed;
    with an ``authority`` (tests, in-process stacks) it uses that one as it is.
    """
    clock = clock or SystemClock()
    follower: FeedFollower | None = None
    metrics = BrokerMetrics()
    if config.auth_enabled and authority is None and not config.authserver_url:
        raise BrokerConfigError("token auth needs authserver_url (or an in-process authority)")
    authority = authority or TokenAuthority(ignore_revocations=config.ignore_revocations)
    if config.auth_enabled and config.authserver_url:
        follower = FeedFollower(
            config.authserver_url,
            authority,
            clock=clock,
            poll_timeout=config.feed_poll_timeout,
            metrics=metrics,
        )
        await follower.start(wait=config.bootstrap_timeout)
    policy = TokenPolicy(config, clock=clock, authority=authority, metrics=metrics)
    broker = HardenedBroker(
        listeners_of(config),
        policy,
        connect_timeout=config.connect_timeout,
        max_offline_messages=config.max_offline_messages,
    )
    runner = None
    started = False
    try:
        await broker.start()
        started = True
        handle = BrokerHandle(
            broker=broker,
            policy=policy,
            config=config,
            authority=authority,
            metrics=metrics,
            clock=clock,
            port=broker.bound_port("default"),
            ws_port=broker.bound_port("ws") if config.ws_port is not None else None,
            tls_port=broker.bound_port("tls") if config.tls_port is not None else None,
            follower=follower,
        )
        if config.metrics_port is not None:
            runner, handle.metrics_port = await serve_metrics(
                metrics, config.host, config.metrics_port
            )
        yield handle
    finally:
        if runner is not None:
            await runner.cleanup()
        if started:
            await broker.shutdown()
        policy.close()
        if follower is not None:
            await follower.stop()
