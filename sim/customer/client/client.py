"""``TokenClient``: a token-aware asyncio MQTT client (SPEC §6) -- the SDK's shell.

The decisions are the pure core's (:mod:`sim.customer.client.policy`); this module carries them
out with a clock, the AppServer, the token store and one MQTT connection at a time.

Life of a client::

    start ─► token: store (same permissions, still valid) or AppServer ─► CONNECT
      ▲            │ 401/403: stop ("refused")        │ CONNACK 4/5: discard, ask again
      │            │ 503/down: backoff                │ network error: backoff
      │                                               ▼
      └── backoff (full jitter) ◄── session lost ── connected: subscribe, refresh timer,
                                                   notices, publish/subscribe gate

Refresh ahead of expiry (``margin`` before, minus this client's share of ``spread``):
* ``upload``: ask the AppServer, publish ``$SYS/uploadToken`` at QoS 1, hold every new
  publish/subscribe until its PUBACK, then persist the new token;
* ``reconnect``: ask the AppServer, persist, DISCONNECT cleanly (no will), CONNECT at
  once with the new token.
``$SYS/tokenExpireNotice`` forces a refresh now; ``$SYS/tokenInvalidNotice`` with a
dead-token code discards the stored token so the next CONNECT uses a fresh one.
All waiting on time goes through the :class:`~sim.shared.clock.Clock` passed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp

from sim.shared.clock import Clock, TimerHandle
from sim.shared.protocol import (
    SYS_EXPIRE_NOTICE,
    SYS_INVALID_NOTICE,
    SYS_UPLOAD_TOKEN,
    ExpireNotice,
    InvalidNotice,
    UploadToken,
    is_sys_topic,
    parse_actions,
    render_actions,
    validate_client_id,
    validate_filter,
)
from sim.shared.protocol.errors import WireFormatError

from .appserver_api import TokenGrant, request_token
from .errors import (
    ClientRefused,
    ConnectFailed,
    NotAuthorized,
    NotConnected,
    SdkError,
    TokenRequestError,
)
from .events import ClientEvent, Counters, EventKind, EventLog
from .policy import (
    Backoff,
    RefreshAction,
    RefreshMode,
    RefreshPolicy,
    after_expire_notice,
    after_same_token,
    decide_refresh,
    is_reusable,
    react_to_invalid,
)
from .store import StoredToken, TokenStore
from .transport import BrokerAddress, Connection, IncomingMessage, Will, parse_broker_url

__all__ = ["ClientConfig", "ClientState", "TokenClient"]

log = logging.getLogger(__name__)

#: virtual seconds a session must last for the backoff to start again from its first step
STABLE_SESSION_S = 10.0

ClientState = Literal["idle", "connecting", "connected", "backoff", "refused", "closed"]


@dataclass(frozen=True)
class ClientConfig:
    """One client.  ``account``/``secret`` authenticate it to the AppServer (HTTP Basic);
    ``account`` defaults to the MQTT ``client_id``."""

    client_id: str
    secret: str = field(repr=False)
    appserver_url: str
    broker_url: str
    resources: tuple[str, ...]
    actions: str = "R,W"
    account: str | None = None
    #: directory of persisted tokens (one file per client id); None = memory only
    store_dir: Path | None = None
    #: fsync every token write (turn off only for throwaway fleets)
    fsync: bool = True
    refresh: RefreshPolicy = field(default_factory=RefreshPolicy)
    backoff: Backoff = field(default_factory=Backoff)
    clean_session: bool = True
    keepalive: int = 60
    will: Will | None = None
    #: (filter, qos) subscribed on every new session
    subscriptions: tuple[tuple[str, int], ...] = ()
    #: real seconds: network timeouts are about sockets, not token time
    connect_timeout: float = 10.0
    request_timeout: float = 10.0
    ack_timeout: float = 10.0
    #: seed of this client's jitter; None = unpredictable (still per client)
    seed: int | str | None = None
    #: clock seconds a session must last for the next loss to back off from the first
    #: step again (shorter sessions count as flapping: each loss backs off further)
    stable_session_s: float = STABLE_SESSION_S

    def __post_init__(self) -> None:
        validate_client_id(self.client_id)
        if not self.resources:
            raise ValueError("a client needs at least one resource (topic filter)")
        for r in self.resources:
            validate_filter(r)
        object.__setattr__(self, "actions", render_actions(parse_actions(self.actions)))
        object.__setattr__(self, "resources", tuple(sorted(self.resources)))
        parse_broker_url(self.broker_url)
        if not self.appserver_url.startswith(("http://", "https://")):
            raise ValueError(f"AppServer URL must be http(s)://..., got {self.appserver_url!r}")
        for topic, qos in self.subscriptions:
            validate_filter(topic)
            if qos not in (0, 1):
                raise ValueError("subscriptions use QoS 0 or 1")
        if not 0 < self.keepalive <= 65535:
            raise ValueError("keepalive must be 1..65535 seconds")
        if not self.stable_session_s >= 0:
            raise ValueError("stable_session_s must be >= 0")

    @property
    def account_id(self) -> str:
        return self.account or self.client_id


class TokenClient:
    """A token-aware MQTT client.  ``async with TokenClient(cfg, clock=c) as client:``
    starts it and returns once it is connected (or raises :class:`ClientRefused`)."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        clock: Clock,
        http: aiohttp.ClientSession | None = None,
        store: TokenStore | None = None,
        on_message: Callable[[IncomingMessage], object] | None = None,
        rng: random.Random | None = None,
        max_events: int = 256,
    ) -> None:
        self.config = config
        self.clock = clock
        self.counters = Counters()
        self.events = EventLog(max_events)
        self.messages: asyncio.Queue[IncomingMessage] = asyncio.Queue()
        self.state: ClientState = "idle"
        self.failure: SdkError | None = None
        self._on_message = on_message
        self._http = http
        self._own_http = http is None
        if store is None and config.store_dir is not None:
            store = TokenStore(config.store_dir, fsync=config.fsync)
        self._store = store
        if rng is None:
            seed = None if config.seed is None else f"{config.seed}:{config.client_id}"
            rng = random.Random(seed)
        self._rng = rng
        self._address: BrokerAddress = parse_broker_url(config.broker_url)
        self._subscriptions: dict[str, int] = dict(config.subscriptions)
        self._token: StoredToken | None = None
        self._discard_reason: str | None = None
        self._jitter = self._rng.random()
        self._conn: Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None  # only while refreshing
        self._refresh_timer: TimerHandle | None = None  # idle clients hold just this
        self._scheduled_for: float | None = None
        self._connected = asyncio.Event()
        self._ready = asyncio.Event()  # connected and no token upload in flight
        self._stopped = asyncio.Event()
        self._force_refresh = False
        self._notice_refresh_at: float | None = None
        self._not_before = 0.0
        self._refresh_failures = 0
        self._planned_reconnect = False
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---------------------------------------------------------------- public face

    @property
    def client_id(self) -> str:
        return self.config.client_id

    @property
    def token(self) -> StoredToken | None:
        """The token in use (or to be used at the next CONNECT)."""
        return self._token

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("client already started")
        self._loop = asyncio.get_running_loop()
        if self._http is None:
            self._http = aiohttp.ClientSession()
        self._task = asyncio.ensure_future(self._run())

    async def wait_connected(self) -> None:
        """Until a session is up; raises :class:`ClientRefused` if the client stopped."""
        if self._connected.is_set():
            return
        await _first_of(self._connected, self._stopped)
        if not self._connected.is_set():
            raise self.failure or ClientRefused("client stopped")

    async def wait_ready(self) -> Connection:
        """Until publishing is allowed: connected and no token upload awaiting its PUBACK."""
        while True:
            if self._ready.is_set() and self._conn is not None and self._conn.is_open:
                return self._conn
            if self._stopped.is_set():
                raise self.failure or ClientRefused("client stopped")
            await _first_of(self._ready, self._stopped)

    async def publish(
        self, topic: str, payload: bytes | str, *, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish; QoS 1 returns once the broker acknowledged it.  A QoS 1 message whose
        session ends before the PUBACK is sent again on the next session (at least once)."""
        data = payload.encode() if isinstance(payload, str) else payload
        while True:
            conn = await self.wait_ready()
            try:
                await conn.publish(
                    topic, data, qos=qos, retain=retain, ack_timeout=self.config.ack_timeout
                )
            except NotConnected:
                if qos == 0:
                    raise
                continue
            self.counters.published += 1
            return

    async def subscribe(self, topic: str, qos: int = 1) -> int:
        """Subscribe now and on every later session; return the granted QoS (0x80 refused)."""
        validate_filter(topic)
        self._subscriptions[topic] = qos
        while True:
            conn = await self.wait_ready()
            try:
                return await conn.subscribe(topic, qos, ack_timeout=self.config.ack_timeout)
            except NotConnected:
                continue

    async def refresh_now(self) -> None:
        """Refresh the token at once, the client's way (tests, operators)."""
        self._force_refresh = True
        self._not_before = 0.0
        self._rearm()

    async def close(self) -> None:
        self._closing = True
        conn = self._conn
        if conn is not None:
            await conn.close()
        self._cancel_refresh_timer()
        for task in (self._refresh_task, self._task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.state != "refused":
            self.state = "closed"
        self._connected.clear()
        self._ready.clear()
        self._stopped.set()
        self._emit(EventKind.CLOSED)
        if self._own_http and self._http is not None:
            await self._http.close()

    async def __aenter__(self) -> TokenClient:
        await self.start()
        try:
            await self.wait_connected()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- the loop

    async def _run(self) -> None:
        attempt = 0
        try:
            while not self._closing and not self._stopped.is_set():
                try:
                    token, from_store = await self._obtain_token()
                except TokenRequestError as exc:
                    if exc.permanent:
                        self._refuse(exc)
                        return
                    await self._backoff(attempt, floor=getattr(exc, "retry_after", 0.0))
                    attempt += 1
                    continue
                try:
                    conn = await self._connect(token)
                except NotAuthorized as exc:
                    self._discard(f"CONNACK {exc.return_code}")
                    if from_store:
                        continue  # a stale stored token: ask again at once
                    await self._backoff(attempt)
                    attempt += 1
                    continue
                except ConnectFailed:
                    await self._backoff(attempt)
                    attempt += 1
                    continue
                started = self.clock.now()
                planned = await self._serve(conn)
                if self.clock.now() - started >= self.config.stable_session_s:
                    attempt = 0  # a session that held: the next loss starts afresh
                if not planned and not self._closing:
                    # A session that keeps dropping right after CONNACK backs off further
                    # each time instead of flapping at the first step forever.
                    await self._backoff(attempt)
                    attempt += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave a silent zombie client
            log.exception("client %s stopped by an unexpected error", self.client_id)
            self.failure = ClientRefused(f"unexpected error: {type(exc).__name__}")
            self.state = "refused"
            self._stopped.set()

    async def _obtain_token(self) -> tuple[StoredToken, bool]:
        cfg, now = self.config, self.clock.now()
        if self._discard_reason is not None:
            reason, self._discard_reason = self._discard_reason, None
            self._token = None
            if self._store is not None:
                await asyncio.to_thread(self._store.delete, cfg.client_id)
            self.counters.reapplies += 1
            grant = await self._ask(f"reapply: {reason}")
            return await self._adopt(grant), False
        if self._token is None and self._store is not None:
            stored = await asyncio.to_thread(self._store.load, cfg.client_id)
            if (
                stored is not None
                and stored.matches(cfg.actions, cfg.resources)
                and is_reusable(now, stored.expire_at, cfg.refresh)
            ):
                self._set_token(stored)
                self.counters.tokens_from_store += 1
                self._emit(EventKind.TOKEN_FROM_STORE, expire_ms=stored.expire_ms)
                return stored, True
        if self._token is not None and is_reusable(now, self._token.expire_at, cfg.refresh):
            return self._token, False
        grant = await self._ask("no valid token")
        return await self._adopt(grant), False

    async def _adopt(self, grant: TokenGrant) -> StoredToken:
        self._set_token(grant.token)
        await self._persist()
        return grant.token

    def _set_token(self, token: StoredToken) -> None:
        if self._token is None or token.token != self._token.token:
            self._jitter = self._rng.random()  # a new token, a new place in the spread
        self._token = token

    async def _persist(self) -> None:
        if self._store is not None and self._token is not None:
            await asyncio.to_thread(self._store.save, self.config.client_id, self._token)

    async def _ask(self, reason: str) -> TokenGrant:
        cfg = self.config
        self.counters.token_requests += 1
        self._emit(EventKind.TOKEN_REQUESTED, reason=reason)
        assert self._http is not None
        try:
            grant = await request_token(
                self._http,
                cfg.appserver_url,
                account=cfg.account_id,
                secret=cfg.secret,
                resources=cfg.resources,
                actions=cfg.actions,
                request_timeout=cfg.request_timeout,
            )
        except TokenRequestError as exc:
            self.counters.token_request_failures += 1
            self._emit(EventKind.TOKEN_REQUEST_FAILED, error=str(exc), permanent=exc.permanent)
            raise
        self.counters.tokens_received += 1
        self._emit(EventKind.TOKEN_RECEIVED, expire_ms=grant.token.expire_ms, stale=grant.stale)
        return grant

    async def _connect(self, token: StoredToken) -> Connection:
        cfg = self.config
        self.state = "connecting"
        self.counters.connect_attempts += 1
        self._emit(EventKind.CONNECTING)
        conn = Connection(
            cfg.client_id,
            on_message=self._dispatch,
            clean_session=cfg.clean_session,
            will=cfg.will,
        )
        try:
            present = await conn.open(
                self._address,
                username=token.username,
                password=token.password,
                keepalive=cfg.keepalive,
                connect_timeout=cfg.connect_timeout,
            )
        except NotAuthorized as exc:
            self.counters.not_authorized += 1
            self._emit(EventKind.NOT_AUTHORIZED, return_code=exc.return_code)
            raise
        except ConnectFailed as exc:
            self.counters.connect_failures += 1
            self._emit(EventKind.CONNECT_FAILED, error=str(exc))
            raise
        self.counters.connects += 1
        self._emit(EventKind.CONNECTED, session_present=present)
        return conn

    async def _serve(self, conn: Connection) -> bool:
        """Run one session until it ends; True if we ended it to reconnect on purpose."""
        self._conn = conn
        self._planned_reconnect = False
        try:
            if not conn.session_present or self.config.clean_session:
                for topic, qos in list(self._subscriptions.items()):
                    await conn.subscribe(topic, qos, ack_timeout=self.config.ack_timeout)
            self.state = "connected"
            self._connected.set()
            self._ready.set()
            # REFRESH_SCHEDULED says when the plan changes: a new session with the same
            # token keeps the same plan (a reconnect storm: no event per client).
            self._arm_refresh(conn)
            reason = await conn.lost
        except NotConnected:
            reason = conn.lost.result() if conn.lost.done() else "lost while subscribing"
        finally:
            self._connected.clear()
            self._ready.clear()
            self._conn = None
            self._cancel_refresh_timer()
            task, self._refresh_task = self._refresh_task, None
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await conn.close()
        self.counters.disconnects += 1
        self._emit(EventKind.DISCONNECTED, reason=reason, planned=self._planned_reconnect)
        return self._planned_reconnect

    async def _backoff(self, attempt: int, *, floor: float = 0.0) -> None:
        delay = self.config.backoff.delay(attempt, self._rng, floor=floor)
        self.state = "backoff"
        self.counters.backoff_waits += 1
        self.counters.backoff_seconds += delay
        self._emit(EventKind.BACKOFF, delay=delay, attempt=attempt)
        await self.clock.sleep(delay)

    def _refuse(self, exc: TokenRequestError) -> None:
        self.state = "refused"
        self.failure = ClientRefused(f"the AppServer refused this client: {exc}")
        self._emit(EventKind.REFUSED, error=str(exc))
        self._stopped.set()

    def _discard(self, reason: str) -> None:
        """The token is dead: the next round asks the AppServer (and forgets the file)."""
        self._discard_reason = reason

    # ---------------------------------------------------------------- refresh

    def _cancel_refresh_timer(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None

    def _rearm(self) -> None:
        """Re-evaluate the refresh decision now (a notice, refresh_now)."""
        if self._conn is not None:
            self._arm_refresh(self._conn)

    def _arm_refresh(self, conn: Connection) -> None:
        """Decide (pure core) and either start the refresh or set ONE clock timer for it.

        An idle client holds a timer handle, not a task: cheap for a fleet, and under a
        manual clock the timer fires inside ``advance()``.
        """
        self._cancel_refresh_timer()
        if self._refresh_task is not None or not conn.is_open or self._token is None:
            return  # a refresh in flight re-arms when it ends
        now = self.clock.now()
        policy = self.config.refresh
        decision = decide_refresh(now, self._token.expire_at, policy, jitter=self._jitter)
        if decision.action is RefreshAction.EXPIRED:
            # The broker should have ended the session (invalid notice 2); do it.
            self._discard("expired in session")
            self._refresh_task = self._spawn(conn.close())
            return
        at = now if self._force_refresh else decision.at
        if self._notice_refresh_at is not None:
            at = min(at, self._notice_refresh_at)
        at = max(at, self._not_before)
        if at > now:
            if at != self._scheduled_for:
                self._scheduled_for = at
                self._emit(EventKind.REFRESH_SCHEDULED, at=at, mode=decision.mode)
            self._refresh_timer = self.clock.call_at(at, lambda: self._arm_refresh(conn))
            return
        self._force_refresh = False
        self._notice_refresh_at = None
        self._refresh_task = self._spawn(self._refresh_then_rearm(conn, policy.mode))

    async def _refresh_then_rearm(self, conn: Connection, mode: RefreshMode) -> None:
        try:
            await self._refresh(conn, mode)
        finally:
            self._refresh_task = None
        self._arm_refresh(conn)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # The loop captured at start(): a manual clock may fire our timer from advance().
        loop = self._loop or asyncio.get_running_loop()
        return loop.create_task(coro)

    async def _refresh(self, conn: Connection, mode: RefreshMode) -> None:
        old = self._token
        assert old is not None
        try:
            grant = await self._ask(f"refresh ({mode})")
        except TokenRequestError as exc:
            if exc.permanent:
                self._refuse(exc)
                await conn.close()
                return
            delay = self.config.backoff.delay(
                self._refresh_failures, self._rng, floor=getattr(exc, "retry_after", 0.0)
            )
            self._refresh_failures += 1
            self.counters.backoff_waits += 1
            self.counters.backoff_seconds += delay
            self._emit(EventKind.BACKOFF, delay=delay, attempt=self._refresh_failures)
            self._not_before = self.clock.now() + delay
            self._force_refresh = True
            return
        self._refresh_failures = 0
        new = grant.token
        if new.token == old.token or new.expire_ms <= old.expire_ms:
            now = self.clock.now()
            self._not_before = after_same_token(now, old.expire_at, self.config.refresh)
            self._emit(EventKind.REFRESH_SAME_TOKEN, retry_at=self._not_before)
            return
        self._not_before = 0.0
        if mode == "upload":
            self._ready.clear()  # SPEC §6: nothing else goes out before the PUBACK
            try:
                await conn.publish(
                    SYS_UPLOAD_TOKEN,
                    UploadToken(new.token, new.type).encode(),
                    qos=1,
                    ack_timeout=self.config.ack_timeout,
                )
            except NotConnected:
                # Session gone before the PUBACK: the new token is valid, CONNECT with it.
                self._set_token(new)
                await self._persist()
                return
            self._set_token(new)
            await self._persist()
            self.counters.refreshes_upload += 1
            self._emit(EventKind.REFRESH_UPLOAD, expire_ms=new.expire_ms)
            if conn.is_open:
                self._ready.set()
            return
        self._set_token(new)
        await self._persist()
        self.counters.refreshes_reconnect += 1
        self._emit(EventKind.REFRESH_RECONNECT, expire_ms=new.expire_ms)
        self._planned_reconnect = True
        await conn.close()  # clean DISCONNECT: no will; _run connects again at once

    # ---------------------------------------------------------------- incoming

    def _dispatch(self, msg: IncomingMessage) -> None:
        if msg.topic == SYS_EXPIRE_NOTICE:
            try:
                notice = ExpireNotice.parse(msg.payload)
            except WireFormatError as exc:
                log.warning("client %s: malformed expire notice: %s", self.client_id, exc)
                return
            self.counters.expire_notices += 1
            self._emit(EventKind.EXPIRE_NOTICE, expire_ms=notice.expire_ms, type=notice.type)
            if self._token is not None:
                now, expire_at = self.clock.now(), self._token.expire_at
                self._notice_refresh_at = after_expire_notice(
                    now, expire_at, self.config.refresh, jitter=self._jitter
                )
                self._not_before = 0.0
                self._rearm()
            return
        if msg.topic == SYS_INVALID_NOTICE:
            try:
                invalid = InvalidNotice.parse(msg.payload)
            except WireFormatError as exc:
                log.warning("client %s: malformed invalid notice: %s", self.client_id, exc)
                return
            self.counters.invalid_notices += 1
            reaction = react_to_invalid(invalid.code)
            self._emit(EventKind.INVALID_NOTICE, code=int(invalid.code), reason=reaction.reason)
            if reaction.discard_token:
                self._discard(f"invalid notice {int(invalid.code)}")
            return
        if is_sys_topic(msg.topic):
            return  # other broker topics are not the application's
        self.counters.received += 1
        if self._on_message is not None:
            self._on_message(msg)
        else:
            self.messages.put_nowait(msg)

    def _emit(self, kind: EventKind, **detail: Any) -> None:
        self.events.emit(ClientEvent(kind, self.clock.now(), self.config.client_id, detail))


async def _first_of(*events: asyncio.Event) -> None:
    """Until one of ``events`` is set."""
    waiters = {asyncio.ensure_future(e.wait()) for e in events}
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
