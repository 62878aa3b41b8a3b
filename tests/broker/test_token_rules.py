"""SPEC §4 on a real broker: credentials, ACL, violations, uploads, expiry, revocation,
notices.  Exact-control client (rawmqtt); time moves only by ``clock.advance``."""

from __future__ import annotations

import json

import pytest

from mock_broker.authority import TokenAuthority
from mock_broker.broker import BrokerHandle, run_broker
from mock_broker.config import BrokerConfig
from mock_broker.decision import AccountInfo
from sim.shared.clock import ManualClock, ScaledClock
from sim.shared.protocol import (
    TokenType,
    build_token_password,
    build_username,
    signature_password,
)
from sim.shared.protocol.tokens import TokenCodec

from .conftest import AK, INSTANCE, SK, USER, Minter, connect_raw
from .rawmqtt import PUBLISH, RawClient

pytestmark = pytest.mark.timeout(30)


async def _notice(client: RawClient, topic: str = "$SYS/tokenInvalidNotice") -> dict[str, object]:
    while True:
        packet = await client.expect(PUBLISH)
        if packet.topic == topic:
            return dict(json.loads(packet.payload))


def _pw(minter: Minter, **tokens: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
    return build_token_password(
        {
            TokenType(k): minter.token(actions, resources)
            for k, (actions, resources) in tokens.items()
        }
    )


# -- CONNECT ------------------------------------------------------------------------------


async def test_connect_accepts_valid_tokens_in_any_order(
    broker: BrokerHandle, minter: Minter
) -> None:
    pw = _pw(minter, W=(("W",), ("a/#",)), R=(("R",), ("b/#",)))
    client = await connect_raw(broker.port, "GID_test@@@one", pw)
    assert await client.subscribe(("b/x", 1)) == [1]
    await client.publish("a/x", b"ok", qos=1)
    assert broker.metrics.value("mqtt_broker_connects_total", outcome="accepted") == 1


@pytest.mark.parametrize(
    ("case", "expected_rc", "reason"),
    [
        ("forged", 5, "forged"),
        ("expired", 5, "expired"),
        ("revoked", 5, "revoked"),
        ("other_account", 5, "wrong_account"),
        ("other_instance", 5, "wrong_account"),
        ("type_mismatch", 5, "type_mismatch"),
        ("one_bad_of_two", 5, "forged"),
        ("malformed_password", 4, "malformed"),
        ("malformed_username", 4, "malformed"),
        ("bad_client_id", 2, "client_id"),
        ("long_client_id", 2, "client_id"),
        ("disabled_account", 5, "account"),
    ],
)
async def test_connect_refusals(
    broker: BrokerHandle,
    minter: Minter,
    clock: ManualClock,
    case: str,
    expected_rc: int,
    reason: str,
) -> None:
    user, client_id = USER, "GID_test@@@dev"
    rw = build_token_password({TokenType.RW: minter.token()})
    password = {
        "forged": "RW|" + minter.token()[:-4] + "AAA=",
        "expired": build_token_password({TokenType.RW: minter.token(ttl=10)}),
        "other_account": build_token_password({TokenType.RW: minter.token(ak="ak2")}),
        "other_instance": build_token_password({TokenType.RW: minter.token(instance="inst2")}),
        "type_mismatch": build_token_password({TokenType.R: minter.token()}),  # RW token as R
        "one_bad_of_two": build_token_password(
            {TokenType.R: minter.token(("R",)), TokenType.W: "bm90IGEgdG9rZW4="}
        ),
        "malformed_password": "RW|t|R",
    }.get(case, rw)
    if case == "expired":
        clock.advance(11)
    if case == "revoked":
        claims = minter.claims()
        password = build_token_password({TokenType.RW: minter.codec.encode(claims)})
        broker.authority.revoke(claims.token_id, claims.expire_ms)
    if case == "malformed_username":
        user = "Token|dev-ak"
    if case == "bad_client_id":
        client_id = "device-1"
    if case == "long_client_id":
        client_id = "GID_test@@@" + "x" * 54  # 65 characters
    if case == "disabled_account":
        broker.authority.set_account(AccountInfo(AK, SK, frozenset({INSTANCE}), enabled=False))
    client, rc, present = await RawClient.connected(broker.port, client_id, user, password)
    assert (rc, present) == (expected_rc, 0)
    assert await client.closed()
    assert broker.metrics.value("mqtt_broker_connects_total", outcome=reason) == 1
    assert len(broker.broker.sessions) == 0


async def test_signature_mode(broker: BrokerHandle) -> None:
    user = build_username(AK, INSTANCE, mode="Signature")
    good = signature_password(SK, "GID_test@@@sig")
    client, rc, _ = await RawClient.connected(broker.port, "GID_test@@@sig", user, good)
    assert rc == 0
    assert await client.subscribe(("#", 1), ("any/thing", 0)) == [1, 0]  # full access
    bad = signature_password(SK, "GID_test@@@other")
    _, rc, _ = await RawClient.connected(broker.port, "GID_test@@@sig2", user, bad)
    assert rc == 5
    assert broker.metrics.value("mqtt_broker_connects_total", outcome="bad_signature") == 1


async def test_second_connection_takes_over_whatever_clean_flag(
    broker: BrokerHandle, minter: Minter
) -> None:
    first = await connect_raw(broker.port, "GID_test@@@same", minter.password(), clean=False)
    second = await connect_raw(broker.port, "GID_test@@@same", minter.password(), clean=True)
    assert await first.closed()
    assert await second.subscribe(("a", 0)) == [0]
    assert broker.metrics.value("mqtt_broker_disconnects_total", reason="takeover") == 1


# -- ACL and violations --------------------------------------------------------------------


async def test_subscribe_needs_exact_coverage_else_notice_4(
    broker: BrokerHandle, minter: Minter
) -> None:
    client = await connect_raw(broker.port, "GID_test@@@sub", minter.password("R", ("a/+",)))
    assert await client.subscribe(("a/b", 1), ("a/+", 0)) == [1, 0]
    await client.subscribe(("a/#", 0), wait=False)
    assert await _notice(client) == {"code": 4, "type": "R"}
    assert await client.closed()
    assert broker.metrics.value("mqtt_broker_violations_total", action="subscribe", code="4") == 1


async def test_subscribe_with_write_only_token_is_notice_5(
    broker: BrokerHandle, minter: Minter
) -> None:
    client = await connect_raw(broker.port, "GID_test@@@w", minter.password("W", ("a/#",)))
    await client.subscribe(("a/b", 0), wait=False)
    assert await _notice(client) == {"code": 5, "type": None}
    assert await client.closed()


async def test_publish_rules(broker: BrokerHandle, minter: Minter) -> None:
    reader = await connect_raw(broker.port, "GID_test@@@r", minter.password("R", ("a/#",)))
    await reader.publish("a/b", b"x", qos=1, wait=False)
    assert await _notice(reader) == {"code": 5, "type": None}
    assert await reader.closed()
    writer = await connect_raw(broker.port, "GID_test@@@w", minter.password("W", ("a/b",)))
    await writer.publish("a/b", b"fine", qos=1)
    await writer.publish("a/c", b"no", qos=1, wait=False)
    assert await _notice(writer) == {"code": 4, "type": "W"}
    assert await writer.closed()


@pytest.mark.parametrize(
    "broker_config", [BrokerConfig(port=0, violation="gentle", profile="mqtt")]
)
async def test_gentle_mode_answers_in_mqtt(broker: BrokerHandle, minter: Minter) -> None:
    client = await connect_raw(broker.port, "GID_test@@@gentle", minter.password("RW", ("a/+",)))
    assert await client.subscribe(("a/#", 1), ("a/b", 1)) == [0x80, 1]
    await client.publish("z/z", b"dropped", qos=1)  # PUBACK, not routed
    await client.publish("a/b", b"kept", qos=1)
    got = await client.expect(PUBLISH)
    assert (got.topic, got.payload) == ("a/b", b"kept")  # the dropped one never came


async def test_dollar_topics_are_not_matched_by_wildcards(
    broker: BrokerHandle, minter: Minter
) -> None:
    pw = minter.password("RW", ("#", "$app/x"))
    wild = await connect_raw(broker.port, "GID_test@@@wild", pw)
    exact = await connect_raw(broker.port, "GID_test@@@exact", pw)
    assert await wild.subscribe(("#", 0)) == [0]
    assert await exact.subscribe(("$app/x", 0)) == [0]
    await exact.publish("$app/x", b"dollar", qos=1)
    await exact.publish("plain", b"marker", qos=1)
    assert (await wild.expect(PUBLISH)).topic == "plain"
    assert (await exact.expect(PUBLISH)).topic == "$app/x"


# -- $SYS/uploadToken ----------------------------------------------------------------------


async def test_upload_swaps_token_and_acks_after(
    broker: BrokerHandle, minter: Minter, clock: ManualClock
) -> None:
    spy = await RawClient.connected(
        broker.port, "GID_test@@@spy", build_username(AK, INSTANCE, "Signature"),
        signature_password(SK, "GID_test@@@spy"),
    )  # fmt: skip
    assert spy[1] == 0
    assert await spy[0].subscribe(("$SYS/#", 0), ("#", 0)) == [0, 0]
    client = await connect_raw(
        broker.port, "GID_test@@@up", minter.password("R", ("a/#",), ttl=600)
    )
    fresh = minter.token(("R",), ("b/#",), ttl=7200)
    body = json.dumps({"token": fresh, "type": "R"}).encode()
    await client.publish("$SYS/uploadToken", body, qos=1)  # waits for PUBACK
    assert broker.metrics.value("mqtt_broker_uploads_total", outcome="ok") == 1
    assert await client.subscribe(("b/c", 0)) == [0]  # the new resources are in force
    clock.advance(700)  # past the first token's expiry: the new one rules
    assert await client.subscribe(("b/d", 0)) == [0]
    await spy[0].publish("marker", b"m", qos=1)
    assert (await spy[0].expect(PUBLISH)).topic == "marker"  # the upload was never routed


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"not json", 1),
        (b'{"token": "garbage", "type": "R"}', 1),
        (None, 5),  # an RW token uploaded as R
    ],
)
async def test_bad_upload_gets_notice_and_disconnect(
    broker: BrokerHandle, minter: Minter, payload: bytes | None, code: int
) -> None:
    client = await connect_raw(broker.port, "GID_test@@@bad", minter.password("R", ("a/#",)))
    if payload is None:
        payload = json.dumps({"token": minter.token(), "type": "R"}).encode()
    await client.publish("$SYS/uploadToken", payload, qos=1, wait=False)
    packets = []
    while (packet := await client.read()) is not None:
        packets.append(packet)
    assert [p.kind for p in packets] == [PUBLISH]  # the notice, and no PUBACK
    assert json.loads(packets[0].payload)["code"] == code


