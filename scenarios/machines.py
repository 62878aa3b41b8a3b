"""A Hypothesis state machine: the real in-process stack beside a simple model.

Rules (each synchronous, run on the stack through :class:`LoopBridge`): apply for a
token at the AppServer, connect with one, publish, subscribe, upload a token in
session, advance the manual clock, revoke (disable an AppServer account), enable it
again, restart the AppServer, switch an AuthServer outage on and off.

No rule waits on the wall clock, so a counterexample does not depend on machine load:
after each action the rule waits until the in-process stack is idle
(:meth:`sim.harness.stack.StackHandle.idle`: what the action set off has run) and a
revocation waits on the feed position (the broker has applied the AuthServer's feed up
to the revocation, :meth:`~sim.harness.stack.StackHandle.wait_feed`), then checks.
Timeouts are hang guards only.

The model (:class:`Model`) is a few dicts: tokens with expiry and a revoked flag, the
AppServer's cache (one token per key), which accounts are enabled, whether the
AuthServer is down, and what each connection holds.  Invariants (SPEC §4, §5):

* an expired or revoked token never connects, never publishes (its session is closed);
* nothing outside a token's resources is ever accepted (publish / subscribe) nor
  delivered to a session;
* the AppServer never holds two live tokens for one key (a repeated ask returns the
  cached token while it has more than the refresh margin of life);
* a client with a valid cached token is never refused during an outage (the AppServer
  serves its cached token, the broker accepts it: it verifies offline).

Run it from pytest (``tests/scenarios/test_machine.py``) or directly::

    python -m scenarios.machines          # more examples than the default suite
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mock_authserver.ratelimit import RateLimits
from sim.customer.client.errors import NotAuthorized, NotConnected
from sim.harness.stack import StackHandle
from sim.shared.clock import ManualClock
from sim.shared.protocol import covered_by_any, is_sys_topic, matches_any

from .env import Environment

__all__ = ["DEFAULT_SETTINGS", "LoopBridge", "Model", "StackMachine", "TestStack", "run_machine"]

T = TypeVar("T")

TTL_S = 600.0
MARGIN_S = 400.0
#: Advance steps chosen so that no sum of a few of them hits a TTL or margin boundary
#: exactly (600, 200): the model and the stack must never disagree on "equal".
ADVANCES = (13.0, 97.0, 251.0, 251.0, 617.0)
SECRET = "machine-secret"
ACCOUNTS: dict[str, list[dict[str, Any]]] = {
    "GID_mach@@@a": [{"resources": ["test/a/#"], "actions": "R,W"}],
    "GID_mach@@@b": [{"resources": ["test/b/+"], "actions": "R,W"}],
}
#: What each account may ask for (all inside its grants).
ASKS: dict[str, list[tuple[tuple[str, ...], str]]] = {
    "GID_mach@@@a": [(("test/a/#",), "R,W"), (("test/a/x",), "W")],
    "GID_mach@@@b": [(("test/b/+",), "R,W"), (("test/b/x",), "R")],
}
SLOTS = ("GID_mach@@@c0", "GID_mach@@@c1", "GID_mach@@@c2")
TOPICS = ("test/a/x", "test/a/y/z", "test/b/x", "test/b/y/z")
#: ``test/#`` is covered by no token (as ``#`` was); every topic is under ``test``, a parent
#: topic of the dev instance (the broker's provider profile refuses any other, SPEC §4a).
FILTERS = ("test/a/#", "test/a/x", "test/b/+", "test/b/x", "test/#")
#: Real seconds any one step may take before the run is declared hung: a guard, never
#: a verdict (the rules decide on events).
HANG_S = 30.0


class LoopBridge:
    """An asyncio loop in a background thread; synchronous rules submit coroutines."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def _drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(_drain(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


# --------------------------------------------------------------------------- the model


@dataclass
class MToken:
    value: str
    account: str
    resources: tuple[str, ...]
    actions: str  # "R", "W", "R,W"
    type: str  # "R", "W", "RW"
    expire_s: float
    username: str
    password: str
    revoked: bool = False

    def live(self, now: float) -> bool:
        return not self.revoked and now < self.expire_s

    def can_read(self) -> bool:
        return "R" in self.actions

    def can_write(self) -> bool:
        return "W" in self.actions

    def __repr__(self) -> str:  # Hypothesis prints steps: never the token itself
        return f"MToken({self.account}, {self.resources}, {self.actions}, exp={self.expire_s})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # Hypothesis's printer
        p.text(repr(self))


