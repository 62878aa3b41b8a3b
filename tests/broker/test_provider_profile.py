"""SPEC §4a on a live broker, each rule under both profiles: ``provider`` refuses or
changes what the provider's broker lacks, ``mqtt`` behaves as plain MQTT 3.1.1; both count
each use in the fidelity report.  Also the SPEC §4 rules the provider's docs fixed (client
ids, the ``Token`` upload key, MQTT 5 CONNECT) and P2P messaging.

The instance ``mqtt-dev`` has the parent topics ``demo`` and ``dev``; tokens cover
``demo/#`` unless a test says otherwise.  "Nothing came" is shown by a marker message
published afterwards arriving first (the broker keeps each client's order)."""

from __future__ import annotations

import argparse
import json
import struct
from collections.abc import AsyncIterator

import aiohttp
import pytest

from mock_broker.authority import TokenAuthority
from mock_broker.broker import BrokerHandle, run_broker
from mock_broker.cli import add_arguments, config_from_args
from mock_broker.config import BrokerConfig
from mock_broker.errors import BrokerConfigError
from mock_broker.fidelity import Feature
from mock_broker.profile import MAX_MESSAGE_BYTES, MAX_SUBSCRIPTIONS
from sim.shared.clock import ManualClock
from sim.shared.protocol import build_username

from .conftest import INSTANCE, USER, Minter, connect_raw, until
from .rawmqtt import CONNACK, PUBACK, PUBLISH, RawClient, connect_packet, packet

pytestmark = pytest.mark.timeout(30)

DEMO = "demo/#"
PARENTS = ("demo", "dev")


@pytest.fixture(params=["provider", "mqtt"])
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def broker_config(profile: str) -> BrokerConfig:
    return BrokerConfig(port=0, profile=profile, metrics_port=0)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def parent_topics(authority: TokenAuthority) -> None:
    authority.set_parent_topics(INSTANCE, PARENTS)


async def _next_topic(client: RawClient) -> str:
    return (await client.expect(PUBLISH)).topic


async def _marker(pub: RawClient, sub: RawClient, topic: str = "demo/marker") -> None:
    """Publish a marker and check it is the next thing ``sub`` receives."""
    await pub.publish(topic, b"marker", qos=1)
    assert await _next_topic(sub) == topic


def _uses(broker: BrokerHandle, client_id: str) -> dict[Feature, int]:
    return dict(broker.policy.fidelity.uses_of(client_id, INSTANCE))


# -- wills ------------------------------------------------------------------------------------


async def test_a_will_is_accepted_and_never_published(
    broker: BrokerHandle, minter: Minter, profile: str
) -> None:
    watcher = await connect_raw(broker.port, "GID_demo@@@watch", minter.password("RW", (DEMO,)))
    assert await watcher.subscribe(("demo/will/#", 1)) == [1]
    rude = await connect_raw(
        broker.port, "GID_demo@@@rude", minter.password("RW", (DEMO,)),
        will=("demo/will/rude", b"gone", 1, False),
    )  # fmt: skip
    rude.close()  # an abnormal close: MQTT publishes the will
    await until(lambda: broker.metrics.value("mqtt_broker_disconnects_total", reason="lost") == 1)
    if profile == "mqtt":
        assert await _next_topic(watcher) == "demo/will/rude"
    await _marker(watcher, watcher, "demo/will/marker")
    assert _uses(broker, "GID_demo@@@rude") == {Feature.WILL: 1}


# -- retained messages ----------------------------------------------------------------------------


async def test_a_retained_publish_is_delivered_and_not_stored(
    broker: BrokerHandle, minter: Minter, profile: str
) -> None:
    early = await connect_raw(broker.port, "GID_demo@@@early", minter.password("RW", (DEMO,)))
    assert await early.subscribe(("demo/state", 1)) == [1]
    pub = await connect_raw(broker.port, "GID_demo@@@pub", minter.password("RW", (DEMO,)))
    await pub.publish("demo/state", b"on", qos=1, retain=True)
    got = await early.expect(PUBLISH)
    assert (got.topic, got.payload, got.retain) == ("demo/state", b"on", False)
    late = await connect_raw(broker.port, "GID_demo@@@late", minter.password("RW", (DEMO,)))
    assert await late.subscribe(("demo/state", 1), ("demo/marker", 1)) == [1, 1]
    if profile == "mqtt":
        kept = await late.expect(PUBLISH)
        assert (kept.payload, kept.retain) == (b"on", True)
    await _marker(pub, late)
    assert _uses(broker, "GID_demo@@@pub") == {Feature.RETAIN: 1}


