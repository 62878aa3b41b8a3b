"""The OpenAPI style (SPEC §3b): the provider's SDKs unmodified, and the separate
timestamp / nonce checks with hand-signed requests."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import pytest

from mock_authserver.auth import NonceStore, check_timestamp, parse_timestamp
from mock_authserver.config import AuthServerConfig
from mock_authserver.errors import ParameterError, SignatureNonceUsed, TimestampExpired
from mock_authserver.runner import run_authserver

from .conftest import post_v3, rpc_params, v3_request

pytestmark = pytest.mark.sdk


# -- the provider's SDKs, unmodified --------------------------------------------------------


def v3_client(port: int, secret: str = "dev-sk"):
    from alibabacloud_onsmqtt20200420.client import Client
    from alibabacloud_tea_openapi import models as open_api_models

    return Client(
        open_api_models.Config(
            access_key_id="dev-ak",
            access_key_secret=secret,
            endpoint=f"127.0.0.1:{port}",
            protocol="http",
        )
    )


def v3_lifecycle(port: int, expire_ms: int) -> list:
    from alibabacloud_onsmqtt20200420 import models

    client = v3_client(port)
    applied = client.apply_token(
        models.ApplyTokenRequest(
            actions="R,W", resources="a/+,b/#", instance_id="mqtt-dev", expire_time=expire_ms
        )
    )
    token = applied.body.token
    q = models.QueryTokenRequest(token=token, instance_id="mqtt-dev")
    return [
        token,
        applied.body.request_id,
        client.query_token(q).body.token_status,
        client.revoke_token(
            models.RevokeTokenRequest(token=token, instance_id="mqtt-dev")
        ).body.request_id,
        client.query_token(q).body.token_status,
    ]


def v3_wrong_secret(port: int, expire_ms: int) -> str:
    from alibabacloud_onsmqtt20200420 import models
    from alibabacloud_tea_openapi.exceptions import ClientException

    try:
        v3_client(port, "wrong").apply_token(
            models.ApplyTokenRequest(
                actions="R", resources="a", instance_id="mqtt-dev", expire_time=expire_ms
            )
        )
    except ClientException as exc:
        return str(exc.code)
    raise AssertionError("a wrong secret was accepted")


def rpc_call(port: int, request, secret: str = "dev-sk") -> dict:
    from aliyunsdkcore.client import AcsClient

    request.set_endpoint(f"127.0.0.1:{port}")
    request.set_protocol_type("http")
    client = AcsClient("dev-ak", secret, "cn-hangzhou", auto_retry=False)
    return json.loads(client.do_action_with_exception(request))


def rpc_lifecycle(port: int, expire_ms: int) -> list:
    from aliyunsdkonsmqtt.request.v20200420 import (
        ApplyTokenRequest,
        QueryTokenRequest,
        RevokeTokenRequest,
    )

    apply = ApplyTokenRequest.ApplyTokenRequest()
    apply.set_Actions("W")
    apply.set_Resources("a/b,c/#")
    apply.set_InstanceId("mqtt-dev")
    apply.set_ExpireTime(expire_ms)
    token = rpc_call(port, apply)["Token"]

    def query() -> bool:
        q = QueryTokenRequest.QueryTokenRequest()
        q.set_Token(token)
        q.set_InstanceId("mqtt-dev")
        return rpc_call(port, q)["TokenStatus"]

    before = query()
    revoke = RevokeTokenRequest.RevokeTokenRequest()
    revoke.set_Token(token)
    revoke.set_InstanceId("mqtt-dev")
    revoked = rpc_call(port, revoke)
    return [token, before, set(revoked), query()]


def rpc_wrong_secret(port: int, expire_ms: int) -> str:
    from aliyunsdkcore.acs_exception.exceptions import ServerException
    from aliyunsdkonsmqtt.request.v20200420 import ApplyTokenRequest

    apply = ApplyTokenRequest.ApplyTokenRequest()
    apply.set_Actions("R")
    apply.set_Resources("a")
    apply.set_InstanceId("mqtt-dev")
    apply.set_ExpireTime(expire_ms)
    try:
        rpc_call(port, apply, secret="wrong")
    except ServerException as exc:
        return exc.get_error_code()
    raise AssertionError("a wrong secret was accepted")


async def test_v3_sdk_apply_query_revoke_query(auth, clock):
    # The server runs a manual clock far from real time: ExpireTime is virtual, the SDK's
    # x-acs-date is real wall time, and both must be accepted.
    expire_ms = int((clock.now() + 3600) * 1000)
    token, rid, before, revoke_rid, after = await asyncio.to_thread(
        v3_lifecycle, auth.port, expire_ms
    )
    claims = auth.engine.codec.decode(token)
    assert claims.actions == {"R", "W"} and claims.resources == ("a/+", "b/#")
    assert claims.expire_ms == expire_ms
    assert uuid.UUID(rid) and uuid.UUID(revoke_rid)
    assert (before, after) == (True, False)
    assert auth.engine.is_revoked(claims.token_id)
    assert await asyncio.to_thread(v3_wrong_secret, auth.port, expire_ms) == (
        "SignatureDoesNotMatch"
    )


async def test_rpc_v1_sdk_apply_query_revoke_query(auth, clock):
    expire_ms = int((clock.now() + 3600) * 1000)
    token, before, revoked_keys, after = await asyncio.to_thread(
        rpc_lifecycle, auth.port, expire_ms
    )
    assert auth.engine.codec.decode(token).actions == {"W"}
    assert (before, revoked_keys, after) == (True, {"RequestId"}, False)
    # The SDK recognises the provider's wording and names the real cause.
    assert await asyncio.to_thread(rpc_wrong_secret, auth.port, expire_ms) == (
        "InvalidAccessKeySecret"
    )


async def test_sdk_sees_parameter_errors(auth, clock):
    from alibabacloud_onsmqtt20200420 import models
    from alibabacloud_tea_openapi.exceptions import ClientException

    def too_soon() -> tuple[str, int]:
        try:
            v3_client(auth.port).apply_token(
                models.ApplyTokenRequest(
                    actions="R",
                    resources="a",
                    instance_id="mqtt-dev",
                    expire_time=int(clock.now() * 1000) + 1000,
                )
            )
        except ClientException as exc:
            return str(exc.code), exc.status_code
        raise AssertionError("accepted")

    assert await asyncio.to_thread(too_soon) == ("InvalidParameter.ExpireTime", 400)


# -- hand-signed requests: each check on its own ---------------------------------------------


def _query_params(token="bm9wZQ=="):
    return {"Token": token, "InstanceId": "mqtt-dev"}


async def test_v3_first_use_answers_and_replay_refused(auth, http):
    url, headers = v3_request(auth.port, "QueryToken", _query_params())
    status, body = await post_v3(http, url, headers)
    assert status == 200 and body["TokenStatus"] is False
    assert (await post_v3(http, url, headers))[1]["Code"] == "SignatureNonceUsed"


@pytest.mark.parametrize("offset_s", [-16 * 60, 16 * 60])
async def test_v3_timestamp_outside_15_min_is_refused(auth, http, offset_s):
    date = datetime.fromtimestamp(time.time() + offset_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, body = await post_v3(
        http, *v3_request(auth.port, "QueryToken", _query_params(), date=date)
    )
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired")


async def test_timestamp_checked_against_injected_wall_time(tmp_path, http, clock):
    # A server whose wall is 20 minutes ahead refuses requests stamped now.
    config = AuthServerConfig(data_dir=tmp_path)
    async with run_authserver(config, clock=clock, wall=lambda: time.time() + 1200) as auth:
        _, body = await post_v3(http, *v3_request(auth.port, "QueryToken", _query_params()))
        assert body["Code"] == "InvalidTimeStamp.Expired"


@pytest.mark.parametrize(
    ("mutate", "code", "status"),
    [
        (lambda h: h.update({"Authorization": "Basic x"}), "SignatureDoesNotMatch", 400),
        (lambda h: h.pop("x-acs-date"), "MissingParameter", 400),
        (lambda h: h.update({"x-acs-version": "2019-01-01"}), "InvalidVersion", 400),
        (lambda h: h.update({"x-acs-action": "DeleteEverything"}), "InvalidAction.NotFound", 404),
        (lambda h: h.update({"x-acs-content-sha256": "0" * 64}), "SignatureDoesNotMatch", 400),
        (
            lambda h: h.update({"Authorization": h["Authorization"].replace("dev-ak", "nobody")}),
            "InvalidAccessKeyId.NotFound",
            404,
        ),
    ],
)
async def test_v3_malformed_requests(auth, http, mutate, code, status):
    url, headers = v3_request(auth.port, "QueryToken", _query_params())
    mutate(headers)
    got_status, body = await post_v3(http, url, headers)
    assert (got_status, body["Code"]) == (status, code)


async def test_rpc_nonce_and_timestamp(auth, http):
    params = rpc_params("QueryToken", _query_params())
    async with http.get(f"{auth.url}/", params=params) as r:
        assert r.status == 200 and (await r.json())["TokenStatus"] is False
    async with http.get(f"{auth.url}/", params=params) as r:
        assert (r.status, (await r.json())["Code"]) == (400, "SignatureNonceUsed")
    old = datetime.fromtimestamp(time.time() - 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    async with http.get(
        f"{auth.url}/", params=rpc_params("QueryToken", _query_params(), timestamp=old)
    ) as r:
        assert (await r.json())["Code"] == "InvalidTimeStamp.Expired"
    bad = rpc_params("QueryToken", _query_params(), timestamp="yesterday")
    async with http.get(f"{auth.url}/", params=bad) as r:
        assert (r.status, (await r.json())["Code"]) == (400, "ParameterCheckFailed")
    unsigned = {
        k: v for k, v in rpc_params("QueryToken", _query_params()).items() if k != "Signature"
    }
    async with http.get(f"{auth.url}/", params=unsigned) as r:
        assert (r.status, (await r.json())["Code"]) == (400, "MissingParameter")


# -- pure checks ------------------------------------------------------------------------------


def test_nonce_store_window_and_capacity():
    store = NonceStore(window_s=900, capacity=3)
    store.use("a", 1000.0)
    with pytest.raises(SignatureNonceUsed):
        store.use("a", 1001.0)
    store.use("a", 1000.0 + 2 * 900 + 1)  # past the window in which a replay could pass
    for key in "bcde":
        store.use(key, 3000.0)
    assert len(store) == 3  # bounded: the oldest went first


def test_timestamp_parsing_and_skew():
    assert parse_timestamp("2020-04-20T00:00:00Z") == 1587340800.0
    with pytest.raises(ParameterError):
        parse_timestamp("20/04/2020")
    check_timestamp(1000.0, 1000.0 + 900, 900)
    with pytest.raises(TimestampExpired):
        check_timestamp(1000.0, 1000.0 + 901, 900)