@dataclass
class MConn:
    slot: str
    token: MToken
    conn: Any  # sim.customer.client.transport.Connection
    subscriptions: list[str] = field(default_factory=list)
    #: (topic, payload, readable by the session's token when it arrived)
    received: list[tuple[str, bytes, bool]] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"MConn({self.slot}, {self.token!r}, subscriptions={self.subscriptions})"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))

    def on_message(self, topic: str, payload: bytes) -> None:
        readable = self.token.can_read() and matches_any(self.token.resources, topic)
        self.received.append((topic, payload, readable))


@dataclass
class Model:
    now: float
    tokens: list[MToken] = field(default_factory=list)
    cache: dict[tuple[str, tuple[str, ...], str], MToken] = field(default_factory=dict)
    enabled: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(ACCOUNTS, True))
    outage: bool = False

    def cached_for(self, key: tuple[str, tuple[str, ...], str]) -> MToken | None:
        return self.cache.get(key)

    def expected_apply(self, account: str, key: tuple[str, tuple[str, ...], str]) -> str:
        """``"disabled"``, ``"cached"`` (same token), ``"stale"`` (same token, the
        AuthServer is down), ``"new"`` or ``"unavailable"`` (503)."""
        if not self.enabled[account]:
            return "disabled"
        cached = self.cache.get(key)
        if cached is not None and cached.expire_s - self.now > MARGIN_S and not cached.revoked:
            return "cached"
        if not self.outage:
            return "new"
        if cached is not None and cached.expire_s > self.now:
            return "stale"
        return "unavailable"


def _brief(body: Any) -> Any:
    """An answer fit for an assertion message: never the token or the password."""
    if isinstance(body, dict):
        return {k: v for k, v in body.items() if k not in ("token", "password")}
    return body


# --------------------------------------------------------------------------- the stack


class TestStack:
    """The one stack with a manual clock, driven from synchronous code."""

    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        from .env import embedded_environment, scenario_stack

        self.bridge = LoopBridge()
        # Whole seconds: expireTime is in ms, the model in float seconds.
        self.clock = ManualClock(start=float(int(time.time())))
        self._stack = contextlib.AsyncExitStack()
        config = (
            scenario_stack(seed=0)
            .with_appserver(
                token_ttl_s=TTL_S,
                refresh_margin_s=MARGIN_S,
                # The model has no breaker nor drain: keep them out of the way.
                breaker_failures=1_000_000,
                drain_burst=100_000,
                drain_rate_per_s=1_000_000.0,
                upstream_timeout_s=HANG_S,
                retry_after_s=1.0,
                # Nor a revocation queue: the AppServer revokes at once (its default
                # drains at RevokeToken's 5/s on this manual clock, which the model
                # does not advance while it waits for a revocation).
                revoke_limit=1_000_000,
                revoke_window_s=1.0,
            )
            .with_broker(expire_notice_lead=30.0)
            # Nor has it the provider's API rate limits (SPEC §3b).
            .with_authserver(rate_limits=RateLimits.off())
        )

        async def start() -> Environment:
            return await self._stack.enter_async_context(
                embedded_environment(config, clock=self.clock)
            )

        self.env = self.bridge.run(start(), timeout=60)
        assert self.env.stack is not None
        self.stack: StackHandle = self.env.stack
        self.bridge.run(
            self.env.admin.appserver.import_accounts(
                [
                    {"client_id": cid, "secret": SECRET, "grants": grants, "enabled": True}
                    for cid, grants in ACCOUNTS.items()
                ]
            )
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.bridge.run(self._stack.aclose(), timeout=30)
        self.bridge.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = HANG_S) -> T:
        return self.bridge.run(coro, timeout)

    def settle(self) -> None:
        """Until what the last action set off has run (in-process: no wall clock)."""
        self.run(self.stack.idle())

    # -- AppServer -------------------------------------------------------------------
    async def ask(self, account: str, resources: tuple[str, ...], actions: str) -> tuple[int, Any]:
        auth = base64.b64encode(f"{account}:{SECRET}".encode()).decode()
        async with self.env.http.post(
            f"{self.env.endpoints.appserver_url}/v1/tokens",
            json={"resources": list(resources), "actions": actions},
            headers={"Authorization": f"Basic {auth}"},
        ) as resp:
            body = await resp.json(content_type=None)
            return resp.status, (body, resp.headers.get("Retry-After"))

    async def set_enabled(self, account: str, enabled: bool) -> None:
        await self.env.admin.appserver.put_account(account, enabled=enabled)

    # -- MQTT ------------------------------------------------------------------------
    async def connect(self, slot: str, token: MToken, sink: MConn | None = None) -> Any:
        from sim.customer.client.transport import Connection, parse_broker_url

        def on_message(m: Any) -> None:
            if sink is not None:
                sink.on_message(m.topic, m.payload)

        conn = Connection(slot, on_message=on_message)
        # keep-alive 0: the manual clock jumps hours; liveness is not under test here.
        await conn.open(
            parse_broker_url(self.env.endpoints.broker_url),
            username=token.username,
            password=token.password,
            keepalive=0,
            connect_timeout=HANG_S,
        )
        return conn

    async def refused(self, token: MToken) -> bool:
        """Whether a fresh CONNECT with ``token`` is refused (own client id)."""
        try:
            conn = await self.connect("GID_mach@@@probe", token)
        except NotAuthorized:
            return True
        await conn.close()
        return False


