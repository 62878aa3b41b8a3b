"""Tenants never see each other (SPEC §4, docs/broker.md "Namespaces and sessions").

Every instance of every account is a namespace of its own: topics, retained messages,
sessions and client ids.  A token of another account or instance, even with resource
``#``, and a signature-mode client of another account or instance (full access, but
*in its instance*) neither receive nor publish into ``dev-ak``/``mqtt-dev``, nor take
over or resume its clients' sessions.  Within one namespace, a session resumed with a
narrower token keeps only what the new token may read.

"Nothing arrived" is decided by a marker, never by waiting: the client publishes a
marker message to itself after the messages that must not reach it; whatever it read
before the marker is what leaked.
"""

from __future__ import annotations

from collections.abc import Callable

import aiomqtt
import pytest

from mock_broker.authority import TokenAuthority
from mock_broker.broker import BrokerHandle
from mock_broker.decision import AccountInfo
from sim.shared.protocol import (
    TokenType,
    build_token_password,
    build_username,
    signature_password,
)

from .conftest import AK, INSTANCE, SK, USER, Minter, connect_raw, until
from .rawmqtt import PUBLISH, Packet, RawClient

pytestmark = pytest.mark.timeout(30)

OTHER_INSTANCE = "mqtt-two"  # a second instance of dev-ak
VICTIM = "GID_victim@@@victim"


@pytest.fixture
def authority(authority: TokenAuthority) -> TokenAuthority:
    authority.set_account(AccountInfo(AK, SK, frozenset({INSTANCE, OTHER_INSTANCE})))
    return authority


# Outsiders of dev-ak/mqtt-dev: (access key, secret, instance, mode).
OUTSIDERS = {
    "other_account_token": ("ak2", "sk2", "inst2", "Token"),
    "other_instance_token": (AK, SK, OTHER_INSTANCE, "Token"),
    "other_account_signature": ("ak2", "sk2", "inst2", "Signature"),
    "other_instance_signature": (AK, SK, OTHER_INSTANCE, "Signature"),
}


def outsider_credentials(minter: Minter, kind: str, client_id: str) -> tuple[str, str]:
    """Username and password of an outsider whose token (if any) reads and writes ``#``."""
    ak, sk, instance, mode = OUTSIDERS[kind]
    username = build_username(ak, instance, mode=mode)
    if mode == "Signature":
        return username, signature_password(sk, client_id)
    token = minter.token(("R", "W"), ("#",), ak=ak, instance=instance)
    return username, build_token_password({TokenType.RW: token})


async def connect_outsider(
    broker: BrokerHandle, minter: Minter, kind: str, client_id: str, **kw: object
) -> tuple[RawClient, int]:
    username, password = outsider_credentials(minter, kind, client_id)
    client, rc, present = await RawClient.connected(
        broker.port, client_id, username, password, **kw
    )
    assert rc == 0, f"CONNACK {rc}"
    return client, present


async def read_until_marker(client: RawClient, marker: bytes = b"marker") -> list[Packet]:
    """Publish ``marker`` to the client itself and return every PUBLISH read before it
    (the client must already be subscribed to ``marker``)."""
    await client.publish("marker", marker, qos=1)
    return await _before(client, lambda p: p.payload == marker)


async def _before(client: RawClient, is_marker: Callable[[Packet], bool]) -> list[Packet]:
    seen: list[Packet] = []
    while True:
        packet = await client.expect(PUBLISH)
        if packet.topic.startswith("$SYS/"):
            continue  # a notice about its own token is not a leak
        if is_marker(packet):
            return seen
        await client.ack(packet)
        seen.append(packet)


# -- item: instances and accounts are namespaces ----------------------------------------------


