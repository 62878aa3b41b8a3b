"""Build and run the token broker (SPEC §4, CONTRACTS.md).

:class:`TokenBroker` is the hardened amqtt broker plus the token rules: it asks the
:class:`~mock_broker.plugin.TokenAuthPlugin` (an adapter to the pure
:mod:`mock_broker.decision`) and turns its answers into CONNACK codes, notices and
disconnects; it keeps one expiry timer and one notice timer per token of each live
session on the shared clock, and disconnects sessions whose tokens get revoked.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from amqtt.session import Session

from sim.shared.clock import Clock, SystemClock
from sim.shared.protocol import (
    SYS_EXPIRE_NOTICE,
    SYS_INVALID_NOTICE,
    SYS_UPLOAD_TOKEN,
    ExpireNotice,
    InvalidCode,
    InvalidNotice,
    TokenType,
    is_sys_topic,
)

from .authority import Changes, TokenAuthority
from .config import BrokerConfig
from .deadlines import Deadline, DeadlineQueue
from .decision import (
    Grant,
    Refusal,
    UploadRefused,
    decide_publish,
    decide_subscribe,
    decide_upload,
    may_receive,
)
from .errors import BrokerConfigError
from .follower import FeedFollower
from .hardening import HardenedBroker, HardenedHandler, Screen
from .metrics import BrokerMetrics, serve_metrics
from .plugin import GRANT_KEY, TokenAuthPlugin, grant_of

__all__ = ["BrokerHandle", "TokenBroker", "amqtt_config", "run_broker"]

log = logging.getLogger(__name__)

_READ = (TokenType.RW, TokenType.R)
_WRITE = (TokenType.RW, TokenType.W)
_NOTICE_TOPICS = (SYS_EXPIRE_NOTICE, SYS_INVALID_NOTICE)
PLUGIN_PATH = "mock_broker.plugin.TokenAuthPlugin"


def amqtt_config(
    config: BrokerConfig, authority: TokenAuthority | None, clock: Clock
) -> dict[str, Any]:
    """The amqtt configuration of a :class:`BrokerConfig`: listeners and our plugin only."""
    listeners: dict[str, Any] = {"default": {"type": "tcp", "bind": f"{config.host}:{config.port}"}}
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
    return {
        "listeners": listeners,
        "plugins": {
            PLUGIN_PATH: {"authority": authority, "clock": clock, "enabled": config.auth_enabled}
        },
    }


class TokenBroker(HardenedBroker):
    def __init__(
        self,
        config: BrokerConfig,
        *,
        clock: Clock,
        authority: TokenAuthority,
        metrics: BrokerMetrics | None = None,
    ) -> None:
        super().__init__(
            amqtt_config(config, authority, clock),
            connect_timeout=config.connect_timeout,
            max_offline_messages=config.max_offline_messages,
        )
        plugin = self.plugins_manager.get_plugin("TokenAuthPlugin")
        if not isinstance(plugin, TokenAuthPlugin):
            raise BrokerConfigError("the token plugin did not load")
        self.plugin = plugin
        self.settings = config
        self.clock = clock
        self.authority = authority
        self.metrics = metrics or BrokerMetrics()
        self._deadlines = DeadlineQueue(clock)
        self._timers: dict[HardenedHandler, dict[TokenType, Deadline]] = {}
        self._notice_lead = config.expire_notice_lead
        self._accepted = self.metrics.connects.labels("accepted")
        # Read at scrape time: exact whatever the order of connects and disconnects.
        self.metrics.connections.set_function(lambda: len(self._handlers))
        authority.on_change(self._on_authority_change)

    # -- CONNECT ------------------------------------------------------------------------

    async def authenticate_connect(self, session: Session, listener_name: str) -> int:
        result = self.plugin.check_connect(session)
        if isinstance(result, Refusal):
            self.metrics.connects.labels(result.reason).inc()
            return result.connack
        session.attributes[GRANT_KEY] = result
        self._accepted.inc()
        return 0

    async def on_connected(self, handler: HardenedHandler, session_present: bool) -> None:
        grant = grant_of(handler.session)
        if grant is None or grant.mode != "Token":
            return
        now = self.clock.now()  # one reading for all the session's tokens
        timers = self._timers.get(handler)
        if timers is None:
            timers = self._timers[handler] = {}
        for token_type, claims in grant.tokens.items():
            notice_at = claims.expire_ms / 1000.0 - self._notice_lead
            if notice_at > now and token_type not in timers:
                # The common case, inline: a fresh connection's first deadline per token.
                timers[token_type] = self._deadlines.push(
                    notice_at, self._notice_due, handler, token_type, claims
                )
            else:
                self._schedule(handler, token_type, claims, now)

    async def on_disconnected(self, session: Session, handler: HardenedHandler) -> None:
        self.metrics.disconnects.labels(handler.close_reason or "lost").inc()
        timers = self._timers.pop(handler, None)
        if timers:
            cancel = self._deadlines.cancel
            for deadline in timers.values():
                cancel(deadline)

    # -- PUBLISH / SUBSCRIBE / RECEIVE ---------------------------------------------------

    async def screen_publish(
        self, handler: HardenedHandler, topic: str, data: bytes, qos: int, retain: bool
    ) -> Screen:
        grant = grant_of(handler.session)
        if grant is None:
            return Screen.DROP
        if topic == SYS_UPLOAD_TOKEN:
            return await self._upload(handler, grant, data)
        if is_sys_topic(topic):
            # The broker's namespace: never routed; for a token client a resource mismatch.
            if grant.mode != "Token":
                return Screen.DROP
            code: InvalidCode | None = InvalidCode.RESOURCE_MISMATCH
        else:
            code = decide_publish(grant, topic)
            if code is None:
                return Screen.ROUTE
        assert code is not None
        if await self._violation(handler, grant, "publish", code, _WRITE):
            return Screen.CLOSE
        return Screen.DROP

    async def authorize_subscribe(self, handler: HardenedHandler, topic_filter: str) -> bool | None:
        grant = grant_of(handler.session)
        if grant is None:
            return False
        if topic_filter in _NOTICE_TOPICS:
            # Harmless: notices go straight to their one client, nothing is routed there.
            return True
        code = decide_subscribe(grant, topic_filter)
        if code is None:
            return True
        if await self._violation(handler, grant, "subscribe", code, _READ):
            return None
        return False

    async def publish_will(self, session: Session) -> None:
        # The broker publishes a will on the client's behalf: only where it could have.
        grant = grant_of(session)
        topic = session.will_topic or ""
        if grant is None or (is_sys_topic(topic) and grant.mode == "Token"):
            return
        code = decide_publish(grant, topic)
        if code is not None:
            self.metrics.violations.labels("will", str(int(code))).inc()
            return
        await super().publish_will(session)

    def may_deliver(self, session: Session, topic: str) -> bool:
        if not self.plugin.enabled:
            return True
        grant = grant_of(session)
        return grant is not None and may_receive(grant, topic)

    async def _violation(
        self,
        handler: HardenedHandler,
        grant: Grant,
        action: str,
        code: InvalidCode,
        types: tuple[TokenType, ...],
    ) -> bool:
        """Count it; in notice mode notify and disconnect (``True``), else ``False``."""
        self.metrics.violations.labels(action, str(int(code))).inc()
        if self.settings.violation == "gentle":
            return False
        token_type = next((t for t in types if t in grant.tokens), None)
        await self.invalidate(handler, code, token_type, "violation")
        return True

    # -- $SYS/uploadToken ------------------------------------------------------------------

    async def _upload(self, handler: HardenedHandler, grant: Grant, data: bytes) -> Screen:
        session = handler.session
        assert session is not None
        if grant.mode != "Token":
            self.metrics.uploads.labels("ignored").inc()
            return Screen.DROP
        result = decide_upload(grant, data, self.authority, self.clock.now_ms())
        if isinstance(result, UploadRefused):
            self.metrics.uploads.labels(result.reason).inc()
            await self.invalidate(handler, result.code, result.token_type, "upload_refused")
            return Screen.CLOSE
        token_type, claims = result
        session.attributes[GRANT_KEY] = grant.with_token(token_type, claims)
        self._schedule(handler, token_type, claims)
        self.metrics.uploads.labels("ok").inc()
        # The handler sends PUBACK after this returns: after the swap (SPEC §4).
        return Screen.DROP

    # -- notices, expiry, revocation --------------------------------------------------------

    async def invalidate(
        self,
        handler: HardenedHandler,
        code: InvalidCode,
        token_type: TokenType | None,
        reason: str,
    ) -> None:
        """``$SYS/tokenInvalidNotice`` to this one client, then disconnect it."""
        if handler.closing or handler.close_reason is not None:
            return
        handler.close_reason = reason
        try:
            payload = InvalidNotice(code, token_type).encode()
            await handler.mqtt_publish(SYS_INVALID_NOTICE, payload, 0, retain=False)
            self.metrics.notices.labels("invalid", str(int(code))).inc()
        except Exception as exc:  # the socket may be gone already
            log.debug("invalid notice not sent: %r", exc)
        handler.request_close(reason)

    def _schedule(
        self,
        handler: HardenedHandler,
        token_type: TokenType,
        claims: Any,
        now: float | None = None,
    ) -> None:
        """One deadline per token at a time: the expire notice, then the expiry itself."""
        timers = self._timers.get(handler)
        if timers is None:
            timers = self._timers[handler] = {}
        else:
            old = timers.pop(token_type, None)
            if old is not None:
                self._deadlines.cancel(old)
        notice_at = claims.expire_ms / 1000.0 - self._notice_lead
        if notice_at <= (self.clock.now() if now is None else now):
            self._notice_due(handler, token_type, claims)  # within the lead: at once
        else:
            timers[token_type] = self._deadlines.push(
                notice_at, self._notice_due, handler, token_type, claims
            )

    def _notice_due(self, handler: HardenedHandler, token_type: TokenType, claims: Any) -> None:
        timers = self._timers.get(handler)
        if timers is None:
            return  # disconnected meanwhile
        timers[token_type] = self._deadlines.push(
            claims.expire_ms / 1000.0, self._expiry_due, handler, token_type, claims
        )
        self._spawn_if_running(partial(self._expire_notice, handler, token_type, claims))

    def _expiry_due(self, handler: HardenedHandler, token_type: TokenType, claims: Any) -> None:
        timers = self._timers.get(handler)
        if timers is not None:
            timers.pop(token_type, None)
        self._spawn_if_running(partial(self._expired, handler, token_type, claims))

    def _spawn_if_running(self, coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        try:
            self.spawn(coro_fn())
        except RuntimeError:  # no running loop (a manual clock advanced outside one)
            log.warning("token timer fired outside the event loop; ignored")

    def _current(self, handler: HardenedHandler, token_type: TokenType, claims: Any) -> bool:
        """Is this still the live connection, holding this very token?"""
        if handler.closing or handler.close_reason is not None:
            return False
        grant = grant_of(handler.session)
        return grant is not None and grant.tokens.get(token_type) is claims

    async def _expire_notice(
        self, handler: HardenedHandler, token_type: TokenType, claims: Any
    ) -> None:
        if not self._current(handler, token_type, claims):
            return
        payload = ExpireNotice(claims.expire_ms, token_type).encode()
        await handler.mqtt_publish(SYS_EXPIRE_NOTICE, payload, 0, retain=False)
        self.metrics.notices.labels("expire", "0").inc()

    async def _expired(self, handler: HardenedHandler, token_type: TokenType, claims: Any) -> None:
        if self._current(handler, token_type, claims):
            await self.invalidate(handler, InvalidCode.EXPIRED, token_type, "expired")

    def _on_authority_change(self, changes: Changes) -> None:
        for session, handler in list(self._sessions.values()):
            if not isinstance(handler, HardenedHandler) or handler.closing:
                continue
            if session.transitions.state != "connected":
                continue
            grant = grant_of(session)
            if grant is None or grant.mode == "Open":
                continue
            revoked = next(
                (t for t in map(grant.type_of_token, changes.revoked) if t is not None), None
            )
            if revoked is not None:
                self._spawn_if_running(
                    partial(self.invalidate, handler, InvalidCode.REVOKED, revoked, "revoked")
                )
            elif grant.access_key_id in changes.accounts_invalid:
                account = self.authority.account(grant.access_key_id)
                if (
                    account is None
                    or not account.enabled
                    or grant.instance_id not in account.instances
                ):
                    self._spawn_if_running(
                        partial(
                            self.invalidate, handler, InvalidCode.ACCOUNT_INVALID, None, "account"
                        )
                    )


@dataclass
class BrokerHandle:
    broker: TokenBroker
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
    authority = authority or TokenAuthority()
    if config.auth_enabled and config.authserver_url:
        follower = FeedFollower(
            config.authserver_url,
            authority,
            clock=clock,
            poll_timeout=config.feed_poll_timeout,
            metrics=metrics,
        )
        await follower.start(wait=config.bootstrap_timeout)
    broker = TokenBroker(config, clock=clock, authority=authority, metrics=metrics)
    runner = None
    started = False
    try:
        await broker.start()
        started = True
        handle = BrokerHandle(
            broker=broker,
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
        broker._deadlines.close()
        if follower is not None:
            await follower.stop()
