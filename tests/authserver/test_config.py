"""Every AuthServerConfig field changes behaviour (STYLE.md "Configuration")."""

from __future__ import annotations

import asyncio
import time

import pytest

from mock_authserver.config import AccountSpec, AuthServerConfig, parse_bool
from mock_authserver.faults import FaultSet
from mock_authserver.runner import run_authserver

from .conftest import START, apply_params, apply_token, call, token_params
from .test_openapi import post_v3, v3_request

EXP = int((START + 3600) * 1000)


async def test_dev_account_off(tmp_path, http, clock):
    async with run_authserver(
        AuthServerConfig(data_dir=tmp_path, dev_account=False), clock=clock
    ) as auth:
        assert (await call(http, auth, "apply", apply_params(EXP)))[1]["code"] == 407


async def test_accounts_field(tmp_path, http, clock):
    config = AuthServerConfig(data_dir=tmp_path, accounts=(AccountSpec("a", "s", ("i",)),))
    async with run_authserver(config, clock=clock) as auth:
        await apply_token(http, auth, clock, secret="s", access_key="a", instance="i")


async def test_timestamp_skew(tmp_path, http, clock):
    config = AuthServerConfig(data_dir=tmp_path, timestamp_skew_s=1.0)
    async with run_authserver(config, clock=clock, wall=lambda: time.time() + 5) as auth:
        _, body = await post_v3(
            http, *v3_request(auth.port, "QueryToken", {"Token": "x", "InstanceId": "i"})
        )
        assert body["Code"] == "InvalidTimeStamp.Expired"


async def test_max_body_bytes(tmp_path, http, clock):
    async with run_authserver(
        AuthServerConfig(data_dir=tmp_path, max_body_bytes=2048), clock=clock
    ) as auth:
        params = apply_params(EXP, resources="a" * 1500)
        assert (await call(http, auth, "apply", params))[1]["code"] == 400  # under: a rule
        params = apply_params(EXP, resources="a" * 3000)
        _, body = await call(http, auth, "apply", params)
        assert body["code"] == 400 and "too large" in body["message"]


async def test_feed_max_timeout(tmp_path, http, clock):
    config = AuthServerConfig(data_dir=tmp_path, feed_max_timeout_s=0.1)
    async with run_authserver(config, clock=clock) as auth:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with http.get(f"{auth.url}/admin/feed?after={auth.engine.seq}&timeout=30") as r:
            assert (await r.json())["events"] == []
        assert loop.time() - started < 5


async def test_fault_seed(tmp_path, http, clock):
    async with run_authserver(
        AuthServerConfig(data_dir=tmp_path, fault_seed=99), clock=clock
    ) as auth:
        fault = {"operation": "query", "kind": "status", "status": 500, "probability": 0.5}
        async with http.post(f"{auth.url}/admin/faults", json=fault) as r:
            assert r.status == 201
        got = [(await call(http, auth, "query", token_params("x")))[0] == 500 for _ in range(16)]
    model = FaultSet(99)
    model.add(fault, 0)
    assert got == [model.decide("query", 0, 0.0).outcome is not None for _ in range(16)]


async def test_sweep_interval(tmp_path, http, clock):
    config = AuthServerConfig(data_dir=tmp_path, sweep_interval_s=1000)
    async with run_authserver(config, clock=clock) as auth:
        token = await apply_token(http, auth, clock, ttl_s=60)
        await call(http, auth, "revoke", token_params(token))
        tid = auth.engine.codec.decode(token).token_id
        clock.advance(61)
        for _ in range(20):  # the sweeper's next turn is at 1000 s: nothing happens now
            await asyncio.sleep(0)
        assert auth.engine.is_revoked(tid) is True  # expired, not yet swept
        clock.advance(1000)
        deadline = asyncio.get_running_loop().time() + 5
        while auth.engine.is_revoked(tid):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)


def test_nonce_capacity_and_bad_values():
    with pytest.raises(ValueError):
        AuthServerConfig(port=70000)
    with pytest.raises(ValueError):
        AuthServerConfig(nonce_capacity=0)
    assert parse_bool("false") is False and parse_bool("TRUE") is True
    with pytest.raises(ValueError):
        parse_bool("maybe")
