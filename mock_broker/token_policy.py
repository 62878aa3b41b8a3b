"""SPEC §4's token rules, as the policy a :class:`~mock_broker.hardened.HardenedBroker`
enforces (:class:`~mock_broker.hardened.BrokerPolicy`).

Every decision is the pure :mod:`mock_broker.decision`'s; this shell turns its answers
into CONNACK codes, verdicts, notices and disconnects, keeps one deadline per token of
each live session on the shared clock (the expire notice, then the expiry), and
disconnects sessions whose tokens are revoked or whose account stops being valid.  The
same object answers amqtt's plugin API through :class:`~mock_broker.plugin.TokenAuthPlugin`
(:meth:`TokenPolicy.decide` and the ``*_refusal`` rules): one path decides.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

from sim.shared.clock import Clock
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
from sim.shared.protocol.tokens import TokenClaims

from .authority import Changes, TokenAuthority
from .bytecache import ByteBudgetCache
from .config import BrokerConfig
from .connect import ConnectInfo
from .deadlines import Deadline, DeadlineQueue
from .decision import (
    READ_TYPES,
    WRITE_TYPES,
    Refusal,
    SessionAccess,
    UploadRefused,
    decide_connect,
    decide_publish,
    decide_subscribe,
    decide_upload,
    may_receive,
)
from .hardened import Admission, ClientSession, Connection, Verdict, session_key
from .metrics import BrokerMetrics

__all__ = ["TokenPolicy", "access_of"]

log = logging.getLogger(__name__)

_NOTICE_TOPICS = (SYS_EXPIRE_NOTICE, SYS_INVALID_NOTICE)
#: Bytes of accepted CONNECT credentials remembered (docs/broker.md "Bounded memory").
DECIDED_BUDGET = 16 * 1024 * 1024
_ENTRY_OVERHEAD = 512  # the decision's objects beside the password's own bytes

Decided = tuple[Any, str, int, int, SessionAccess]


def access_of(session: ClientSession | None) -> SessionAccess | None:
    access = session.access if session is not None else None
    return access if isinstance(access, SessionAccess) else None


class TokenPolicy:
    def __init__(
        self,
        config: BrokerConfig,
        *,
        clock: Clock,
        authority: TokenAuthority,
        metrics: BrokerMetrics | None = None,
    ) -> None:
        self.enabled = config.auth_enabled
        self.violation = config.violation
        self.notice_lead = config.expire_notice_lead
        self.clock = clock
        self.authority = authority
        self.metrics = metrics or BrokerMetrics()
        self._accepted = self.metrics.connects.labels("accepted")
        # password (the whole token text) -> (username, client id, authority generation,
        # valid until ms, access).  Keyed by the password alone, so a hit costs no key
        # tuple; the username and client id must match too (a password presented by
        # another client is a miss, decided afresh, and replaces the entry).  Accepted
        # CONNECTs only, within a byte budget: a refused one leaves nothing here.
        self._decided: ByteBudgetCache[Any, Decided] = ByteBudgetCache(DECIDED_BUDGET)
        self._deadlines = DeadlineQueue(clock)
        self._timers: dict[Connection, dict[TokenType, Deadline]] = {}
        self._live: set[Connection] = set()
        # Read at scrape time: exact whatever the order of connects and disconnects.
        self.metrics.connections.set_function(lambda: len(self._live))
        authority.on_change(self._on_authority_change)

    def close(self) -> None:
        """Stop every token timer (the broker has shut down)."""
        self._deadlines.close()

    # -- the rules (the amqtt plugin asks these too) -----------------------------------------

    def decide(
        self, username: str | None, password: str | bytes | None, client_id: str
    ) -> SessionAccess | Refusal:
        """A CONNECT's credentials (SPEC §4); remembered while nothing they depend on
        changed (no key, account or revocation event, no token expired)."""
        if not self.enabled:
            return SessionAccess("Open", "", "", client_id)
        now_ms = self.clock.now_ms()
        authority = self.authority
        known = self._decided.get(password)
        if (
            known is not None
            and known[0] == username
            and known[1] == client_id
            and known[2] == authority.generation
            and now_ms < known[3]
        ):
            return known[4]
        generation = authority.generation
        result = decide_connect(username, password, client_id, authority, now_ms)
        if isinstance(result, SessionAccess):  # refusals are decided afresh
            until = min((c.expire_ms for c in result.tokens.values()), default=2**62)
            size = len(password or "") + len(username or "") + len(client_id) + _ENTRY_OVERHEAD
            self._decided.put(password, (username, client_id, generation, until, result), size)
        return result

    def publish_refusal(self, access: SessionAccess, topic: str) -> InvalidCode | None:
        if is_sys_topic(topic):
            # The broker's namespace: for a token client a resource mismatch; for the
            # others harmless (never routed).
            return InvalidCode.RESOURCE_MISMATCH if access.mode == "Token" else None
        return decide_publish(access, topic)

    def subscribe_refusal(self, access: SessionAccess, topic_filter: str) -> InvalidCode | None:
        if topic_filter in _NOTICE_TOPICS:
            return None  # harmless: notices go straight to their one client, never routed
        return decide_subscribe(access, topic_filter)

    def may_receive(self, access: SessionAccess, topic: str) -> bool:
        return not self.enabled or may_receive(access, topic)

    # -- BrokerPolicy ---------------------------------------------------------------------

    def admit(self, connect: ConnectInfo) -> Admission | int:
        result = self.decide(connect.username, connect.password, connect.client_id)
        if isinstance(result, Refusal):
            self.metrics.connects.labels(result.reason).inc()
            self.metrics.refused_login(connect.source)
            return result.connack
        self._accepted.inc()
        namespace = result.namespace  # the account's instance (docs/broker.md)
        return Admission(session_key(namespace, connect.client_id), result, namespace)

    async def on_connected(self, conn: Connection, session_present: bool) -> None:
        self._live.add(conn)
        access = access_of(conn.session)
        if access is None or access.mode != "Token":
            return
        now = self.clock.now()  # one reading for all the session's tokens
        timers = self._timers.setdefault(conn, {})
        for token_type, claims in access.tokens.items():
            notice_at = claims.expire_ms / 1000.0 - self.notice_lead
            if notice_at > now and token_type not in timers:
                # The common case, inline: a fresh connection's first deadline per token.
                timers[token_type] = self._deadlines.push(
                    notice_at, self._notice_due, conn, token_type, claims
                )
            else:
                self._schedule(conn, token_type, claims, now)

    async def on_disconnected(self, conn: Connection) -> None:
        self._live.discard(conn)
        self.metrics.disconnects.labels(conn.close_reason or "lost").inc()
        timers = self._timers.pop(conn, None)
        if timers:
            cancel = self._deadlines.cancel
            for deadline in timers.values():
                cancel(deadline)

    async def screen_publish(
        self, conn: Connection, topic: str, data: bytes, qos: int, retain: bool
    ) -> Verdict:
        access = access_of(conn.session)
        if access is None:
            return Verdict.DENY
        if topic == SYS_UPLOAD_TOKEN:
            return await self._upload(conn, access, data)
        code = self.publish_refusal(access, topic)
        if code is None:
            return Verdict.ALLOW
        if await self._violation(conn, access, "publish", code, WRITE_TYPES):
            return Verdict.CLOSE
        return Verdict.DENY

    async def authorize_subscribe(self, conn: Connection, topic_filter: str, qos: int) -> Verdict:
        access = access_of(conn.session)
        if access is None:
            return Verdict.DENY
        code = self.subscribe_refusal(access, topic_filter)
        if code is None:
            return Verdict.ALLOW
        if await self._violation(conn, access, "subscribe", code, READ_TYPES):
            return Verdict.CLOSE
        return Verdict.DENY

    def may_deliver(self, session: ClientSession, topic: str) -> bool:
        access = access_of(session)
        return access is not None and self.may_receive(access, topic)

    def may_keep_subscription(self, session: ClientSession, topic_filter: str) -> bool:
        # A resumed session keeps a subscription only if its new tokens cover it as a
        # SUBSCRIBE of it now would be (the provider loads a session's offline messages
        # only once the client "passes the permission verification": docs/broker.md).
        access = access_of(session)
        return access is not None and self.subscribe_refusal(access, topic_filter) is None

    def may_publish_will(self, session: ClientSession) -> bool:
        # A will goes out on the client's behalf: only where it could have published.
        access, will = access_of(session), session.will
        if access is None or will is None:
            return False
        code = self.publish_refusal(access, will.topic)
        if code is not None:
            self.metrics.violations.labels("will", str(int(code))).inc()
        return code is None

    async def _violation(
        self,
        conn: Connection,
        access: SessionAccess,
        action: str,
        code: InvalidCode,
        types: tuple[TokenType, ...],
    ) -> bool:
        """Count it; in notice mode notify and disconnect (``True``), else ``False``."""
        self.metrics.violations.labels(action, str(int(code))).inc()
        if self.violation == "gentle":
            return False
        token_type = next((t for t in types if t in access.tokens), None)
        await self.invalidate(conn, code, token_type, "violation")
        return True

    # -- $SYS/uploadToken ------------------------------------------------------------------

    async def _upload(self, conn: Connection, access: SessionAccess, data: bytes) -> Verdict:
        if access.mode != "Token":
            self.metrics.uploads.labels("ignored").inc()
            return Verdict.DENY
        result = decide_upload(access, data, self.authority, self.clock.now_ms())
        if isinstance(result, UploadRefused):
            self.metrics.uploads.labels(result.reason).inc()
            await self.invalidate(conn, result.code, result.token_type, "upload_refused")
            return Verdict.CLOSE
        token_type, claims = result
        conn.session.access = access.with_token(token_type, claims)
        self._schedule(conn, token_type, claims)
        self.metrics.uploads.labels("ok").inc()
        # The broker sends PUBACK after this returns: after the swap (SPEC §4).
        return Verdict.DENY  # acknowledged, never routed

    # -- notices, expiry, revocation --------------------------------------------------------

    async def invalidate(
        self, conn: Connection, code: InvalidCode, token_type: TokenType | None, reason: str
    ) -> None:
        """``$SYS/tokenInvalidNotice`` to this one client, then disconnect it."""
        if conn.closing or conn.close_reason is not None:
            return
        conn.close_reason = reason
        payload = InvalidNotice(code, token_type).encode()
        if await conn.publish(SYS_INVALID_NOTICE, payload, 0, False):
            self.metrics.notices.labels("invalid", str(int(code))).inc()
        conn.request_close(reason)

    def _schedule(
        self,
        conn: Connection,
        token_type: TokenType,
        claims: TokenClaims,
        now: float | None = None,
    ) -> None:
        """One deadline per token at a time: the expire notice, then the expiry itself."""
        timers = self._timers.setdefault(conn, {})
        old = timers.pop(token_type, None)
        if old is not None:
            self._deadlines.cancel(old)
        notice_at = claims.expire_ms / 1000.0 - self.notice_lead
        if notice_at <= (self.clock.now() if now is None else now):
            self._notice_due(conn, token_type, claims)  # within the lead: at once
        else:
            timers[token_type] = self._deadlines.push(
                notice_at, self._notice_due, conn, token_type, claims
            )

    def _notice_due(self, conn: Connection, token_type: TokenType, claims: TokenClaims) -> None:
        timers = self._timers.get(conn)
        if timers is None:
            return  # disconnected meanwhile
        timers[token_type] = self._deadlines.push(
            claims.expire_ms / 1000.0, self._expiry_due, conn, token_type, claims
        )
        self._spawn(conn, self._expire_notice(conn, token_type, claims))

    def _expiry_due(self, conn: Connection, token_type: TokenType, claims: TokenClaims) -> None:
        timers = self._timers.get(conn)
        if timers is not None:
            timers.pop(token_type, None)
        self._spawn(conn, self._expired(conn, token_type, claims))

    def _spawn(self, conn: Connection, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            conn.spawn(coro)
        except RuntimeError:  # no running loop (a manual clock advanced outside one)
            coro.close()
            log.warning("token timer fired outside the event loop; ignored")

    def _current(self, conn: Connection, token_type: TokenType, claims: TokenClaims) -> bool:
        """Is this still the live connection, holding this very token?"""
        if conn.closing or conn.close_reason is not None:
            return False
        access = access_of(conn.session)
        return access is not None and access.tokens.get(token_type) is claims

    async def _expire_notice(
        self, conn: Connection, token_type: TokenType, claims: TokenClaims
    ) -> None:
        if not self._current(conn, token_type, claims):
            return
        payload = ExpireNotice(claims.expire_ms, token_type).encode()
        await conn.publish(SYS_EXPIRE_NOTICE, payload, 0, False)
        self.metrics.notices.labels("expire", "0").inc()

    async def _expired(self, conn: Connection, token_type: TokenType, claims: TokenClaims) -> None:
        if self._current(conn, token_type, claims):
            await self.invalidate(conn, InvalidCode.EXPIRED, token_type, "expired")

    def _on_authority_change(self, changes: Changes) -> None:
        for conn in list(self._live):
            access = access_of(conn.session)
            if conn.closing or access is None or access.mode == "Open":
                continue
            revoked = next(
                (t for t in map(access.type_of_token, changes.revoked) if t is not None), None
            )
            if revoked is not None:
                self._spawn(conn, self.invalidate(conn, InvalidCode.REVOKED, revoked, "revoked"))
            elif access.access_key_id in changes.accounts_invalid:
                account = self.authority.account(access.access_key_id)
                if (
                    account is None
                    or not account.enabled
                    or access.instance_id not in account.instances
                ):
                    self._spawn(
                        conn, self.invalidate(conn, InvalidCode.ACCOUNT_INVALID, None, "account")
                    )
