"""The legacy token API over real HTTP (SPEC §3a)."""

from __future__ import annotations

import aiohttp
import pytest

from .conftest import START, apply_params, apply_token, call, token_params

EXP = int((START + 3600) * 1000)


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_apply_query_revoke_query(auth, http, method):
    status, body = await call(http, auth, "apply", apply_params(EXP), method)
    assert status == 200
    assert set(body) == {"success", "code", "message", "tokenData"}
    assert body["success"] is True and body["code"] == 200
    token = body["tokenData"]
    claims = auth.engine.codec.decode(token)
    assert claims.resources == ("a/+", "b/#") and claims.actions == {"R", "W"}
    assert claims.expire_ms == EXP and claims.instance_id == "mqtt-dev"

    assert await call(http, auth, "query", token_params(token), method) == (
        200,
        {"success": True, "code": 200, "message": "success", "tokenData": ""},
    )
    status, body = await call(http, auth, "revoke", token_params(token), method)
    assert (status, body["success"], body["code"]) == (200, True, 200)
    status, body = await call(http, auth, "query", token_params(token), method)
    assert (status, body["success"], body["code"]) == (200, False, 3)


async def test_multipart_body(auth, http):
    form = aiohttp.FormData()
    for k, v in apply_params(EXP).items():
        form.add_field(k, v)
    form.add_field("pad", b"x", filename="f.bin")  # forces multipart/form-data
    async with http.post(f"{auth.url}/token/apply", data=form) as resp:
        body = await resp.json()
    # A file field is a wrong type: refused with the parameter code.
    assert body["code"] == 400 and "file" in body["message"]
    form = aiohttp.FormData(apply_params(EXP), default_to_multipart=True)
    async with http.post(f"{auth.url}/token/apply", data=form) as resp:
        assert "multipart/form-data" in resp.request_info.headers["Content-Type"]
        body = await resp.json()
    assert body["success"] is True


async def test_expiry_with_manual_clock_via_admin(auth, http, clock):
    token = await apply_token(http, auth, clock, ttl_s=120)
    async with http.post(f"{auth.url}/admin/clock/advance", json={"seconds": 119}) as r:
        assert r.status == 200 and (await r.json())["now_ms"] == int((START + 119) * 1000)
    assert (await call(http, auth, "query", token_params(token)))[1]["code"] == 200
    async with http.post(f"{auth.url}/admin/clock/advance", json={"seconds": 1}) as r:
        assert r.status == 200
    status, body = await call(http, auth, "query", token_params(token))
    assert (status, body["success"], body["code"]) == (200, False, 2)


def _without(params, name):
    return {k: v for k, v in params.items() if k != name}


NOW_MS = int(START * 1000)


@pytest.mark.parametrize(
    ("params", "code", "fragment"),
    [
        (_without(apply_params(EXP), "actions"), 400, "'actions'"),
        (_without(apply_params(EXP), "resources"), 400, "'resources'"),
        (_without(apply_params(EXP), "expireTime"), 400, "'expireTime'"),
        (_without(apply_params(EXP), "instanceId"), 400, "'instanceId'"),
        (_without(apply_params(EXP), "serviceName"), 400, "'serviceName'"),
        (_without(apply_params(EXP), "proxyType"), 400, "'proxyType'"),
        (_without(apply_params(EXP), "accessKey"), 400, "'accessKey'"),
        (_without(apply_params(EXP), "signature"), 400, "'signature'"),
        (apply_params(EXP, actions="RW"), 400, "R, W or R,W"),
        (apply_params(EXP, resources="a,a"), 400, "twice"),
        (apply_params(EXP, resources="a/#/b"), 400, "'#'"),
        (apply_params(EXP, resources="a/b+"), 400, "'+'"),
        (apply_params(EXP, resources="a,,b"), 400, "empty"),
        (
            apply_params(EXP, resources=",".join(f"t{i:03d}" for i in range(101))),
            400,
            "at most 100",
        ),
        (apply_params(EXP, resources="x" * 2000), 400, "at most 64"),
        (apply_params(EXP, resources="a/" + "b" * 198), 400, "at most 64"),
        (apply_params(EXP, resources="a:b/#"), 400, "':'"),
        (apply_params(EXP, resources="a/%41"), 400, "'%'"),
        (apply_params(EXP, resources="a/b c"), 400, "' '"),
        (apply_params(EXP, resources="a/é"), 400, "'é'"),
        (apply_params(EXP, serviceName="sqs"), 400, "serviceName"),
        (apply_params(EXP, proxyType="AMQP"), 400, "proxyType"),
        (apply_params(EXP, expireTime="soon"), 400, "integer"),
        (apply_params(EXP, expireTime="-5"), 400, "integer"),
        (apply_params(EXP, expireTime="1" * 41), 400, "digits"),
        (apply_params(NOW_MS + 59_000), 400, "at least now + 60 s"),
        (apply_params(EXP, instance="mqtt-other"), 400, "not an instance"),
        (apply_params(EXP, access_key="nobody"), 407, "does not exist"),
        (apply_params(EXP, secret="wrong"), 407, "signature"),
        ({**apply_params(EXP), "signature": "A" * 28}, 407, "signature"),
    ],
)
async def test_each_validation_error(auth, http, params, code, fragment):
    status, body = await call(http, auth, "apply", params)
    assert status == 200
    assert body == {"success": False, "code": code, "message": body["message"], "tokenData": ""}
    assert fragment in body["message"]