@pytest.mark.parametrize("kind", list(OUTSIDERS))
async def test_an_outsider_with_hash_receives_nothing_live_or_retained(
    broker: BrokerHandle, minter: Minter, kind: str
) -> None:
    publisher = await connect_raw(broker.port, "GID_victim@@@pub", minter.password())
    await publisher.publish("a/retained", b"victim retained", qos=1, retain=True)
    outsider, _ = await connect_outsider(broker, minter, kind, "GID_outsider@@@spy")
    assert await outsider.subscribe(("#", 1), ("a/#", 1), ("marker", 1)) == [1, 1, 1]
    await publisher.publish("a/live", b"victim live", qos=1)
    await publisher.publish("marker", b"victim marker", qos=1)  # same topic, other namespace
    leaked = await read_until_marker(outsider)
    assert [(p.topic, p.payload) for p in leaked] == []


@pytest.mark.parametrize("kind", list(OUTSIDERS))
async def test_an_outsider_cannot_publish_into_the_instance(
    broker: BrokerHandle, minter: Minter, kind: str
) -> None:
    victim = await connect_raw(broker.port, VICTIM, minter.password())
    assert await victim.subscribe(("#", 1)) == [1]
    outsider, _ = await connect_outsider(broker, minter, kind, "GID_outsider@@@writer")
    await outsider.publish("a/x", b"injected", qos=1)
    await outsider.publish("a/kept", b"injected retained", qos=1, retain=True)
    assert [(p.topic, p.payload) for p in await read_until_marker(victim)] == []
    # Nor did the retained one land in the victim's namespace.
    late = await connect_raw(broker.port, "GID_victim@@@late", minter.password())
    assert await late.subscribe(("a/#", 1), ("marker", 1)) == [1, 1]
    assert [(p.topic, p.payload) for p in await read_until_marker(late)] == []


@pytest.mark.parametrize("kind", list(OUTSIDERS))
async def test_an_outsider_with_the_same_client_id_takes_nothing_over(
    broker: BrokerHandle, minter: Minter, kind: str
) -> None:
    victim = await connect_raw(broker.port, VICTIM, minter.password(), clean=False)
    assert await victim.subscribe(("a/#", 1), ("marker", 1)) == [1, 1]
    outsider, present = await connect_outsider(broker, minter, kind, VICTIM, clean=False)
    assert present == 0  # not the victim's session
    assert await outsider.subscribe(("x", 0)) == [0]
    # The victim is still connected, its subscriptions intact.
    publisher = await connect_raw(broker.port, "GID_victim@@@pub", minter.password())
    await publisher.publish("a/still", b"mine", qos=1)
    got = await victim.expect(PUBLISH)
    assert (got.topic, got.payload) == ("a/still", b"mine")
    assert broker.metrics.value("mqtt_broker_disconnects_total", reason="takeover") == 0


async def test_same_instance_still_shares_topics_and_retained_messages(
    broker: BrokerHandle, minter: Minter
) -> None:
    publisher = await connect_raw(broker.port, "GID_victim@@@pub", minter.password())
    await publisher.publish("a/retained", b"kept", qos=1, retain=True)
    peer = await connect_raw(broker.port, "GID_victim@@@peer", minter.password("R", ("a/#",)))
    sig_user = build_username(AK, INSTANCE, mode="Signature")
    admin, rc, _ = await RawClient.connected(
        broker.port, "GID_victim@@@admin", sig_user, signature_password(SK, "GID_victim@@@admin")
    )
    assert rc == 0
    for client in (peer, admin):
        assert await client.subscribe(("a/#", 1)) == [1]
        retained = await client.expect(PUBLISH)
        assert (retained.topic, retained.payload, retained.retain) == ("a/retained", b"kept", True)
    await publisher.publish("a/live", b"shared", qos=1)
    for client in (peer, admin):
        got = await client.expect(PUBLISH)
        assert (got.topic, got.payload) == ("a/live", b"shared")


