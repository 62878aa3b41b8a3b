"""The SDK against the real stack (AuthServer, token broker, AppServer) on a manual clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sim.customer.client import EventKind, RefreshPolicy, StoredToken, TokenClient, TokenStore
from sim.customer.client.transport import Connection
from sim.harness.pytest_plugin import SimStack
from sim.shared.protocol import SYS_UPLOAD_TOKEN, TokenType

pytestmark = pytest.mark.timeout(60)


async def _collect(client: TokenClient, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        msg = await asyncio.wait_for(client.messages.get(), 10)
        out.append(msg.payload)
    return out


async def _collect_all(client: TokenClient, expected: list[bytes]) -> set[bytes]:
    """QoS 1 is at least once: collect until every expected payload arrived (duplicates
    allowed), or fail after 10 s without a new message."""
    got: set[bytes] = set()
    while not set(expected) <= got:
        msg = await asyncio.wait_for(client.messages.get(), 10)
        got.add(msg.payload)
    return got


async def test_first_start_asks_once_and_persists(mqtt_stack: SimStack, mqtt_client_factory):
    c = await mqtt_client_factory("GID_test@@@first", resources=("test/#",))
    assert c.state == "connected"
    assert c.counters.token_requests == 1
    assert c.counters.tokens_from_store == 0
    assert c.counters.connects == 1
    stored = TokenStore(c.config.store_dir).load("GID_test@@@first")
    assert stored is not None and stored == c.token
    assert stored.username.startswith("Token|dev-ak|mqtt-dev")
    assert stored.token not in repr(list(c.events.events)) + repr(c.config)
    assert "secret" not in repr(c.config)
    # it really works: a QoS 1 round trip through the token broker
    assert await c.subscribe("test/x", 1) == 1
    await c.publish("test/x", b"hello", qos=1)
    assert await _collect(c, 1) == [b"hello"]


async def test_restart_reuses_the_stored_token_without_asking(
    mqtt_stack: SimStack, mqtt_client_factory
):
    first = await mqtt_client_factory("GID_test@@@restart")
    token = first.token
    await first.close()
    asks_before = await mqtt_stack.metric("appserver", "appserver_token_requests")
    again = await mqtt_client_factory("GID_test@@@restart", account=False)
    assert again.counters.token_requests == 0
    assert again.counters.tokens_from_store == 1
    assert again.token == token
    assert await mqtt_stack.metric("appserver", "appserver_token_requests") == asks_before


async def test_stored_token_for_other_permissions_is_not_reused(
    mqtt_stack: SimStack, mqtt_client_factory
):
    first = await mqtt_client_factory("GID_test@@@perm", resources=("test/#",))
    await first.close()
    await mqtt_stack.create_account("GID_test@@@perm", "secret", ("test/#", "dev/#"))
    again = await mqtt_client_factory(
        "GID_test@@@perm", resources=("test/#", "dev/#"), account=False
    )
    assert again.counters.tokens_from_store == 0
    assert again.counters.token_requests == 1


def _recording(sent: list[tuple[str, str]]) -> type[Connection]:
    """The SDK's own transport, noting when each publish starts and ends."""

    class Recording(Connection):
        async def publish(self, topic: str, payload: bytes, **kw: Any) -> None:
            sent.append(("start", topic))
            try:
                await super().publish(topic, payload, **kw)
            finally:
                sent.append(("end", topic))

    return Recording