# -- topic limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["demo/" + "x" * 60, "demo/a:b", "demo/50%"])
async def test_topics_over_the_limits(
    broker: BrokerHandle, minter: Minter, profile: str, topic: str
) -> None:
    client = await connect_raw(broker.port, "GID_demo@@@long", minter.password("RW", ("#",)))
    granted = await client.subscribe((topic, 1), ("demo/marker", 1))
    assert granted == ([0x80, 1] if profile == "provider" else [1, 1])
    watcher = await connect_raw(broker.port, "GID_demo@@@wide", minter.password("RW", ("#",)))
    assert await watcher.subscribe(("demo/#", 1)) == [1]
    await client.publish(topic, b"x", qos=1)  # acknowledged either way
    if profile == "mqtt":
        assert await _next_topic(watcher) == topic
    await _marker(client, watcher)
    assert _uses(broker, "GID_demo@@@long") == {Feature.TOPIC_LIMITS: 2}


async def test_at_most_30_subscriptions(broker: BrokerHandle, minter: Minter, profile: str) -> None:
    client = await connect_raw(broker.port, "GID_demo@@@subs", minter.password("RW", (DEMO,)))
    filters = [(f"demo/s{i}", 1) for i in range(MAX_SUBSCRIPTIONS + 1)]
    granted = await client.subscribe(*filters)
    assert granted == [1] * MAX_SUBSCRIPTIONS + ([0x80] if profile == "provider" else [1])
    assert await client.subscribe(("demo/s0", 0)) == [0]  # a re-SUBSCRIBE replaces: no 31st
    assert await client.subscribe(("$SYS/tokenExpireNotice", 0)) == [0]  # the broker's own
    assert _uses(broker, "GID_demo@@@subs") == {Feature.SUBSCRIPTIONS: 1}


async def test_messages_over_64_kb_are_discarded(
    broker: BrokerHandle, minter: Minter, profile: str
) -> None:
    sub = await connect_raw(broker.port, "GID_demo@@@big", minter.password("RW", (DEMO,)))
    assert await sub.subscribe(("demo/big", 1), ("demo/marker", 1)) == [1, 1]
    await sub.publish("demo/big", b"x" * MAX_MESSAGE_BYTES, qos=1)  # 64 KB: fine
    got = await sub.expect(PUBLISH)
    assert len(got.payload) == MAX_MESSAGE_BYTES
    await sub.ack(got)
    await sub.publish("demo/big", b"x" * (100 * 1024), qos=1)  # PUBACK, then dropped
    if profile == "mqtt":
        assert len((await sub.expect(PUBLISH)).payload) == 100 * 1024
    await _marker(sub, sub)
    assert _uses(broker, "GID_demo@@@big") == {Feature.MESSAGE_SIZE: 1}


async def test_qos2_on_a_persistent_session_is_granted_as_1(
    broker: BrokerHandle, minter: Minter, profile: str
) -> None:
    durable = await connect_raw(
        broker.port, "GID_demo@@@durable", minter.password("RW", (DEMO,)), clean=False
    )
    assert await durable.subscribe(("demo/q", 2)) == [1 if profile == "provider" else 2]
    clean = await connect_raw(broker.port, "GID_demo@@@clean", minter.password("RW", (DEMO,)))
    assert await clean.subscribe(("demo/q", 2)) == [2]  # clean session: QoS 2 is fine
    assert _uses(broker, "GID_demo@@@durable") == {Feature.QOS2_PERSISTENT: 1}
    assert _uses(broker, "GID_demo@@@clean") == {}


# -- parent topics --------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["subscribe", "publish"])
async def test_a_topic_outside_the_parent_topics_is_refused(
    broker: BrokerHandle, minter: Minter, profile: str, action: str
) -> None:
    # The token covers everything: the refusal is the parent topic's, not the token's.
    client = await connect_raw(broker.port, "GID_demo@@@stray", minter.password("RW", ("#",)))
    if action == "subscribe":
        assert await client.subscribe(("demo/ok", 0)) == [0]
        await client.subscribe(("plant/line-1", 1), wait=False)
    else:
        await client.publish("plant/line-1", b"x", qos=1, wait=False)
    if profile == "provider":
        packets = []
        while (p := await client.read()) is not None:
            packets.append(p.kind)
        assert packets == []  # no SUBACK/PUBACK, no notice: closed
        assert broker.metrics.value("mqtt_broker_disconnects_total", reason="parent_topic") == 1
    else:
        await client.expect(PUBACK if action == "publish" else 9)
    assert _uses(broker, "GID_demo@@@stray") == {Feature.PARENT_TOPIC: 1}


