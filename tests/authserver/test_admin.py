"""Admin endpoints other parts rely on (docs/CONTRACTS.md)."""

from __future__ import annotations

import asyncio
import base64

import pytest

from mock_authserver.config import AuthServerConfig
from mock_authserver.runner import run_authserver
from sim.shared.clock import ScaledClock
from sim.shared.protocol.tokens import TokenCodec

from .conftest import START, apply_token, call, token_params


async def get(http, url):
    async with http.get(url) as r:
        return r.status, await r.json()


async def test_health_and_clock(auth, http):
    assert await get(http, f"{auth.url}/admin/health") == (200, {"status": "ok", "seq": 1})
    assert await get(http, f"{auth.url}/admin/clock") == (
        200,
        {"now_ms": int(START * 1000), "scale": 1.0, "mode": "manual"},
    )


@pytest.mark.parametrize("body", [{"seconds": -1}, {"seconds": "5"}, {"seconds": True}, {}, [1]])
async def test_clock_advance_rejects_bad_bodies(auth, http, body):
    async with http.post(f"{auth.url}/admin/clock/advance", json=body) as r:
        assert r.status == 400
        assert set(await r.json()) == {"code", "message"}
    async with http.post(f"{auth.url}/admin/clock/advance", data=b"{nope") as r:
        assert r.status == 400


async def test_clock_advance_needs_manual_clock(tmp_path, http):
    clock = ScaledClock(60.0)
    async with run_authserver(AuthServerConfig(data_dir=tmp_path), clock=clock) as auth:
        _status, body = await get(http, f"{auth.url}/admin/clock")
        assert body["mode"] == "scaled" and body["scale"] == 60.0
        async with http.post(f"{auth.url}/admin/clock/advance", json={"seconds": 1}) as r:
            assert r.status == 409


async def test_bootstrap_lets_a_broker_verify_offline(auth, http, clock):
    token = await apply_token(http, auth, clock)
    status, boot = await get(http, f"{auth.url}/admin/broker/bootstrap")
    assert status == 200
    codec = TokenCodec(
        {k: base64.b64decode(v) for k, v in boot["keys"].items()}, boot["current_key"]
    )
    assert codec.decode(token).access_key_id == "dev-ak"
    assert boot["accounts"] == [
        {"access_key_id": "dev-ak", "secret": "dev-sk", "instances": ["mqtt-dev"], "enabled": True}
    ]
    assert boot["revoked"] == [] and boot["seq"] == 1


async def test_feed_long_poll_wakes_on_revoke(auth, http, clock):
    token = await apply_token(http, auth, clock)
    seq = auth.engine.seq
    poll = asyncio.create_task(get(http, f"{auth.url}/admin/feed?after={seq}&timeout=20"))
    # Wait until the poll is parked on the server before revoking.
    signal = auth.app[__import__("mock_authserver.appkeys", fromlist=["FEED"]).FEED]
    deadline = asyncio.get_running_loop().time() + 5
    while not signal._waiters:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert not poll.done()
    await call(http, auth, "revoke", token_params(token))
    status, body = await asyncio.wait_for(poll, 5)
    assert status == 200 and body["seq"] == seq + 1
    (event,) = body["events"]
    claims = auth.engine.codec.decode(token)
    assert event == {
        "seq": seq + 1,
        "kind": "revoke",
        "token_id": claims.token_id,
        "access_key_id": "dev-ak",
        "instance_id": "mqtt-dev",
        "expire_ms": claims.expire_ms,
    }


async def test_feed_timeout_and_reset(auth, http):
    seq = auth.engine.seq
    assert await get(http, f"{auth.url}/admin/feed?after={seq}&timeout=0.05") == (
        200,
        {"seq": seq, "events": []},
    )
    status, body = await get(http, f"{auth.url}/admin/feed?after={seq + 100}&timeout=0")
    assert body["reset"] is True
    for bad in ("after=-1", "after=x", "timeout=nan", "timeout=-2"):
        status, body = await get(http, f"{auth.url}/admin/feed?{bad}")
        assert status == 400, bad


async def test_account_changes_reach_the_feed_and_api(auth, http):
    seq = auth.engine.seq
    async with http.put(
        f"{auth.url}/admin/accounts/ak2", json={"secret": "s2", "instances": ["i2"]}
    ) as r:
        assert r.status == 201
    async with http.put(f"{auth.url}/admin/accounts/ak2", json={"enabled": False}) as r:
        assert r.status == 200 and (await r.json())["secret"] == "s2"
    _, body = await get(http, f"{auth.url}/admin/feed?after={seq}&timeout=0")
    assert [(e["kind"], e["enabled"]) for e in body["events"]] == [
        ("account", True),
        ("account", False),
    ]
    _status, body = await get(http, f"{auth.url}/admin/accounts")
    assert [a["access_key_id"] for a in body["accounts"]] == ["ak2", "dev-ak"]
    async with http.delete(f"{auth.url}/admin/accounts/ak2") as r:
        assert r.status == 200
    assert (await get(http, f"{auth.url}/admin/accounts/ak2"))[0] == 404
    for bad in ({"secret": ""}, {"instances": "i"}, {"enabled": "yes"}, {"bogus": 1}):
        async with http.put(f"{auth.url}/admin/accounts/ak3", json=bad) as r:
            assert r.status == 400, bad


async def test_token_inspection(auth, http, clock):
    token = await apply_token(http, auth, clock)
    tid = auth.engine.codec.decode(token).token_id
    status, info = await get(http, f"{auth.url}/admin/tokens/{tid}")
    assert status == 200 and info["status"] == "valid" and info["revoked"] is False
    await call(http, auth, "revoke", token_params(token))
    assert (await get(http, f"{auth.url}/admin/tokens/{tid}"))[1]["status"] == "revoked"
    assert (await get(http, f"{auth.url}/admin/tokens/nope"))[0] == 404