async def test_refresh_by_upload_holds_publishes_until_puback_and_loses_nothing(
    mqtt_stack: SimStack, mqtt_client_factory
):
    sent: list[tuple[str, str]] = []
    sub = await mqtt_client_factory("GID_test@@@sub1", refresh=RefreshPolicy(margin=60))
    await sub.subscribe("test/#", 1)
    pub = await mqtt_client_factory(
        "GID_test@@@pub1", refresh=RefreshPolicy(margin=260), transport=_recording(sent)
    )
    old = pub.token
    assert old is not None

    stop = asyncio.Event()
    published: list[bytes] = []

    async def publisher() -> None:
        i = 0
        while not stop.is_set():
            payload = f"m{i}".encode()
            await pub.publish("test/load", payload, qos=1)
            published.append(payload)
            i += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(publisher())
    await mqtt_stack.eventually(lambda: len(published) >= 5, what="first publishes")
    # inside our margin and the AppServer's (300 s), so it hands out a new token
    await mqtt_stack.advance(old.expire_at - mqtt_stack.clock.now() - 250)
    await mqtt_stack.eventually(lambda: pub.counters.refreshes_upload == 1, what="upload")
    await mqtt_stack.eventually(lambda: len(published) >= 20, what="publishes after upload")
    stop.set()
    await task

    assert pub.token is not None and pub.token.token != old.token
    assert pub.token.expire_ms > old.expire_ms
    assert pub.counters.connects == 1  # refreshed in session, no reconnect
    assert TokenStore(pub.config.store_dir).load(pub.client_id) == pub.token
    # nothing went out between the upload and its PUBACK
    i = sent.index(("start", SYS_UPLOAD_TOKEN))
    j = sent.index(("end", SYS_UPLOAD_TOKEN))
    assert all(kind == "end" for kind, _ in sent[i + 1 : j])
    assert await _collect_all(sub, published) == set(published)


async def test_refresh_by_reconnect_loses_no_qos1_message(
    mqtt_stack: SimStack, mqtt_client_factory
):
    sub = await mqtt_client_factory(
        "GID_test@@@sub2", mode="reconnect", clean_session=False, refresh=None
    )
    await sub.subscribe("test/#", 1)
    pub = await mqtt_client_factory("GID_test@@@pub2", refresh=RefreshPolicy(margin=30))
    old = sub.token
    assert old is not None
    published = [f"r{i}".encode() for i in range(40)]
    for p in published[:20]:
        await pub.publish("test/x", p, qos=1)
    await mqtt_stack.advance(old.expire_at - mqtt_stack.clock.now() - 299)
    # the subscriber is reconnecting while these go out
    for p in published[20:]:
        await pub.publish("test/x", p, qos=1)
    await mqtt_stack.eventually(lambda: sub.counters.refreshes_reconnect == 1, what="refresh")
    await asyncio.wait_for(sub.wait_connected(), 10)
    assert await _collect_all(sub, published) == set(published)
    assert sub.counters.connects == 2
    assert sub.counters.backoff_waits == 0  # a planned reconnect does not back off
    assert sub.token is not None and sub.token.expire_ms > old.expire_ms
    assert TokenStore(sub.config.store_dir).load(sub.client_id) == sub.token


async def test_expire_notice_triggers_a_refresh(mqtt_stack: SimStack, mqtt_client_factory):
    # our margin (10 s) is shorter than the broker's notice lead (300 s): the notice wins
    c = await mqtt_client_factory("GID_test@@@notice", refresh=RefreshPolicy(margin=10))
    old = c.token
    assert old is not None
    await mqtt_stack.advance(old.expire_at - mqtt_stack.clock.now() - 299)
    try:
        await mqtt_stack.eventually(lambda: c.counters.refreshes_upload == 1, what="refresh")
    finally:
        print([(e.kind.value, e.at - old.expire_at, e.detail) for e in c.events.events])
    assert c.counters.expire_notices == 1
    notice = c.events.of(EventKind.EXPIRE_NOTICE)[0]
    refresh = c.events.of(EventKind.REFRESH_UPLOAD)[0]
    assert notice.detail["expire_ms"] == old.expire_ms
    assert refresh.at < old.expire_at - 10  # well before our own margin
    assert c.counters.connects == 1


async def test_revocation_notice_then_refused_by_appserver(
    mqtt_stack: SimStack, mqtt_client_factory
):
    c = await mqtt_client_factory("GID_test@@@revoked")
    await mqtt_stack.disable_account("GID_test@@@revoked")
    await mqtt_stack.eventually(lambda: c.state == "refused", advance=1, what="refused")
    codes = [e.detail["code"] for e in c.events.of(EventKind.INVALID_NOTICE)]
    assert codes == [3]
    assert c.counters.reapplies == 1
    assert c.counters.connects == 1
    assert TokenStore(c.config.store_dir).load(c.client_id) is None
    with pytest.raises(Exception, match="refused"):
        await c.wait_connected()