@pytest.mark.parametrize(
    "broker_config", [BrokerConfig(port=0, violation="gentle")], ids=["gentle"]
)
async def test_gentle_violations_refuse_a_parent_topic_in_mqtt_words(
    broker: BrokerHandle, minter: Minter
) -> None:
    client = await connect_raw(broker.port, "GID_demo@@@gentle", minter.password("RW", ("#",)))
    assert await client.subscribe(("plant/x", 1), ("demo/marker", 1)) == [0x80, 1]
    await client.publish("plant/x", b"dropped", qos=1)
    await _marker(client, client)


# -- SPEC §4 as the provider documents it -----------------------------------------------------


async def test_client_ids_as_the_provider_has_them(broker: BrokerHandle, minter: Minter) -> None:
    good, rc, _ = await RawClient.connected(broker.port, "GID-demo@@@dev1", USER, minter.password())
    assert rc == 0
    good.close()
    for bad in ("GID_a@@@d", "GID_x@@@dev:1", "GID_x@@@dev.1"):
        _, rc, _ = await RawClient.connected(broker.port, bad, USER, minter.password())
        assert rc == 2, bad


async def test_upload_with_the_key_Token(broker: BrokerHandle, minter: Minter) -> None:
    client = await connect_raw(broker.port, "GID_demo@@@up", minter.password("R", ("demo/a",)))
    fresh = minter.token(("R",), ("demo/#",))
    await client.publish("$SYS/uploadToken", json.dumps({"Token": fresh, "type": "R"}).encode(), 1)
    assert await client.subscribe(("demo/b", 0)) == [0]  # the uploaded resources rule
    assert broker.metrics.value("mqtt_broker_uploads_total", outcome="ok") == 1


async def test_mqtt5_connect_gets_connack_1_then_close(broker: BrokerHandle) -> None:
    # MQTT 5 CONNECT: protocol level 5, then a properties length (0) in the header.
    body = struct.pack("!H", 4) + b"MQTT" + bytes([5, 0x02]) + struct.pack("!H", 60) + b"\x00"
    body += struct.pack("!H", 15) + b"GID_demo@@@five"
    client = await RawClient.open(broker.port)
    await client.send(packet(1, 0, body))
    ack = await client.expect(CONNACK)
    assert list(ack.body) == [0, 1]  # session present 0, 0x01 unacceptable protocol version
    assert await client.closed()


async def test_mqtt_3_1_is_spoken(broker: BrokerHandle, minter: Minter) -> None:
    raw = connect_packet("GID_demo@@@v31", USER, minter.password())
    raw = raw.replace(b"\x00\x04MQTT\x04", b"\x00\x06MQIsdp\x03", 1)
    raw = bytes([raw[0], raw[1] + 2]) + raw[2:]  # two bytes longer name
    client = await RawClient.open(broker.port)
    await client.send(raw)
    assert list((await client.expect(CONNACK)).body) == [0, 0]


# -- P2P (SPEC §4a, the provider's P2P doc) ---------------------------------------------------


async def test_p2p_reaches_its_target_without_a_subscription(
    broker: BrokerHandle, minter: Minter
) -> None:
    # The receiver reads only demo/x; the sender writes only demo/testMq4Iot (the
    # provider's token demo): P2P needs neither a subscription nor a matching resource.
    target = await connect_raw(
        broker.port, "GID_demo@@@device001", minter.password("R", ("demo/x",))
    )
    watcher = await connect_raw(broker.port, "GID_demo@@@watcher", minter.password("RW", (DEMO,)))
    assert await watcher.subscribe(("demo/#", 1)) == [1]
    sender = await connect_raw(
        broker.port, "GID_demo@@@sender", minter.password("RW", ("demo/testMq4Iot",))
    )
    await sender.publish("demo/p2p/GID_demo@@@device001", b"hello p2p", qos=1)
    got = await target.expect(PUBLISH)
    assert (got.topic, got.payload, got.qos) == ("demo/p2p/GID_demo@@@device001", b"hello p2p", 1)
    await _marker(watcher, watcher)  # a subscriber to demo/# does not see P2P messages
    assert broker.policy.fidelity.report().totals == {}


async def test_p2p_needs_a_write_token_under_that_parent_topic(
    broker: BrokerHandle, minter: Minter
) -> None:
    await connect_raw(broker.port, "GID_demo@@@device001", minter.password("R", ("demo/x",)))
    sender = await connect_raw(broker.port, "GID_demo@@@sender", minter.password("RW", ("dev/#",)))
    await sender.publish("demo/p2p/GID_demo@@@device001", b"no", qos=1, wait=False)
    notice = await sender.expect(PUBLISH)
    assert json.loads(notice.payload) == {"code": 4, "type": "RW"}
    assert await sender.closed()


