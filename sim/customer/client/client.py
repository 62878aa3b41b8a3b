"""``TokenClient``: a token-aware asyncio MQTT client (SPEC §6) -- the SDK's shell.

What to do next and when is the planner's (:mod:`.planner`, a pure core): this module
keeps its :class:`~.planner.Situation`, feeds it every event (a token, a CONNACK, a
notice, a lost session, an AppServer error), asks it for a :class:`~.planner.Plan` and
carries the plan out with a clock, the AppServer, the token store and one MQTT
connection at a time (made by ``ClientConfig.transport``).

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
P2P messages (SPEC §4a) go out by :meth:`TokenClient.send_p2p` and come in, with no
subscription, to the message handler like any other message (topic
``<parentTopic>/p2p/<this client id>``).
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

from sim.customer.adapter import Adapter
from sim.shared.clock import Clock, TimerHandle
from sim.shared.protocol import (
    SYS_EXPIRE_NOTICE,
    SYS_INVALID_NOTICE,
    SYS_UPLOAD_TOKEN,
    ExpireNotice,
    InvalidNotice,
    UploadToken,
    is_sys_topic,
    p2p_topic,
    parent_topic_of,
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
from .planner import STABLE_SESSION_S, Action, Delay, Situation, plan
from .policy import Backoff, RefreshMode, RefreshPolicy, is_reusable, react_to_invalid
from .store import StoredToken, TokenStore
from .transport import (
    BrokerAddress,
    Connection,
    ConnectionFactory,
    IncomingMessage,
    MqttConnection,
    Will,
    parse_broker_url,
)

__all__ = ["ClientConfig", "ClientState", "TokenClient"]

log = logging.getLogger(__name__)

ClientState = Literal["idle", "connecting", "connected", "backoff", "refused", "closed"]


@dataclass(frozen=True)
class ClientConfig:
    """One client.  ``account``/``secret`` authenticate it to the AppServer (HTTP Basic
    for the reference AppServer; however ``adapter`` says for another); ``account``
    defaults to the MQTT ``client_id``."""

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
    #: makes the MQTT connection of each session attempt (default: gmqtt's); a test
    #: injects a recording or fake one here
    transport: ConnectionFactory = Connection
    #: how to ask the AppServer for a token (docs/your-appserver.md); None: the built-in
    #: adapter, the reference AppServer's ``POST /v1/tokens``
    adapter: Adapter | None = None

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
        # The first draw was always spent before the first token (each token draws its
        # share of the spread): spend it still, so a seed gives the runs it always gave.
        rng.random()
        self._rng = rng
        self._address: BrokerAddress = parse_broker_url(config.broker_url)
        self._subscriptions: dict[str, int] = dict(config.subscriptions)
        # The planner's view of this client; replaced at every event (see .planner).
        self._s = Situation(
            policy=config.refresh,
            backoff=config.backoff,
            stable_session_s=config.stable_session_s,
        )
        self._token: StoredToken | None = None
        self._conn: MqttConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None  # only while refreshing
        self._refresh_timer: TimerHandle | None = None  # idle clients hold just this
        self._scheduled_for: float | None = None
        self._connected = asyncio.Event()
        self._ready = asyncio.Event()  # connected and no token upload in flight
        self._stopped = asyncio.Event()
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

    async def wait_ready(self) -> MqttConnection:
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

    async def send_p2p(
        self,
        client_id: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        parent_topic: str | None = None,
    ) -> None:
        """Send ``payload`` to the one client ``client_id`` of this instance (SPEC §4a,
        the provider's P2P messaging): it arrives at that client's message handler without
        any subscription.  Published to ``<parent_topic>/p2p/<client_id>``; the parent
        topic defaults to :attr:`p2p_parent_topic` (the token must write under it).  QoS 1
        returns once the broker acknowledged it; a client that is not there loses it."""
        validate_client_id(client_id)
        if "W" not in parse_actions(self.config.actions):
            raise ValueError("P2P messages need a token that may write (actions W or R,W)")
        parent = self.p2p_parent_topic if parent_topic is None else parent_topic
        await self.publish(p2p_topic(parent, client_id), payload, qos=qos)

    @property
    def p2p_parent_topic(self) -> str:
        """The parent topic P2P messages go under by default: the first level of this
        client's first resource that names one (not a wildcard, not ``$``)."""
        for resource in self.config.resources:
            first = parent_topic_of(resource)
            if first not in ("+", "#") and not first.startswith("$"):
                return first
        raise ValueError(
            "no resource names a parent topic (they all start with a wildcard):"
            " pass parent_topic= to send_p2p"
        )

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
        self._s = self._s.forced()
        self._replan()

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

    # ---------------------------------------------------------------- between sessions

    async def _run(self) -> None:
        try:
            await self._load_stored()
            while not self._closing and not self._stopped.is_set():
                now = self.clock.now()
                step = plan(self._s, now)
                if step.action is Action.STOP:
                    return
                if step.at > now:
                    self.state = "backoff"
                    await self.clock.sleep_until(step.at)
                    continue  # what to do then is planned then
                if step.action is Action.REAPPLY:
                    await self._forget_token()
                if step.action in (Action.REAPPLY, Action.ASK):
                    await self._ask_for_token(step.reason)
                    continue
                if step.action is not Action.CONNECT:  # pragma: no cover - in-session plans
                    raise RuntimeError(f"no session, yet the plan is {step}")
                opened = await self._connect()
                if opened is not None:
                    await self._serve(*opened)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave a silent zombie client
            log.exception("client %s stopped by an unexpected error", self.client_id)
            self.failure = ClientRefused(f"unexpected error: {type(exc).__name__}")
            self.state = "refused"
            self._stopped.set()

    async def _load_stored(self) -> None:
        """Start from the persisted token if it is for these permissions and still worth
        a CONNECT (SPEC §6: no AppServer request on restart)."""
        if self._store is None or not self.config.refresh.reuse:
            return
        cfg, now = self.config, self.clock.now()
        stored = await asyncio.to_thread(self._store.load, cfg.client_id)
        if (
            stored is not None
            and stored.matches(cfg.actions, cfg.resources)
            and is_reusable(now, stored.expire_at, cfg.refresh)
        ):
            self._hold(stored, from_store=True)
            self.counters.tokens_from_store += 1
            self._emit(EventKind.TOKEN_FROM_STORE, expire_ms=stored.expire_ms)

    async def _forget_token(self) -> None:
        """The token is dead: drop it and its file; the next CONNECT uses a fresh one."""
        self._s = self._s.discarded()
        self._token = None
        if self._store is not None:
            await asyncio.to_thread(self._store.delete, self.config.client_id)
        self.counters.reapplies += 1

    async def _ask_for_token(self, reason: str) -> None:
        try:
            grant = await self._ask(reason)
        except TokenRequestError as exc:
            self._no_token(exc)
            return
        self._hold(grant.token)
        await self._persist()

    def _no_token(self, exc: TokenRequestError) -> None:
        """Feed the planner an AppServer that gave no token (SPEC §5: 401/403 for good)."""
        if exc.permanent:
            self._refuse(exc)
            return
        retry_after = getattr(exc, "retry_after", 0.0)
        self._s, delay = self._s.ask_failed(self.clock.now(), self._rng, retry_after=retry_after)
        self._note_backoff(delay)

    def _hold(self, token: StoredToken, *, from_store: bool = False) -> None:
        same = self._token is not None and token.token == self._token.token
        self._s = self._s.adopted(token.expire_at, rng=self._rng, same=same, from_store=from_store)
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
                client_id=cfg.client_id,
                adapter=cfg.adapter,
                now_ms=self.clock.now_ms,
            )
        except TokenRequestError as exc:
            self.counters.token_request_failures += 1
            self._emit(EventKind.TOKEN_REQUEST_FAILED, error=str(exc), permanent=exc.permanent)
            raise
        self.counters.tokens_received += 1
        self._emit(EventKind.TOKEN_RECEIVED, expire_ms=grant.token.expire_ms, stale=grant.stale)
        return grant

    async def _connect(self) -> tuple[MqttConnection, bool] | None:
        """CONNECT with the token in hand: the connection and CONNACK's session-present
        flag, or None (the failure fed to the planner)."""
        cfg, token = self.config, self._token
        assert token is not None
        self.state = "connecting"
        self.counters.connect_attempts += 1
        self._emit(EventKind.CONNECTING)
        conn = cfg.transport(
            cfg.client_id, on_message=self._dispatch, clean_session=cfg.clean_session, will=cfg.will
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
            self._s, delay = self._s.not_authorized(
                self.clock.now(), self._rng, code=exc.return_code
            )
            self._note_backoff(delay)
            return None
        except ConnectFailed as exc:
            self.counters.connect_failures += 1
            self._emit(EventKind.CONNECT_FAILED, error=str(exc))
            self._s, delay = self._s.connect_failed(self.clock.now(), self._rng)
            self._note_backoff(delay)
            return None
        self.counters.connects += 1
        self._emit(EventKind.CONNECTED, session_present=present)
        return conn, present

    async def _serve(self, conn: MqttConnection, session_present: bool) -> None:
        """Run one session until it ends, then feed its end to the planner."""
        self._conn = conn
        self._s = self._s.connected(self.clock.now())
        try:
            if not session_present or self.config.clean_session:
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
        self._emit(EventKind.DISCONNECTED, reason=reason, planned=self._s.planned_reconnect)
        if not self._closing and not self._s.refused:
            self._s, delay = self._s.session_ended(self.clock.now(), self._rng)
            self._note_backoff(delay)

    def _note_backoff(self, delay: Delay | None) -> None:
        if delay is None:
            return
        self.counters.backoff_waits += 1
        self.counters.backoff_seconds += delay.seconds
        self._emit(EventKind.BACKOFF, delay=delay.seconds, attempt=delay.attempt)

    def _refuse(self, exc: TokenRequestError) -> None:
        self._s = self._s.refused_for_good()
        self.state = "refused"
        self.failure = ClientRefused(f"the AppServer refused this client: {exc}")
        self._emit(EventKind.REFUSED, error=str(exc))
        self._stopped.set()

    # ---------------------------------------------------------------- in session

    def _cancel_refresh_timer(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
            self._refresh_timer = None

    def _replan(self) -> None:
        """Something changed the situation (a notice, refresh_now): plan again now."""
        if self._conn is not None:
            self._arm_refresh(self._conn)

    def _arm_refresh(self, conn: MqttConnection) -> None:
        """Carry out the in-session plan now, or set ONE clock timer to plan again then.

        An idle client holds a timer handle, not a task: cheap for a fleet, and under a
        manual clock the timer fires inside ``advance()``.
        """
        self._cancel_refresh_timer()
        if not conn.is_open:
            return
        now = self.clock.now()
        step = plan(self._s, now)
        if step.action in (Action.WAIT, Action.STOP):
            return  # a refresh under way plans again when it ends
        if step.at > now:
            if step.action is Action.REFRESH and step.at != self._scheduled_for:
                self._scheduled_for = step.at
                self._emit(EventKind.REFRESH_SCHEDULED, at=step.at, mode=step.mode)
            self._refresh_timer = self.clock.call_at(step.at, lambda: self._arm_refresh(conn))
            return
        if step.action is Action.DROP:
            # The broker should have ended the session (invalid notice 2); do it.
            self._s = self._s.dropped()
            self._refresh_task = self._spawn(conn.close())
            return
        assert step.action is Action.REFRESH and step.mode is not None
        self._s = self._s.refresh_started()
        self._refresh_task = self._spawn(self._refresh_then_replan(conn, step.mode))

    async def _refresh_then_replan(self, conn: MqttConnection, mode: RefreshMode) -> None:
        try:
            await self._refresh(conn, mode)
        finally:
            self._refresh_task = None
            self._s = self._s.refresh_ended()
        self._arm_refresh(conn)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # The loop captured at start(): a manual clock may fire our timer from advance().
        loop = self._loop or asyncio.get_running_loop()
        return loop.create_task(coro)

    async def _refresh(self, conn: MqttConnection, mode: RefreshMode) -> None:
        old = self._token
        assert old is not None
        try:
            grant = await self._ask(f"refresh ({mode})")
        except TokenRequestError as exc:
            self._no_token(exc)
            if self._s.refused:
                await conn.close()
            return
        new = grant.token
        if not self._s.renews(new.expire_at, same_text=new.token == old.token):
            self._s = self._s.same_token(self.clock.now())
            self._emit(EventKind.REFRESH_SAME_TOKEN, retry_at=self._s.not_before)
            return
        if mode == "upload":
            self._ready.clear()  # SPEC §6: nothing else goes out before the PUBACK
            try:
                await conn.publish(
                    SYS_UPLOAD_TOKEN,
                    UploadToken(new.token, new.type).encode(),
                    qos=1,
                    retain=False,
                    ack_timeout=self.config.ack_timeout,
                )
            except NotConnected:
                # Session gone before the PUBACK: the new token is valid, CONNECT with it.
                self._hold(new)
                await self._persist()
                return
            self._hold(new)
            await self._persist()
            self.counters.refreshes_upload += 1
            self._emit(EventKind.REFRESH_UPLOAD, expire_ms=new.expire_ms)
            if conn.is_open:
                self._ready.set()
            return
        self._hold(new)
        await self._persist()
        self.counters.refreshes_reconnect += 1
        self._emit(EventKind.REFRESH_RECONNECT, expire_ms=new.expire_ms)
        self._s = self._s.reconnect_planned()
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
            self._s = self._s.expire_notice(self.clock.now())
            self._replan()
            return
        if msg.topic == SYS_INVALID_NOTICE:
            try:
                invalid = InvalidNotice.parse(msg.payload)
            except WireFormatError as exc:
                log.warning("client %s: malformed invalid notice: %s", self.client_id, exc)
                return
            self.counters.invalid_notices += 1
            reason = react_to_invalid(invalid.code).reason
            self._emit(EventKind.INVALID_NOTICE, code=int(invalid.code), reason=reason)
            self._s = self._s.invalid_notice(invalid.code)
            self._replan()
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
