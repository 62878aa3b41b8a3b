"""The broker following a real mock AuthServer: bootstrap, feed, revocation through the
open long poll, account changes, parent topics, offline verification while the
AuthServer is gone.  The broker runs the default (provider) profile: the topics are of
the dev instance's parent topics (``dev``, ``test``, ...), as the bootstrap says."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from mock_authserver.runner import AuthServerHandle
from mock_broker.broker import BrokerHandle
from mock_broker.fidelity import Feature
from sim.harness.stack import StackConfig, StackHandle, run_stack
from sim.shared.clock import ManualClock
from sim.shared.devaccount import DEV_ACCESS_KEY
from sim.shared.protocol import TokenType, build_token_password

from .authapi import apply_token, revoke_token
from .conftest import USER, connect_raw, until
from .rawmqtt import PUBLISH, RawClient

pytestmark = pytest.mark.timeout(60)


@dataclass
class Stack:
    handle: StackHandle
    clock: ManualClock

    @property
    def auth(self) -> AuthServerHandle:
        assert self.handle.authserver is not None
        return self.handle.authserver

    @property
    def broker(self) -> BrokerHandle:
        assert self.handle.broker is not None
        return self.handle.broker

    @property
    def http(self) -> aiohttp.ClientSession:
        return self.handle.admin.http

    async def apply(
        self, actions: str = "R,W", resources: str = "dev/+,test/#", ttl: float = 3600
    ) -> str:
        expire_ms = int((self.clock.now() + ttl) * 1000)
        return await apply_token(self.http, self.auth.url, expire_ms, actions, resources)

    async def revoke(self, token: str) -> None:
        await revoke_token(self.http, self.auth.url, token)


def _config(tmp_path: Path) -> StackConfig:
    """The one stack (sim.harness.stack) without its AppServer."""
    return StackConfig(data_dir=tmp_path, without=frozenset({"appserver"})).with_free_ports()


@pytest.fixture
async def stack(tmp_path: Path, clock: ManualClock) -> AsyncIterator[Stack]:
    config = _config(tmp_path).with_broker(feed_poll_timeout=30)
    async with run_stack(config, clock=clock) as handle:
        stack = Stack(handle, clock)
        assert stack.broker.follower is not None and stack.broker.follower.ready
        yield stack


async def _invalid_notice(client: RawClient) -> dict[str, object]:
    while True:
        packet = await client.expect(PUBLISH)
        if packet.topic == "$SYS/tokenInvalidNotice":
            return dict(json.loads(packet.payload))


async def test_revocation_reaches_the_session_through_the_open_long_poll(stack: Stack) -> None:
    # The follower's long poll lasts 30 s: a notice sooner than that came through the
    # poll the AuthServer answered at once (SPEC §3c's 1 s is a scenario figure).
    token = await stack.apply()
    password = build_token_password({TokenType.RW: token})
    client = await connect_raw(stack.broker.port, "GID_test@@@rev", password)
    assert await client.subscribe(("dev/x", 1)) == [1]
    follower = stack.broker.follower
    assert follower is not None
    polls = follower.polls
    await stack.revoke(token)
    notice = await client.expect(PUBLISH, within=20)
    assert (notice.topic, json.loads(notice.payload)) == (
        "$SYS/tokenInvalidNotice",
        {"code": 3, "type": "RW"},
    )
    assert follower.polls == polls + 1
    assert await client.closed()
    _, rc, _ = await RawClient.connected(stack.broker.port, "GID_test@@@rev", USER, password)
    assert rc == 5  # and it cannot come back with that token


async def test_disabling_the_account_disconnects_with_minus_1(stack: Stack) -> None:
    client = await connect_raw(
        stack.broker.port,
        "GID_test@@@acct",
        build_token_password({TokenType.RW: await stack.apply()}),
    )
    await stack.handle.admin.authserver.put_account(DEV_ACCESS_KEY, enabled=False)
    assert await _invalid_notice(client) == {"code": -1, "type": None}
    assert await client.closed()


async def test_parent_topics_follow_the_authserver(stack: Stack) -> None:
    """SPEC §4a: the bootstrap carries the dev instance's parent topics, and a parent topic
    created or deleted through the admin API reaches the broker by the feed."""
    authority = stack.broker.authority
    assert {"dev", "demo", "test"} <= authority.parent_topics("mqtt-dev")
    token = await stack.apply("R,W", "plant/#,dev/#")
    password = build_token_password({TokenType.RW: token})
    client = await connect_raw(stack.broker.port, "GID_test@@@plant", password)
    assert await client.subscribe(("dev/x", 0)) == [0]
    admin = stack.handle.admin.authserver
    assert (await admin.add_parent_topic("mqtt-dev", "plant"))["created"] is True
    await until(lambda: "plant" in authority.parent_topics("mqtt-dev"))
    assert await client.subscribe(("plant/line-1", 0)) == [0]
    await admin.remove_parent_topic("mqtt-dev", "plant")
    await until(lambda: "plant" not in authority.parent_topics("mqtt-dev"))
    await client.subscribe(("plant/line-2", 0), wait=False)
    assert await client.closed()  # a parent topic the instance no longer has
    assert stack.broker.fidelity().totals == {Feature.PARENT_TOPIC: 1}


async def test_tokens_verify_offline_while_the_authserver_is_gone(
    tmp_path: Path, clock: ManualClock
) -> None:
    async with run_stack(_config(tmp_path), clock=clock) as handle:
        stack = Stack(handle, clock)
        broker = stack.broker
        password = build_token_password({TokenType.R: await stack.apply("R", "dev/#")})
        await handle.stop("authserver")  # the AuthServer is down from here on
        for i in range(5):
            client = await connect_raw(broker.port, f"GID_test@@@off{i}", password)
            assert await client.subscribe(("dev/b", 0)) == [0]
            await client.disconnect()
