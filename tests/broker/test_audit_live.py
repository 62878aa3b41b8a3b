"""The device audit on a live broker: each rule broken by a real MQTT client over TCP and
found at ``GET /audit`` with the client id and the evidence; the well-behaved way of
doing the same thing is not flagged.  Time moves on the manual clock."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator

import aiohttp
import pytest

from mock_broker.audit import AuditReport, Rule
from mock_broker.broker import BrokerHandle, run_broker
from mock_broker.config import BrokerConfig
from sim.shared.clock import ManualClock
from sim.shared.protocol import TokenType, build_token_password

from .conftest import USER, Minter, connect_raw, until
from .rawmqtt import PUBACK, PUBLISH, RawClient, _str, packet


@pytest.fixture
def broker_config() -> BrokerConfig:
    return BrokerConfig(port=0, profile="mqtt", metrics_port=0)


async def audit_over_http(broker: BrokerHandle) -> AuditReport:
    url = f"http://127.0.0.1:{broker.metrics_port}/audit"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        return AuditReport.from_json(await resp.json())


def rw(minter: Minter, resources: tuple[str, ...] = ("dev/a/#",), ttl: float = 3600.0) -> str:
    return build_token_password({TokenType.RW: minter.token(("R", "W"), resources, ttl)})


def token_of(password: str) -> str:
    return password.split("|", 1)[1]


async def refused(port: int, client_id: str, password: str) -> int:
    client, rc, _ = await RawClient.connected(port, client_id, USER, password)
    client.close()
    return rc


async def test_a_new_token_at_every_connect_is_flagged(
    broker: BrokerHandle, minter: Minter, clock: ManualClock
) -> None:
    for _ in range(3):
        client = await connect_raw(broker.port, "GID_audit@@@asks-always", rw(minter))
        await client.disconnect()
        clock.advance(60)
    keeper = rw(minter)  # the well-behaved one keeps its token
    for _ in range(3):
        client = await connect_raw(broker.port, "GID_audit@@@keeps", keeper)
        await client.disconnect()
        clock.advance(60)
    report = await audit_over_http(broker)
    (f,) = report.by_rule(Rule.NEW_TOKEN_WHILE_VALID)
    assert f.client_ids == ("GID_audit@@@asks-always",) and f.count == 2
    assert f.evidence["previous_life_left"] > 0.9
    # token ids, never the token text
    assert all(token_of(keeper) not in str(v) for v in f.evidence.values())
    assert report.for_client("GID_audit@@@keeps") == ()


async def test_a_refresh_near_expiry_is_no_finding(
    broker: BrokerHandle, minter: Minter, clock: ManualClock
) -> None:
    client = await connect_raw(broker.port, "GID_audit@@@refresher", rw(minter, ttl=600))
    await client.disconnect()
    clock.advance(500)  # 100 s of 600 left: the SDK's refresh by reconnect
    client = await connect_raw(broker.port, "GID_audit@@@refresher", rw(minter, ttl=600))
    await client.disconnect()
    assert broker.audit().clean


async def test_connecting_again_with_an_expired_or_revoked_token_is_flagged(
    broker: BrokerHandle, minter: Minter, clock: ManualClock
) -> None:
    expired = rw(minter, ttl=60)
    revoked = rw(minter)
    clock.advance(120)
    assert await refused(broker.port, "GID_audit@@@expired", expired) == 5
    assert await refused(broker.port, "GID_audit@@@expired", expired) == 5
    claims = broker.authority.decode(token_of(revoked))
    broker.authority.revoke(claims.token_id)
    assert await refused(broker.port, "GID_audit@@@revoked", revoked) == 5
    report = broker.audit()
    found = {f.client_id: f for f in report.by_rule(Rule.DEAD_TOKEN_REUSE)}
    assert set(found) == {"GID_audit@@@expired"}  # one refusal teaches; two do not
    assert found["GID_audit@@@expired"].evidence["tokens"][0]["reason"] == "expired"
    assert await refused(broker.port, "GID_audit@@@revoked", revoked) == 5
    found = {f.client_id: f for f in broker.audit().by_rule(Rule.DEAD_TOKEN_REUSE)}
    assert found["GID_audit@@@revoked"].evidence["tokens"][-1] == {
        "token_id": claims.token_id,
        "reason": "revoked",
        "at_ms": clock.now_ms(),
    }


async def test_a_device_retrying_in_a_tight_loop_is_flagged(
    broker: BrokerHandle, minter: Minter
) -> None:
    """Each connection is cut (no DISCONNECT) and the device is back at once: no backoff
    (the manual clock does not move, so every retry is 0 s after its failure)."""
    password = rw(minter)
    for _ in range(12):
        client = await connect_raw(broker.port, "GID_audit@@@tight", password)
        client.writer.transport.abort()
        await until(lambda: not broker.broker.connections)
    (f,) = broker.audit().by_rule(Rule.TIGHT_RETRY)
    assert f.client_ids == ("GID_audit@@@tight",) and f.count >= 10
    assert f.evidence["last_gaps_s"] == [0.0] * 5


async def test_retrying_with_backoff_is_not(
    broker: BrokerHandle, minter: Minter, clock: ManualClock
) -> None:
    password = rw(minter)
    for k in range(12):
        client = await connect_raw(broker.port, "GID_audit@@@patient", password)
        client.writer.transport.abort()
        await until(lambda: not broker.broker.connections)
        clock.advance(0.05 * 2**k)
    assert broker.audit().clean


async def _fleet(broker: BrokerHandle, minter: Minter, n: int) -> list[str]:
    passwords = [rw(minter) for _ in range(n)]
    clients = [
        await connect_raw(broker.port, f"GID_audit@@@f{i}", p) for i, p in enumerate(passwords)
    ]
    for c in clients:
        c.close()
    await until(lambda: not broker.broker.connections)
    return passwords


async def test_a_fleet_back_in_lockstep_after_a_kick_is_flagged(
    broker: BrokerHandle, minter: Minter
) -> None:
    """30 devices that reconnect the moment they see the broker go: they come back in
    the order they were lost."""
    n = 30
    passwords = [rw(minter) for _ in range(n)]
    lost = asyncio.Queue[int]()

    async def device(i: int) -> RawClient:
        client = await connect_raw(broker.port, f"GID_audit@@@lock{i}", passwords[i])
        return client

    clients = [await device(i) for i in range(n)]

    async def watch(i: int) -> None:
        assert await clients[i].closed(10)
        lost.put_nowait(i)

    watchers = [asyncio.create_task(watch(i)) for i in range(n)]
    assert await broker.kick_all() == n
    back = []
    for _ in range(n):  # back at once, in the order each saw the loss
        i = await asyncio.wait_for(lost.get(), 10)
        back.append(await device(i))
    await asyncio.gather(*watchers)
    report = broker.audit()
    (f,) = report.by_rule(Rule.RECONNECT_LOCKSTEP)
    assert f.evidence["rank_correlation"] >= 0.8 and f.evidence["returned"] == n
    assert set(f.client_ids) == {f"GID_audit@@@lock{i}" for i in range(n)}
    for c in back:
        c.close()


async def test_a_jittered_fleet_is_not_in_lockstep(broker: BrokerHandle, minter: Minter) -> None:
    import random

    n = 30
    passwords = [rw(minter) for _ in range(n)]
    clients = [await connect_raw(broker.port, f"GID_audit@@@j{i}", passwords[i]) for i in range(n)]
    assert await broker.kick_all() == n
    for c in clients:
        assert await c.closed(10)
    order = list(range(n))
    random.Random(3).shuffle(order)  # full jitter: some random order
    back = [await connect_raw(broker.port, f"GID_audit@@@j{i}", passwords[i]) for i in order]
    assert broker.audit().by_rule(Rule.RECONNECT_LOCKSTEP) == ()
    for c in back:
        c.close()


def _upload(minter_token: str, pid: int) -> bytes:
    payload = json.dumps({"token": minter_token, "type": "RW"}).encode()
    return packet(PUBLISH, 0x02, _str("$SYS/uploadToken") + struct.pack("!H", pid) + payload)


def _publish(topic: str, pid: int) -> bytes:
    return packet(PUBLISH, 0x02, _str(topic) + struct.pack("!H", pid) + b"hello")


async def test_publishing_with_the_new_token_before_the_upload_puback_is_flagged(
    broker: BrokerHandle, minter: Minter
) -> None:
    """The upload and the publish that needs it leave in one write: the publish was sent
    before the client could have seen the PUBACK."""
    client = await connect_raw(broker.port, "GID_audit@@@eager", rw(minter, ("dev/a/#",)))
    new = minter.token(("R", "W"), ("dev/b/#",))
    await client.send(_upload(new, 1) + _publish("dev/b/x", 2))
    acks = [await client.expect(PUBACK), await client.expect(PUBACK)]
    assert [a.body for a in acks] == [b"\x00\x01", b"\x00\x02"]  # both accepted here...
    (f,) = broker.audit().by_rule(Rule.USED_BEFORE_UPLOAD_ACK)  # ... not at the provider
    assert f.client_ids == ("GID_audit@@@eager",)
    assert f.evidence["topic"] == "dev/b/x" and f.evidence["action"] == "publish"
    assert f.evidence["new_token_id"] == broker.authority.decode(new).token_id
    client.close()


async def test_subscribing_after_the_upload_puback_is_not(
    broker: BrokerHandle, minter: Minter
) -> None:
    client = await connect_raw(broker.port, "GID_audit@@@patient-up", rw(minter, ("dev/a/#",)))
    await client.send(_upload(minter.token(("R", "W"), ("dev/b/#",)), 1))
    await client.expect(PUBACK)
    assert await client.subscribe(("dev/b/#", 1)) == [1]
    await client.publish("dev/b/x", b"x", qos=1)
    # (profile mqtt: no parent topics, so the fidelity report counts dev/b as one)
    assert broker.audit().without(["provider-lacks"]).clean
    client.close()


async def test_subscribing_with_the_new_token_before_the_puback_is_flagged(
    broker: BrokerHandle, minter: Minter
) -> None:
    client = await connect_raw(broker.port, "GID_audit@@@eager-sub", rw(minter, ("dev/a/#",)))
    body = struct.pack("!H", 2) + _str("dev/b/#") + b"\x01"
    await client.send(_upload(minter.token(("R", "W"), ("dev/b/#",)), 1) + packet(8, 2, body))
    assert await client.expect(9)  # SUBACK
    (f,) = broker.audit().by_rule(Rule.USED_BEFORE_UPLOAD_ACK)
    assert f.evidence["action"] == "subscribe"
    client.close()


async def test_the_old_token_at_the_next_connect_after_an_upload_is_flagged(
    broker: BrokerHandle, minter: Minter
) -> None:
    for cid, next_with in (("GID_audit@@@forgets", "old"), ("GID_audit@@@remembers", "new")):
        old = rw(minter)
        client = await connect_raw(broker.port, cid, old)
        new = minter.token(("R", "W"), ("dev/a/#",))
        await client.send(_upload(new, 1))
        await client.expect(PUBACK)
        await client.disconnect()
        again = old if next_with == "old" else build_token_password({TokenType.RW: new})
        client = await connect_raw(broker.port, cid, again)
        await client.disconnect()
    (f,) = broker.audit().by_rule(Rule.OLD_TOKEN_AFTER_UPLOAD)
    assert f.client_ids == ("GID_audit@@@forgets",)


@pytest.fixture
async def provider_broker(clock: ManualClock, authority: object) -> AsyncIterator[BrokerHandle]:
    from mock_broker.authority import TokenAuthority

    assert isinstance(authority, TokenAuthority)
    authority.set_parent_topics("mqtt-dev", ["dev"])
    async with run_broker(BrokerConfig(port=0, metrics_port=0), clock, authority=authority) as b:
        yield b


async def test_uses_of_what_the_provider_lacks_are_in_the_audit(
    provider_broker: BrokerHandle, minter: Minter
) -> None:
    client, rc, _ = await RawClient.connected(
        provider_broker.port,
        "GID_audit@@@willing",
        USER,
        rw(minter),
        will=("dev/a/will", b"bye", 0, False),
    )
    assert rc == 0
    await client.disconnect()
    report = await audit_over_http(provider_broker)
    (f,) = report.by_rule(Rule.PROVIDER_LACKS)
    assert f.client_ids == ("GID_audit@@@willing",) and f.evidence["uses"] == {"will": 1}
    assert report.totals["provider-lacks"] == 1


async def test_the_audit_endpoint_is_loopback_only(broker: BrokerHandle) -> None:
    from mock_broker import metrics

    assert metrics.is_loopback_peer("10.0.0.1") is False  # the same guard as /fidelity
    url = f"http://127.0.0.1:{broker.metrics_port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert "mqtt_broker_audit_findings_total" in await resp.text()