# -- expiry, revocation, accounts ------------------------------------------------------------


async def test_expiry_notice_once_then_invalid_2_and_will(
    broker: BrokerHandle, minter: Minter, clock: ManualClock
) -> None:
    watcher = await connect_raw(broker.port, "GID_test@@@watch", minter.password(ttl=100_000))
    assert await watcher.subscribe(("will/#", 0)) == [0]
    client = await connect_raw(
        broker.port, "GID_test@@@exp", minter.password("RW", ("a/#", "will/#"), ttl=1000),
        will=("will/exp", b"bye", 0, False),
    )  # fmt: skip
    assert await client.subscribe(("a/b", 0)) == [0]
    clock.advance(700)  # the notice is due 300 s before expiry
    notice = await _notice(client, "$SYS/tokenExpireNotice")
    assert notice == {"expireTime": minter.clock.now_ms() + 300_000, "type": "RW"}
    clock.advance(299)
    await client.publish("a/b", b"still alive", qos=1)
    got = await client.expect(PUBLISH)
    assert got.payload == b"still alive"  # and no second expire notice came first
    clock.advance(1)
    assert await _notice(client) == {"code": 2, "type": "RW"}
    assert await client.closed()
    will = await watcher.expect(PUBLISH)
    assert (will.topic, will.payload) == ("will/exp", b"bye")