async def test_p2p_to_a_client_that_is_not_there(broker: BrokerHandle, minter: Minter) -> None:
    sender = await connect_raw(broker.port, "GID_demo@@@sender", minter.password("RW", (DEMO,)))
    await sender.publish("demo/p2p/GID_demo@@@nobody", b"lost", qos=1)  # acknowledged, lost
    await sender.publish("demo/p2p/not-a-client-id", b"lost", qos=1)
    # A client of another instance is no target either (tenants never see each other).
    other_user = build_username("ak2", "inst2")
    other_pw = f"RW|{minter.token(('R', 'W'), ('#',), ak='ak2', instance='inst2')}"
    other, rc, _ = await RawClient.connected(broker.port, "GID_demo@@@other", other_user, other_pw)
    assert rc == 0
    await sender.publish("demo/p2p/GID_demo@@@other", b"not yours", qos=1)
    await other.subscribe(("$SYS/tokenExpireNotice", 0))  # a round trip: nothing came first
    assert other.backlog == []
    assert _uses(broker, "GID_demo@@@sender") == {Feature.P2P_UNKNOWN_CLIENT: 3}


async def test_p2p_waits_for_a_persistent_session(broker: BrokerHandle, minter: Minter) -> None:
    pw = minter.password("RW", (DEMO,))
    away = await connect_raw(broker.port, "GID_demo@@@away", pw, clean=False)
    await away.disconnect()
    await until(lambda: broker.metrics.value("mqtt_broker_disconnects_total", reason="client") == 1)
    sender = await connect_raw(broker.port, "GID_demo@@@sender", pw)
    await sender.publish("demo/p2p/GID_demo@@@away", b"while away", qos=1)
    back, _, present = await RawClient.connected(
        broker.port, "GID_demo@@@away", USER, pw, clean=False
    )
    assert present == 1
    got = await back.expect(PUBLISH)
    assert (got.payload, got.qos) == (b"while away", 1)
    assert _uses(broker, "GID_demo@@@sender") == {}


# -- the fidelity report: metrics, JSON endpoint, accessor -------------------------------------


async def test_the_fidelity_report_is_served(
    broker: BrokerHandle, minter: Minter, profile: str
) -> None:
    client = await connect_raw(
        broker.port, "GID_demo@@@report", minter.password("RW", (DEMO,)),
        will=("demo/will", b"w", 0, False),
    )  # fmt: skip
    await client.publish("demo/r", b"r", qos=1, retain=True)
    base = f"http://127.0.0.1:{broker.metrics_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/fidelity") as resp:
            doc = await resp.json()
        async with http.get(f"{base}/metrics") as resp:
            text = await resp.text()
    assert doc["profile"] == profile
    assert doc["totals"] == {"retain": 1, "will": 1}
    assert doc["clients"] == [
        {
            "instance_id": INSTANCE,
            "client_id": "GID_demo@@@report",
            "uses": {"retain": 1, "will": 1},
        }
    ]
    assert 'mqtt_broker_fidelity_uses_total{feature="will"} 1.0' in text
    assert (
        'mqtt_broker_fidelity_client_uses_total{client_id="GID_demo@@@report",'
        'feature="retain",instance="mqtt-dev"} 1.0'
    ) in text
    report = broker.fidelity()
    assert report.totals == {Feature.WILL: 1, Feature.RETAIN: 1}
    assert any("GID_demo@@@report" in line for line in report.lines())


@pytest.fixture
async def open_broker(clock: ManualClock, profile: str) -> AsyncIterator[BrokerHandle]:
    config = BrokerConfig(port=0, auth_enabled=False, profile=profile)  # type: ignore[arg-type]
    async with run_broker(config, clock, authority=TokenAuthority()) as broker:
        yield broker


async def test_auth_off_has_no_parent_topics_but_the_limits(
    open_broker: BrokerHandle, profile: str
) -> None:
    client, rc, _ = await RawClient.connected(open_broker.port, "anyone")
    assert rc == 0
    granted = await client.subscribe(("any/topic", 1), ("x" * 70, 1))
    assert granted == ([1, 0x80] if profile == "provider" else [1, 1])
    assert open_broker.policy.fidelity.uses_of("anyone") == {Feature.TOPIC_LIMITS: 1}


def test_the_profile_switch() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--authserver", "http://127.0.0.1:1"]
    assert config_from_args(parser.parse_args(base))[0].profile == "provider"
    assert config_from_args(parser.parse_args([*base, "--profile", "mqtt"]))[0].profile == "mqtt"
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--profile", "amqp"])
    # the environment, as for every flag (sim.harness.envdefaults, docs/stack.md)
    from sim.harness.cli import build_parser

    env = {"MQTT_TOKEN_SIM_BROKER_PROFILE": "mqtt"}
    assert build_parser(env).parse_args(["broker", *base]).profile == "mqtt"
    with pytest.raises(BrokerConfigError, match="profile"):
        BrokerConfig(profile="amqp")  # type: ignore[arg-type]
