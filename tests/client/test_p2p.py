"""The SDK's P2P messaging (SPEC §4a, the provider's P2P doc) against the real stack in the
provider profile: ``send_p2p`` reaches one client of the instance, which gets it in its
message handler without a subscription."""

from __future__ import annotations

import asyncio

import pytest

from mock_broker.fidelity import Feature
from sim.harness.pytest_plugin import SimStack
from sim.shared.protocol import InvalidCredentials

pytestmark = pytest.mark.timeout(60)


async def test_send_p2p_reaches_one_client_without_a_subscription(
    mqtt_stack: SimStack, mqtt_client_factory
):
    alice = await mqtt_client_factory("GID_test@@@alice", resources=("test/alice/#",))
    bob = await mqtt_client_factory("GID_test@@@bob", resources=("test/bob/#",))
    carol = await mqtt_client_factory("GID_test@@@carol", resources=("test/#",))
    assert await carol.subscribe("test/#", 1) == 1  # sees ordinary test/ traffic, not P2P
    assert alice.p2p_parent_topic == "test"
    await alice.send_p2p("GID_test@@@bob", b"just for bob")
    msg = await asyncio.wait_for(bob.messages.get(), 10)
    assert (msg.topic, msg.payload, msg.qos) == ("test/p2p/GID_test@@@bob", b"just for bob", 1)
    await alice.publish("test/alice/marker", b"marker")
    assert (await asyncio.wait_for(carol.messages.get(), 10)).topic == "test/alice/marker"
    assert bob.counters.received == 1


async def test_send_p2p_to_nobody_is_acknowledged_and_reported(
    mqtt_stack: SimStack, mqtt_client_factory
):
    alice = await mqtt_client_factory("GID_test@@@alice", resources=("test/alice/#",))
    await alice.send_p2p("GID_test@@@nobody", "lost")  # QoS 1: returns after the PUBACK
    broker = mqtt_stack.handle.broker
    assert broker.policy.fidelity.uses_of("GID_test@@@alice", "mqtt-dev") == {
        Feature.P2P_UNKNOWN_CLIENT: 1
    }
    assert alice.state == "connected"


async def test_send_p2p_refuses_what_cannot_work(mqtt_stack: SimStack, mqtt_client_factory):
    wild = await mqtt_client_factory("GID_test@@@wild", resources=("+/wild",), connect=False)
    with pytest.raises(ValueError, match="parent_topic="):
        _ = wild.p2p_parent_topic
    reader = await mqtt_client_factory(
        "GID_test@@@reader", resources=("test/r/#",), actions="R", connect=False
    )
    with pytest.raises(ValueError, match="write"):
        await reader.send_p2p("GID_test@@@bob", b"x")
    with pytest.raises(InvalidCredentials):
        await wild.send_p2p("GID_x@@@bob", b"x", parent_topic="test")