@pytest.mark.parametrize(
    "broker_config", [BrokerConfig(port=0, expire_notice_lead=10, profile="mqtt")]
)
async def test_expire_notice_lead_is_configurable(
    broker: BrokerHandle, minter: Minter, clock: ManualClock
) -> None:
    client = await connect_raw(broker.port, "GID_test@@@lead", minter.password(ttl=100))
    clock.advance(89)
    await client.subscribe(("a", 0))
    clock.advance(1)
    notice = await _notice(client, "$SYS/tokenExpireNotice")
    assert notice["type"] == "RW"


async def test_revocation_notice_3_and_disconnect(broker: BrokerHandle, minter: Minter) -> None:
    claims = minter.claims(("R",), ("a/#",))
    password = build_token_password({TokenType.R: minter.codec.encode(claims)})
    client = await connect_raw(broker.port, "GID_test@@@rev", password)
    bystander = await connect_raw(broker.port, "GID_test@@@by", minter.password())
    assert await bystander.subscribe(("$SYS/tokenInvalidNotice", 0), ("#", 0)) == [0, 0]
    broker.authority.revoke(claims.token_id, claims.expire_ms)
    assert await _notice(client) == {"code": 3, "type": "R"}
    assert await client.closed()
    await bystander.publish("marker", b"m", qos=1)
    assert (await bystander.expect(PUBLISH)).topic == "marker"  # saw no one's notice
    _, rc, _ = await RawClient.connected(broker.port, "GID_test@@@rev", USER, password)
    assert rc == 5


async def test_disabled_account_gets_minus_1(broker: BrokerHandle, minter: Minter) -> None:
    client = await connect_raw(broker.port, "GID_test@@@acct", minter.password())
    broker.authority.set_account(AccountInfo(AK, SK, frozenset({INSTANCE}), enabled=False))
    assert await _notice(client) == {"code": -1, "type": None}
    assert await client.closed()