async def test_huge_expire_time_is_capped_not_an_error(auth, http):
    _status, body = await call(http, auth, "apply", apply_params(10**30))
    assert body["success"] is True
    claims = auth.engine.codec.decode(body["tokenData"])
    assert claims.expire_ms == NOW_MS + 30 * 86400 * 1000


async def test_largest_resources_the_provider_allows_still_make_a_token(auth, http):
    # 100 filters of 64 characters (SPEC §3a, §4a): the token stays under the codec's
    # limit, so 409 (token generation error) cannot be reached through parameters.
    res = ",".join(sorted(f"fleet/{i:03d}/" + "x" * 54 for i in range(100)))
    assert all(len(r) == 64 for r in res.split(","))
    status, body = await call(http, auth, "apply", apply_params(EXP, resources=res))
    assert (status, body["success"]) == (200, True), body


async def test_megabyte_param_and_body(auth, http):
    params = apply_params(EXP, resources="a" * 1_000_000)
    status, body = await call(http, auth, "apply", params)
    assert (status, body["code"]) == (200, 400)
    async with http.post(
        f"{auth.url}/token/apply",
        data=b"x=" + b"y" * 2_000_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ) as r:
        assert r.status == 200 and (await r.json())["code"] == 400


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"--b\r\nnot multipart", "multipart/form-data; boundary=b"),
        (b"%ff%fe=%80", "application/x-www-form-urlencoded"),
        (b'{"token": 1}', "application/json"),
        (b"a=1&a=2", "application/x-www-form-urlencoded"),
    ],
)
async def test_malformed_bodies_are_parameter_errors(auth, http, body, ctype):
    async with http.post(
        f"{auth.url}/token/query", data=body, headers={"Content-Type": ctype}
    ) as r:
        assert r.status == 200
        answer = await r.json()
    assert answer["success"] is False and answer["code"] == 400


async def test_query_revoke_errors(auth, http, clock):
    token = await apply_token(http, auth, clock)
    assert (await call(http, auth, "query", token_params("bm9wZQ==")))[1]["code"] == 1
    assert (await call(http, auth, "query", token_params(token, secret="x")))[1]["code"] == 407
    assert (await call(http, auth, "revoke", token_params("bm9wZQ==")))[1]["code"] == 410
    assert (await call(http, auth, "query", {"accessKey": "dev-ak"}))[1]["code"] == 400
    # token of one account, asked by another: forged for that caller; revoke fails
    async with http.put(
        f"{auth.url}/admin/accounts/ak2", json={"secret": "s2", "instances": ["i2"]}
    ) as r:
        assert r.status == 201
    q = token_params(token, secret="s2", access_key="ak2")
    assert (await call(http, auth, "query", q))[1]["code"] == 1
    assert (await call(http, auth, "revoke", q))[1]["code"] == 410
    assert (await call(http, auth, "query", token_params(token)))[1]["code"] == 200


async def test_unknown_path_and_method(auth, http):
    async with http.get(f"{auth.url}/token/nothing") as r:
        assert r.status == 404
        body = await r.json()
        assert set(body) == {"success", "code", "message", "tokenData"}
    async with http.put(f"{auth.url}/token/apply") as r:
        assert r.status == 405
        assert (await r.json())["code"] == 405