async def test_aiomqtt_clients_of_two_accounts_never_meet(
    broker: BrokerHandle, minter: Minter
) -> None:
    """The same with a real client library on both sides."""
    username, password = outsider_credentials(minter, "other_account_token", "GID_outsider@@@lib")
    async with (
        aiomqtt.Client(
            "127.0.0.1", broker.port, identifier="GID_victim@@@lib", username=USER,
            password=minter.password(),
        ) as victim,
        aiomqtt.Client(
            "127.0.0.1", broker.port, identifier="GID_outsider@@@lib", username=username,
            password=password,
        ) as outsider,
    ):  # fmt: skip
        await outsider.subscribe("#", qos=1)
        await victim.publish("a/secret", b"victim", qos=1)
        await outsider.publish("own/marker", b"marker", qos=1)
        async for message in outsider.messages:
            assert (str(message.topic), message.payload) == ("own/marker", b"marker")
            break


# -- item: a resumed session is checked against the resuming credentials ----------------------


async def _victim_session_with_messages(broker: BrokerHandle, minter: Minter) -> RawClient:
    """A persistent session of ``VICTIM`` (R on ``a/#``, subscribed to ``a/#``) left with
    one QoS 1 message in flight (sent, never acknowledged) and two queued while away.
    Returns the publisher (W on ``a/#``)."""
    victim = await connect_raw(broker.port, VICTIM, minter.password("R", ("a/#",)), clean=False)
    assert await victim.subscribe(("a/#", 1)) == [1]
    publisher = await connect_raw(broker.port, "GID_victim@@@pub", minter.password("W", ("a/#",)))
    await publisher.publish("a/secret/1", b"in flight", qos=1)
    assert (await victim.expect(PUBLISH)).payload == b"in flight"  # and never acknowledged
    await victim.disconnect()
    await until(lambda: broker.metrics.value("mqtt_broker_disconnects_total", reason="client") == 1)
    await publisher.publish("a/secret/2", b"queued secret", qos=1)
    await publisher.publish("a/public/3", b"queued public", qos=1)
    return publisher


@pytest.mark.parametrize("kind", ["other_account_token", "other_instance_token"])
async def test_resuming_with_a_token_of_another_account_or_instance_gets_nothing(
    broker: BrokerHandle, minter: Minter, kind: str
) -> None:
    await _victim_session_with_messages(broker, minter)
    outsider, present = await connect_outsider(broker, minter, kind, VICTIM, clean=False)
    assert present == 0  # a session never crosses accounts or instances
    assert await outsider.subscribe(("marker", 1)) == [1]
    assert [(p.topic, p.payload) for p in await read_until_marker(outsider)] == []
    await outsider.disconnect()
    # The victim's own session is untouched: everything is still there for it.
    back, rc, present = await RawClient.connected(
        broker.port, VICTIM, USER, minter.password("R", ("a/#",)), clean=False
    )
    assert (rc, present) == (0, 1)
    got = [await back.expect(PUBLISH) for _ in range(3)]
    assert [(p.topic, p.dup) for p in got] == [
        ("a/secret/1", True),
        ("a/secret/2", False),
        ("a/public/3", False),
    ]


async def test_resuming_with_a_narrower_token_keeps_only_what_it_may_read(
    broker: BrokerHandle, minter: Minter
) -> None:
    publisher = await _victim_session_with_messages(broker, minter)
    narrow = minter.password("R", ("a/public/#", "marker"))
    resumed, rc, present = await RawClient.connected(broker.port, VICTIM, USER, narrow, clean=False)
    assert (rc, present) == (0, 1)  # the same device's session, same account and instance
    assert await resumed.subscribe(("marker", 1)) == [1]
    # The dropped subscription 'a/#' (not covered by 'a/public/#') delivers no more.
    await publisher.publish("a/public/4", b"after resume", qos=1)
    marker_writer = await connect_raw(
        broker.port, "GID_victim@@@mark", minter.password("W", ("#",))
    )
    await marker_writer.publish("marker", b"marker", qos=1)
    seen = await _before(resumed, lambda p: p.payload == b"marker")
    assert [(p.topic, p.payload) for p in seen] == [("a/public/3", b"queued public")]
    sessions = broker.broker.sessions
    (session,) = [s for s in map(sessions.get, sessions) if s is not None and s.client_id == VICTIM]
    assert set(session.filters) == {"marker"}
