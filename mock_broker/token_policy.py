"""SPEC §4's token rules, as the policy a :class:`~mock_broker.hardened.HardenedBroker`
enforces (:class:`~mock_broker.hardened.BrokerPolicy`).

Every decision is the pure :mod:`mock_broker.decision`'s; this shell turns its answers
into CONNACK codes, verdicts, notices and disconnects, keeps one deadline per token of
each live session on the shared clock (the expire notice, then the expiry), and
disconnects sessions whose tokens are revoked or whose account stops being valid.  The
same object answers amqtt's plugin API through :class:`~mock_broker.plugin.TokenAuthPlugin`
(:meth:`TokenPolicy.decide` and the ``*_refusal`` rules): one path decides.

The provider profile (SPEC §4a) is the pure :mod:`mock_broker.profile`'s: this shell
counts every use it reports in the fidelity report (:attr:`TokenPolicy.fidelity`, both
profiles) and carries out its outcome (provider profile only).  P2P messages
(``<parent>/p2p/<clientId>``) go to the one session :func:`session_key_for` names, of the
sender's instance, through :meth:`HardenedBroker.deliver_to`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from sim.shared.clock import Clock
from sim.shared.protocol import (
    CLIENT_ID_RULE,
    SYS_EXPIRE_NOTICE,
    SYS_INVALID_NOTICE,
    SYS_UPLOAD_TOKEN,
    ExpireNotice,
    InvalidCode,
    InvalidCredentials,
    InvalidNotice,
    TokenType,
    client_id_fault,
    is_sys_topic,
    p2p_target,
    parse_username,
)
from sim.shared.protocol.tokens import TokenClaims

from .audit import ATTRIBUTABLE_REFUSALS, AuditReport, DeviceAudit
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
from .fidelity import Feature, FidelityLedger
from .hardened import (
    Admission,
    ClientSession,
    Connection,
    Grant,
    HardenedBroker,
    Verdict,
    session_key,
)
from .metrics import BrokerMetrics
from .profile import Outcome, Ruling, rule_publish, rule_subscribe, rule_will

__all__ = ["TokenPolicy", "access_of", "session_key_for"]

log = logging.getLogger(__name__)

_NOTICE_TOPICS = (SYS_EXPIRE_NOTICE, SYS_INVALID_NOTICE)
#: Bytes of accepted CONNECT credentials remembered (docs/broker.md "Bounded memory").
DECIDED_BUDGET = 16 * 1024 * 1024
_ENTRY_OVERHEAD = 512  # the decision's objects beside the password's own bytes
#: A refused client id is worth one WARNING line saying the rule (a client written for
#: plain MQTT -- mosquitto_sub without -i -- gets CONNACK 2 and no other hint), at most
#: once per kind of fault in this many real seconds; the metrics count every refusal.
CLIENT_ID_WARNING_EVERY_S = 60.0

Decided = tuple[Any, str, int, int, SessionAccess]


class _UploadProbe:
    """After an accepted ``$SYS/uploadToken``: has the event loop run since, i.e. could
    anything read now have been sent after the client saw the PUBACK?  Armed (a
    ``call_soon``) before the PUBACK is written; while it has not fired, every packet the
    connection reads was already in its buffer when the PUBACK went out, so the client
    sent it without having seen the PUBACK (the device audit, docs/your-appserver.md)."""

    __slots__ = ("before", "fired", "new_id", "old_id", "token_type", "upload_ms")

    def __init__(
        self, before: SessionAccess, token_type: TokenType, old_id: str, new_id: str, at: int
    ) -> None:
        self.before = before
        self.token_type = token_type
        self.old_id = old_id
        self.new_id = new_id
        self.upload_ms = at
        self.fired = False

    def fire(self) -> None:
        self.fired = True


def access_of(session: ClientSession | None) -> SessionAccess | None:
    access = session.access if session is not None else None
    return access if isinstance(access, SessionAccess) else None


def session_key_for(access: SessionAccess, client_id: str) -> str:
    """The session key of ``client_id`` as seen from a session of ``access``: within its
    namespace (its account's instance), the one place a client id becomes a session key
    (CONNECT, P2P target)."""
    return session_key(access.namespace, client_id)


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
        self.profile = config.profile
        self.provider = config.profile == "provider"
        self.notice_lead = config.expire_notice_lead
        self.clock = clock
        self.authority = authority
        self.metrics = metrics or BrokerMetrics()
        self.fidelity = FidelityLedger(config.profile)
        self.metrics.report_fidelity(self.fidelity)
        # The device audit (docs/your-appserver.md): token clients' records, fed below.
        self.audit = DeviceAudit(config.audit, profile=config.profile)
        self.audit.on_finding = self.metrics.count_finding
        self.metrics.report_audit(self.audit_report)
        self._probes: dict[Connection, _UploadProbe] = {}
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
        # kind of client id fault -> when it was last logged (a handful of fixed kinds)
        self._id_warned: dict[str, float] = {}
        # Read at scrape time: exact whatever the order of connects and disconnects.
        self.metrics.connections.set_function(lambda: len(self._live))
        authority.on_change(self._on_authority_change)

    def close(self) -> None:
        """Stop every token timer (the broker has shut down)."""
        self._deadlines.close()

    def audit_report(self) -> AuditReport:
        """The device audit now, with the fidelity report's uses (SPEC §4a)."""
        return self.audit.report(self.clock.now(), self.fidelity.report())

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
            if result.reason in ATTRIBUTABLE_REFUSALS:
                self._audit_refused(connect, result)
            if result.reason == "client_id":
                self._warn_client_id(connect.client_id)
            return result.connack
        self._accepted.inc()
        # The account's instance is the session's namespace (docs/broker.md).
        return Admission(session_key_for(result, connect.client_id), result, result.namespace)

    def _audit_refused(self, connect: ConnectInfo, refusal: Refusal) -> None:
        """A CONNECT refused for its token, of a known account: the audit's (only these:
        a refusal before the account is known leaves no record)."""
        try:
            user = parse_username(connect.username)
        except InvalidCredentials:  # pragma: no cover - decided already
            return
        self.audit.refused(
            self.clock.now(),
            f"{user.access_key_id}|{user.instance_id}",
            connect.client_id,
            refusal.reason,
            refusal.token_type,
            refusal.claims,
        )

    def _warn_client_id(self, client_id: str) -> None:
        kind = client_id_fault(client_id) or "not a valid client id"
        now = time.monotonic()
        last = self._id_warned.get(kind)
        if last is not None and now - last < CLIENT_ID_WARNING_EVERY_S:
            return
        self._id_warned[kind] = now
        log.warning(
            "refused client id %r (CONNACK 2, identifier rejected: %s); %s. Counted in"
            ' mqtt_broker_connects_total{outcome="client_id"}; said at most once a minute'
            " per kind of fault",
            client_id[:80],
            kind,
            CLIENT_ID_RULE,
        )

    async def on_connected(self, conn: Connection, session_present: bool) -> None:
        self._live.add(conn)
        access = access_of(conn.session)
        if access is not None and access.mode != "Open":
            self.audit.connected(
                self.clock.now(),
                access.namespace,
                access.client_id,
                access.tokens,
                is_revoked=self.authority.is_revoked,
            )
        if access is not None and conn.session.will is not None:
            self._count(access, rule_will(provider=self.provider))
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
        self._probes.pop(conn, None)
        access = access_of(conn.session)
        if access is not None and access.mode != "Open":
            self.audit.ended(
                self.clock.now(), access.namespace, access.client_id, conn.close_reason or "lost"
            )
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
        ruling = None
        if not is_sys_topic(topic):
            if self._probes:
                self._before_ack(conn, access, "publish", topic)
            ruling = rule_publish(
                topic, len(data), retain, parents=self._parents(access), provider=self.provider
            )
            self._count(access, ruling)
        code = self.publish_refusal(access, topic)
        if code is not None:
            if await self._violation(conn, access, "publish", code, WRITE_TYPES):
                return Verdict.CLOSE
            return Verdict.DENY
        if ruling is None:
            return Verdict.ALLOW
        outcome = self._outcome(conn, ruling)
        if outcome is not Outcome.ALLOW and outcome is not Outcome.UNRETAINED:
            return Verdict.CLOSE if outcome is Outcome.CLOSE else Verdict.DENY
        target = p2p_target(topic)
        if target is not None:
            self._send_p2p(conn, access, target[1], topic, data, qos)
            return Verdict.DENY  # acknowledged; reaches its one target, no subscriber
        return Verdict.UNRETAINED if outcome is Outcome.UNRETAINED else Verdict.ALLOW

    async def authorize_subscribe(
        self, conn: Connection, topic_filter: str, qos: int
    ) -> Verdict | Grant:
        access = access_of(conn.session)
        if access is None:
            return Verdict.DENY
        ruling = None
        if not is_sys_topic(topic_filter):
            if self._probes:
                self._before_ack(conn, access, "subscribe", topic_filter)
            session = conn.session
            ruling = rule_subscribe(
                topic_filter,
                qos,
                clean_session=session.clean,
                held=sum(1 for f in session.filters if not is_sys_topic(f)),
                renewed=topic_filter in session.filters,
                parents=self._parents(access),
                provider=self.provider,
            )
            self._count(access, ruling)
        code = self.subscribe_refusal(access, topic_filter)
        if code is not None:
            if await self._violation(conn, access, "subscribe", code, READ_TYPES):
                return Verdict.CLOSE
            return Verdict.DENY
        if ruling is None:
            return Verdict.ALLOW
        outcome = self._outcome(conn, ruling)
        if outcome is Outcome.CLOSE:
            return Verdict.CLOSE
        if outcome is Outcome.DROP:
            return Verdict.DENY
        return Grant(ruling.qos) if ruling.qos < qos else Verdict.ALLOW

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
        # SPEC §4a: the provider never publishes a will (counted at CONNECT).
        # Otherwise a will goes out on the client's behalf: only where it could have
        # published.
        access, will = access_of(session), session.will
        if access is None or will is None or self.provider:
            return False
        code = self.publish_refusal(access, will.topic)
        if code is not None:
            self.metrics.violations.labels("will", str(int(code))).inc()
        return code is None

    # -- the provider profile (SPEC §4a) ------------------------------------------------------

    def _parents(self, access: SessionAccess) -> frozenset[str] | None:
        """The parent topics a session's topics must start with; ``None`` for a session
        of no instance (auth off)."""
        if access.mode == "Open":
            return None
        return self.authority.parent_topics(access.instance_id)

    def _count(self, access: SessionAccess, ruling: Ruling) -> None:
        for feature in ruling.uses:
            self._use(access, feature)

    def _use(self, access: SessionAccess, feature: Feature) -> None:
        self.fidelity.record(access.instance_id, access.client_id, feature)
        self.metrics.fidelity.labels(str(feature)).inc()

    def _outcome(self, conn: Connection, ruling: Ruling) -> Outcome:
        """A ruling's outcome as carried out: a CLOSE closes the connection (no notice:
        the token is not at fault), or, with ``violation=gentle``, is only a refusal."""
        if ruling.outcome is not Outcome.CLOSE:
            return ruling.outcome
        if self.violation == "gentle":
            return Outcome.DROP
        conn.request_close("parent_topic")
        return Outcome.CLOSE

    def _send_p2p(
        self,
        conn: Connection,
        access: SessionAccess,
        client_id: str,
        topic: str,
        data: bytes,
        qos: int,
    ) -> None:
        """SPEC §4a P2P: to the session of ``client_id`` in the sender's instance, without
        a subscription and whatever its read tokens (the receiver "only needs to be
        initialised", the P2P doc).  A client with no session there: lost and counted."""
        broker, key = conn.owner, session_key_for(access, client_id)
        target = broker.sessions.get(key) if isinstance(broker, HardenedBroker) else None
        theirs = access_of(target)
        if (
            not isinstance(broker, HardenedBroker)
            or target is None
            or theirs is None
            or theirs.namespace != access.namespace  # tenants never see each other
        ):
            self._use(access, Feature.P2P_UNKNOWN_CLIENT)
            return
        if self.provider and not target.clean:
            qos = min(qos, 1)  # no QoS 2 on a persistent session (SPEC §4a)
        if not broker.deliver_to(key, topic, data, qos):
            self._use(access, Feature.P2P_UNKNOWN_CLIENT)

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
        self._audit_upload(conn, access, token_type, claims)
        # The broker sends PUBACK after this returns: after the swap (SPEC §4).
        return Verdict.DENY  # acknowledged, never routed

    def _audit_upload(
        self, conn: Connection, before: SessionAccess, token_type: TokenType, claims: TokenClaims
    ) -> None:
        """Tell the audit, and arm the probe that tells a packet read before the PUBACK
        could have reached the client from one read after (:class:`_UploadProbe`)."""
        now = self.clock.now()
        old = before.tokens.get(token_type)
        self.audit.uploaded(now, before.namespace, before.client_id, token_type, old, claims)
        old_id = old.token_id if old is not None else ""
        probe = _UploadProbe(before, token_type, old_id, claims.token_id, round(now * 1000))
        try:
            asyncio.get_running_loop().call_soon(probe.fire)
        except RuntimeError:  # pragma: no cover - no loop (amqtt's plugin API in a test)
            return
        self._probes[conn] = probe

    def _before_ack(self, conn: Connection, access: SessionAccess, action: str, topic: str) -> None:
        """A PUBLISH or SUBSCRIBE after an upload: did it need the new token, before the
        client could know it had it?"""
        probe = self._probes.get(conn)
        if probe is None:
            return
        if probe.fired:
            del self._probes[conn]
            return
        if action == "publish":
            old_ok = self.publish_refusal(probe.before, topic) is None
            new_ok = self.publish_refusal(access, topic) is None
        else:
            old_ok = self.subscribe_refusal(probe.before, topic) is None
            new_ok = self.subscribe_refusal(access, topic) is None
        self.audit.used_before_ack(
            self.clock.now(),
            access.namespace,
            access.client_id,
            action=action,
            topic=topic,
            waited_for_ack=False,
            old_allows=old_ok,
            new_allows=new_ok,
            token_type=str(probe.token_type),
            old_token_id=probe.old_id,
            new_token_id=probe.new_id,
            upload_ms=probe.upload_ms,
        )

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