async def test_resource_mismatch_notice_keeps_the_token(mqtt_stack: SimStack, mqtt_client_factory):
    c = await mqtt_client_factory("GID_test@@@mismatch", resources=("test/#",))
    token = c.token
    await c.publish("other/topic", b"x", qos=0)  # outside the token: notice 4, disconnect
    await mqtt_stack.eventually(lambda: c.counters.connects == 2, advance=1, what="back")
    codes = [e.detail["code"] for e in c.events.of(EventKind.INVALID_NOTICE)]
    assert codes == [4]
    assert c.counters.token_requests == 1 and c.counters.reapplies == 0
    assert c.token == token


async def test_not_authorized_stored_token_is_replaced(mqtt_stack: SimStack, mqtt_client_factory):
    first = await mqtt_client_factory("GID_test@@@forged")
    good = first.token
    assert good is not None
    await first.close()
    forged = StoredToken(
        token="forged",
        type=TokenType.RW,
        expire_ms=good.expire_ms,
        instance_id=good.instance_id,
        username=good.username,
        password="RW|forged",
        actions=good.actions,
        resources=good.resources,
    )
    TokenStore(first.config.store_dir).save(first.client_id, forged)
    c = await mqtt_client_factory("GID_test@@@forged", account=False)
    assert c.counters.tokens_from_store == 1
    assert c.counters.not_authorized == 1
    assert c.counters.reapplies == 1
    assert c.counters.connects == 1
    assert c.token is not None and c.token.password != "RW|forged"
    assert c.counters.backoff_waits == 0  # a stale stored token is re-asked at once


async def test_bad_secret_stops_the_client(mqtt_stack: SimStack, mqtt_client_factory):
    await mqtt_stack.create_account("GID_test@@@badpw", "right")
    c = await mqtt_client_factory("GID_test@@@badpw", secret="wrong", account=False, connect=False)
    await mqtt_stack.eventually(lambda: c.state == "refused", what="refused")
    assert c.counters.connect_attempts == 0
    assert c.events.of(EventKind.REFUSED)


async def test_appserver_503_backs_off_at_least_retry_after(
    mqtt_stack: SimStack, mqtt_client_factory
):
    await mqtt_stack.add_fault(operation="apply", kind="status", status=503)
    c = await mqtt_client_factory("GID_test@@@outage", connect=False)
    await mqtt_stack.eventually(lambda: c.counters.backoff_waits >= 1, what="backoff")
    backoff = c.events.of(EventKind.BACKOFF)[0]
    failed = c.events.of(EventKind.TOKEN_REQUEST_FAILED)[0]
    assert "503" in failed.detail["error"]
    assert backoff.detail["delay"] >= 5.0  # the AppServer's Retry-After base
    await mqtt_stack.clear_faults()
    await mqtt_stack.eventually(lambda: c.connected, advance=1, what="connected after outage")
    assert c.counters.token_request_failures >= 1


async def test_mass_kick_reconnects_spread_out_and_without_asking(
    mqtt_stack: SimStack, mqtt_client_factory
):
    clients = [await mqtt_client_factory(f"GID_test@@@kick{i}", seed=None) for i in range(12)]
    asks = await mqtt_stack.metric("appserver", "appserver_token_requests")
    await mqtt_stack.kick_all()
    await mqtt_stack.eventually(
        lambda: all(c.counters.backoff_waits >= 1 for c in clients), what="all backing off"
    )
    delays = [c.events.of(EventKind.BACKOFF)[0].detail["delay"] for c in clients]
    assert len(set(delays)) == len(delays)  # nobody retries in lockstep
    assert all(0 <= d <= 0.5 for d in delays)  # full jitter over [0, base]
    await mqtt_stack.eventually(
        lambda: all(c.counters.connects == 2 for c in clients), advance=0.05, what="all back"
    )
    assert await mqtt_stack.metric("appserver", "appserver_token_requests") == asks
    assert all(c.counters.token_requests == 1 for c in clients)