async def test_kick_all_drops_everyone(broker: BrokerHandle, minter: Minter) -> None:
    clients = [
        await connect_raw(broker.port, f"GID_test@@@k{i}", minter.password()) for i in range(3)
    ]
    assert await broker.kick_all() == 3
    for client in clients:
        assert await client.closed()
    assert broker.metrics.value("mqtt_broker_disconnects_total", reason="kicked") == 3


async def test_notice_already_due_at_connect_is_sent_at_once(
    broker: BrokerHandle, minter: Minter
) -> None:
    client = await connect_raw(broker.port, "GID_test@@@q0", minter.password(ttl=200))
    notice = await client.expect(PUBLISH)  # within the lead already
    assert notice.topic == "$SYS/tokenExpireNotice"
    assert notice.qos == 0  # notices are QoS 0: nothing to acknowledge


async def test_remembered_decisions_follow_expiry_and_revocation(
    broker: BrokerHandle, minter: Minter, clock: ManualClock
) -> None:
    claims = minter.claims(ttl=100)
    password = build_token_password({TokenType.RW: minter.codec.encode(claims)})
    for _ in range(2):  # the second CONNECT is answered from memory
        client = await connect_raw(broker.port, "GID_test@@@memo", password)
        await client.disconnect()
    clock.advance(100)
    _, rc, _ = await RawClient.connected(broker.port, "GID_test@@@memo", USER, password)
    assert rc == 5
    fresh = minter.claims(ttl=1000)
    password = build_token_password({TokenType.RW: minter.codec.encode(fresh)})
    client = await connect_raw(broker.port, "GID_test@@@memo", password)
    await client.disconnect()
    broker.authority.revoke(fresh.token_id, fresh.expire_ms)
    _, rc, _ = await RawClient.connected(broker.port, "GID_test@@@memo", USER, password)
    assert rc == 5


async def test_a_will_is_only_published_where_the_client_could_publish(
    broker: BrokerHandle, minter: Minter
) -> None:
    watcher = await connect_raw(broker.port, "GID_test@@@ww", minter.password())
    assert await watcher.subscribe(("#", 0)) == [0]
    reader = await connect_raw(
        broker.port,
        "GID_test@@@ro",
        minter.password("R", ("a/#",)),
        will=("a/will", b"x", 0, False),
    )
    reader.close()
    writer = await connect_raw(
        broker.port,
        "GID_test@@@wo",
        minter.password("W", ("a/#",)),
        will=("a/will", b"ok", 0, False),
    )
    writer.close()
    got = await watcher.expect(PUBLISH)
    assert got.payload == b"ok"  # the R-only client's will was dropped
    assert broker.metrics.value("mqtt_broker_violations_total", action="will", code="5") == 1


async def test_scaled_clock_runs_token_life_fast(authority: TokenAuthority, key: bytes) -> None:
    # 600 virtual seconds of token life in about one real second (scale 600): the notice
    # 300 s before expiry, then the expiry, both by timer, each at or after its virtual
    # instant (how much after depends on the machine's load; the order does not).
    clock = ScaledClock(600.0)
    minter = Minter(TokenCodec({"k1": key}, "k1"), clock)  # type: ignore[arg-type]
    claims = minter.claims(ttl=600)
    password = build_token_password({TokenType.RW: minter.codec.encode(claims)})
    async with run_broker(
        BrokerConfig(port=0, profile="mqtt"), clock, authority=authority
    ) as broker:
        client = await connect_raw(broker.port, "GID_test@@@fast", password)
        assert (await _notice(client, "$SYS/tokenExpireNotice"))["type"] == "RW"
        assert clock.now_ms() >= claims.expire_ms - 300_000
        assert (await _notice(client))["code"] == 2
        assert clock.now_ms() >= claims.expire_ms
        assert await client.closed()


async def test_expiry_is_exactly_at_the_tokens_expire_time(
    broker: BrokerHandle, minter: Minter, clock: ManualClock
) -> None:
    claims = minter.claims(ttl=1000)
    password = build_token_password({TokenType.RW: minter.codec.encode(claims)})
    client = await connect_raw(broker.port, "GID_test@@@edge", password)
    assert await client.subscribe(("a/b", 0)) == [0]
    clock.set(claims.expire_ms / 1000 - 0.001)  # one millisecond before: still valid
    await client.publish("a/b", b"alive", qos=1)
    packets = [await client.read(), await client.read()]  # the expire notice, the echo
    assert sorted(p.topic for p in packets) == ["$SYS/tokenExpireNotice", "a/b"]
    clock.set(claims.expire_ms / 1000)
    assert await _notice(client) == {"code": 2, "type": "RW"}
    assert await client.closed()