# --------------------------------------------------------------------------- the machine


class StackMachine(RuleBasedStateMachine):
    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self.stack = TestStack()
        self.model = Model(now=self.stack.clock.now())
        self.conns: dict[str, MConn] = {}
        self.seq = 0

    def teardown(self) -> None:
        async def close_all() -> None:
            for c in self.conns.values():
                with contextlib.suppress(Exception):
                    await c.conn.close()

        with contextlib.suppress(Exception):
            self.stack.run(close_all())
        self.stack.close()

    # -- helpers ---------------------------------------------------------------------
    def _open(self) -> list[MConn]:
        return [c for c in self.conns.values() if c.conn.is_open]

    def _drop_closed(self) -> None:
        for slot in [s for s, c in self.conns.items() if not c.conn.is_open]:
            del self.conns[slot]

    def _expect_closed(self, mc: MConn, why: str) -> None:
        """After the stack settled: the session must have been closed."""
        self.stack.settle()
        assert not mc.conn.is_open, f"{mc.slot} should have been disconnected: {why}"
        self.conns.pop(mc.slot, None)

    # -- rules -----------------------------------------------------------------------
    @initialize(target=tokens, account=st.sampled_from(sorted(ACCOUNTS)), which=st.integers(0, 1))
    def first_token(self, account: str, which: int) -> Any:
        return self.apply(account, which)

    @rule(
        target=tokens,
        account=st.sampled_from(sorted(ACCOUNTS)),
        which=st.integers(0, 1),
    )
    def apply(self, account: str, which: int) -> Any:
        resources, actions = ASKS[account][which % len(ASKS[account])]
        key = (account, resources, actions)
        expected = self.model.expected_apply(account, key)
        status, (body, retry_after) = self.stack.run(self.stack.ask(account, resources, actions))
        if expected == "disabled":
            assert status == 403, (status, _brief(body))
            return multiple()
        if expected == "unavailable":
            assert status == 503, (status, _brief(body))
            assert retry_after is not None and float(retry_after) > 0, "503 without Retry-After"
            return multiple()
        assert status == 200, (expected, status, _brief(body))
        cached = self.model.cache.get(key)
        if expected in ("cached", "stale"):
            assert cached is not None
            # Invariant: one live token per key -- the cached one comes back.
            assert body["token"] == cached.value, f"{expected}: a second live token for {key}"
            if expected == "stale":
                assert body["stale"] is True
            return multiple()
        assert cached is None or body["token"] != cached.value
        assert body["stale"] is False
        expire_s = int(body["expireTime"]) / 1000.0
        assert abs(expire_s - (self.model.now + TTL_S)) <= 70, "expireTime far from the policy TTL"
        token = MToken(
            body["token"],
            account,
            resources,
            actions,
            body["type"],
            expire_s,
            body["username"],
            body["password"],
        )
        self.model.tokens.append(token)
        self.model.cache[key] = token
        return token

    @rule(token=tokens, slot=st.sampled_from(SLOTS))
    def connect(self, token: MToken, slot: str) -> None:
        previous = self.conns.pop(slot, None)
        live = token.live(self.model.now)
        mc = MConn(slot, token, None)
        try:
            mc.conn = self.stack.run(self.stack.connect(slot, token, mc))
        except NotAuthorized:
            assert not live, f"a live token was refused (outage={self.model.outage})"
            if previous is not None:
                # A refused CONNECT must not disturb the session holding the id (F1).
                self.stack.settle()
                assert previous.conn.is_open or not previous.token.live(self.model.now)
                self.conns[slot] = previous
            return
        assert live, f"an {'revoked' if token.revoked else 'expired'} token connected"
        self.conns[slot] = mc
        if previous is not None:
            # Same client id: the newcomer takes over (SPEC §4).
            self.stack.settle()
            assert not previous.conn.is_open, (
                "the previous connection with the same client id was not taken over"
            )

    @precondition(lambda self: bool(self._open()))
    @rule(data=st.data(), flt=st.sampled_from(FILTERS))
    def subscribe(self, data: st.DataObject, flt: str) -> None:
        mc = data.draw(st.sampled_from(sorted(self._open(), key=lambda c: c.slot)))
        allowed = mc.token.can_read() and covered_by_any(mc.token.resources, flt)

        async def sub() -> int | None:
            try:
                return int(await mc.conn.subscribe(flt, qos=1, ack_timeout=HANG_S))
            except NotConnected:
                return None

        granted = self.stack.run(sub())
        if allowed:
            assert granted in (0, 1), f"covered filter {flt!r} refused ({granted})"
            mc.subscriptions.append(flt)
        else:
            # A notice-mode broker may close without a SUBACK; it must never grant it.
            assert granted not in (0, 1), f"filter {flt!r} outside {mc.token} was granted"
            self._expect_closed(mc, f"subscribe to {flt!r} outside {mc.token}")

    @precondition(lambda self: bool(self._open()))
    @rule(data=st.data(), topic=st.sampled_from(TOPICS))
    def publish(self, data: st.DataObject, topic: str) -> None:
        mc = data.draw(st.sampled_from(sorted(self._open(), key=lambda c: c.slot)))
        allowed = mc.token.can_write() and matches_any(mc.token.resources, topic)
        self.seq += 1
        payload = f"m{self.seq}".encode()
        # Who may see it: sessions whose current token reads the topic.
        readers = {
            c.slot
            for c in self._open()
            if c.token.can_read() and matches_any(c.token.resources, topic)
        }

        async def pub() -> bool:
            try:
                await mc.conn.publish(topic, payload, qos=1, ack_timeout=HANG_S)
                return True
            except NotConnected:
                return False

        acked = self.stack.run(pub())
        if allowed:
            assert acked, f"an allowed publish to {topic!r} was not acknowledged"
        else:
            # The PUBACK may or may not precede the disconnect; the session must end.
            self._expect_closed(mc, f"publish to {topic!r} outside {mc.token}")
        # Anything delivered must be readable by the receiver's token (once every
        # delivery the publish set off has arrived).
        self.stack.settle()
        for c in list(self.conns.values()):
            for t, p, _ in c.received:
                if p == payload:
                    assert allowed, f"a refused publish to {t!r} was delivered"
                    assert c.slot in readers, f"{t!r} delivered to {c.slot} outside {c.token}"

    @precondition(lambda self: bool(self._open()))
    @rule(data=st.data(), token=tokens)
    def upload(self, data: st.DataObject, token: MToken) -> None:
        candidates = [c for c in self._open() if c.token.type == token.type]
        if not candidates:
            return
        mc = data.draw(st.sampled_from(sorted(candidates, key=lambda c: c.slot)))
        live = token.live(self.model.now)
        body = json.dumps({"token": token.value, "type": token.type}).encode()

        async def up() -> bool:
            try:
                await mc.conn.publish("$SYS/uploadToken", body, qos=1, ack_timeout=HANG_S)
                return True
            except NotConnected:
                return False

        acked = self.stack.run(up())
        if live:
            assert acked, "a valid upload was not acknowledged"
            mc.token = token  # PUBACK comes after the swap (SPEC §4)
        else:
            self._expect_closed(mc, "an upload of a dead token")

    @rule(seconds=st.sampled_from(ADVANCES))
    def advance(self, seconds: float) -> None:
        self.stack.run(self.stack.stack.advance(seconds))  # returns once what it woke ran
        self.model.now += seconds
        for mc in list(self.conns.values()):
            if mc.token.expire_s <= self.model.now:
                self._expect_closed(mc, "its token expired")

    @rule(account=st.sampled_from(sorted(ACCOUNTS)))
    def revoke_or_enable(self, account: str) -> None:
        """Disable an enabled account (revoking its tokens), enable a disabled one."""
        if self.model.enabled[account]:
            self.revoke(account)
        else:
            self.enable(account)

    def revoke(self, account: str) -> None:
        """Disable the account at the AppServer: its cached tokens are revoked upstream."""
        self.stack.run(self.stack.set_enabled(account, False))
        revoked = [t for k, t in self.model.cache.items() if k[0] == account]
        for t in revoked:
            t.revoked = True
        for k in [k for k in self.model.cache if k[0] == account]:
            del self.model.cache[k]
        was_enabled = self.model.enabled[account]
        self.model.enabled[account] = False
        if not was_enabled:
            return
        # The revocations are on the AuthServer's feed now (the AppServer revoked them
        # before answering): wait until the broker has applied the feed that far, and
        # until what it did about it has run.  The model treats revocation as instant
        # from here on.
        self.stack.run(self.stack.stack.wait_feed())
        for c in [c for c in self.conns.values() if c.token.revoked]:
            assert not c.conn.is_open, f"{c.slot} still holds a session with a revoked token"
            self.conns.pop(c.slot, None)
        for t in revoked:
            if t.expire_s > self.model.now:
                assert self.stack.run(self.stack.refused(t)), "a revoked token still connects"

    def enable(self, account: str) -> None:
        self.stack.run(self.stack.set_enabled(account, True))
        self.model.enabled[account] = True

    @rule()
    def restart_appserver(self) -> None:
        self.stack.run(self.stack.stack.restart("appserver"), timeout=60)

    @rule()
    def outage_on_off(self) -> None:
        """Switch an AuthServer outage (every apply fails) on, or off again."""
        if self.model.outage:
            self.stack.run(self.stack.env.admin.authserver.clear_faults())
        else:
            fault = {"operation": "apply", "kind": "outage", "seconds": 1e7}
            self.stack.run(self.stack.env.admin.authserver.add_fault(fault))
        self.model.outage = not self.model.outage

    # -- invariants --------------------------------------------------------------------
    @invariant()
    def sessions_hold_live_tokens(self) -> None:
        # Every session the model believes open holds a live token (expired and revoked
        # ones were checked closed when they died).
        self._drop_closed()
        for c in self.conns.values():
            assert c.token.live(self.model.now), f"{c.slot} is open with a dead token"

    @invariant()
    def deliveries_inside_resources(self) -> None:
        for c in self.conns.values():
            for topic, _, readable in c.received:
                if is_sys_topic(topic):
                    continue  # notices go to their client without a subscription
                assert readable, f"{topic!r} delivered to {c.slot} outside {c.token}"


#: What the default test suite runs (a couple of seconds); ``python -m scenarios.machines``
#: runs more.  (``StackMachine.TestCase.settings`` cannot be assigned: Hypothesis builds a
#: new TestCase class on every access.)
DEFAULT_SETTINGS = settings(max_examples=20, stateful_step_count=20, deadline=None)
LONG_SETTINGS = settings(max_examples=100, stateful_step_count=30, deadline=None)


def run_machine(machine_settings: settings = DEFAULT_SETTINGS) -> None:
    run_state_machine_as_test(StackMachine, settings=machine_settings)


if __name__ == "__main__":  # pragma: no cover
    run_machine(LONG_SETTINGS)
    print("state machine: no counterexample")