async def test_permission_mismatch_notice_keeps_the_token(
    mqtt_stack: SimStack, mqtt_client_factory
):
    c = await mqtt_client_factory("GID_test@@@readonly", resources=("test/#",), actions="R")
    token = c.token
    await c.publish("test/x", b"x", qos=0)  # an R token publishing: notice 5, disconnect
    await mqtt_stack.eventually(lambda: c.counters.connects == 2, advance=1, what="back")
    codes = [e.detail["code"] for e in c.events.of(EventKind.INVALID_NOTICE)]
    assert codes == [5]
    assert c.counters.reapplies == 0 and c.token == token


async def test_expiry_during_an_outage_then_recovery(mqtt_stack: SimStack, mqtt_client_factory):
    c = await mqtt_client_factory("GID_test@@@expire", refresh=RefreshPolicy(margin=100))
    old = c.token
    assert old is not None
    await mqtt_stack.add_fault(operation="apply", kind="status", status=503)
    # refresh attempts fail (stale token or 503); the token runs out in session
    await mqtt_stack.advance(old.expire_at - mqtt_stack.clock.now() + 1)
    await mqtt_stack.eventually(lambda: c.counters.disconnects == 1, what="session ended")
    await mqtt_stack.eventually(
        lambda: c.counters.token_request_failures >= 2, advance=1, what="503s"
    )
    await mqtt_stack.clear_faults()
    await mqtt_stack.eventually(lambda: c.connected, advance=2, what="back after outage")
    # the broker's invalid notice 2 or the client's own expiry check, whichever came
    # first in the jump past expiry, made the client re-ask
    reasons = [e.detail["reason"] for e in c.events.of(EventKind.TOKEN_REQUESTED)]
    reapplies = ("reapply: invalid notice 2", "reapply: expired in session")
    assert next(r for r in reasons if r.startswith("reapply")) in reapplies
    assert c.counters.reapplies == 1
    assert c.token is not None and c.token.expire_ms > old.expire_ms
    assert c.counters.connects == 2


async def test_a_flapping_session_backs_off_further_each_time(
    mqtt_stack: SimStack, mqtt_client_factory
):
    c = await mqtt_client_factory("GID_test@@@flap", resources=("test/#",))
    for n in range(3):  # kicked right after each CONNACK (notice 4)
        await c.publish("other/topic", b"x", qos=0)
        await mqtt_stack.eventually(lambda n=n: c.counters.connects == n + 2, advance=0.5)
    attempts = [e.detail["attempt"] for e in c.events.of(EventKind.BACKOFF)]
    assert attempts == [0, 1, 2]
    # a session that holds resets the schedule
    await mqtt_stack.advance(60)
    await c.publish("other/topic", b"x", qos=0)
    await mqtt_stack.eventually(lambda: c.counters.connects == 5, advance=0.5)
    assert c.events.of(EventKind.BACKOFF)[-1].detail["attempt"] == 0


async def test_the_stable_session_time_is_the_configs(mqtt_stack: SimStack, mqtt_client_factory):
    # 3 s of session is flapping by the default 10 s, stable by a 2 s setting.
    quick = await mqtt_client_factory(
        "GID_test@@@stable2", resources=("test/#",), stable_session_s=2.0
    )
    slow = await mqtt_client_factory("GID_test@@@stable10", resources=("test/#",))
    for round_ in range(2):
        await mqtt_stack.advance(3)  # each session holds 3 s, then is kicked (notice 4)
        for c in (quick, slow):
            await c.publish("other/topic", b"x", qos=0)
        await mqtt_stack.eventually(
            lambda r=round_: all(c.counters.connects == r + 2 for c in (quick, slow)),
            advance=0.5,
        )
    assert [e.detail["attempt"] for e in quick.events.of(EventKind.BACKOFF)] == [0, 0]
    assert [e.detail["attempt"] for e in slow.events.of(EventKind.BACKOFF)] == [0, 1]


def test_a_negative_stable_session_time_is_refused() -> None:
    from sim.customer.client import ClientConfig

    with pytest.raises(ValueError, match="stable_session_s"):
        ClientConfig(
            client_id="GID_test@@@x",
            secret="s",
            appserver_url="http://127.0.0.1:1",
            broker_url="mqtt://127.0.0.1:1",
            resources=("test/#",),
            stable_session_s=-1,
        )
