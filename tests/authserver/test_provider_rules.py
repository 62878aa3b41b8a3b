"""The provider's rules on the wire (SPEC §3a, §3b, §4a), each under the legacy and the
OpenAPI wire where it applies: rate limits, error codes and statuses, resources the
broker would refuse, and the signing rule for multi-valued parameters."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
from pathlib import Path

import pytest

from mock_authserver.config import AuthServerConfig
from mock_authserver.ratelimit import Rate, RateLimits
from mock_authserver.runner import run_authserver
from mock_authserver.validation import ApplyRequest

from .conftest import (
    START,
    apply_params,
    apply_token,
    call,
    post_v3,
    rpc_params,
    token_params,
    v3_request,
)

EXP = int((START + 3600) * 1000)


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, clock, **config):
    async with run_authserver(
        AuthServerConfig(data_dir=tmp_path / "limited", **config), clock=clock
    ) as auth:
        yield auth


def apply_query(**override: str) -> dict[str, str]:
    return {
        "Actions": "R,W",
        "Resources": "a/+,b/#",
        "InstanceId": "mqtt-dev",
        "ExpireTime": str(EXP),
        **override,
    }


async def v3(http, auth, action: str, query: dict[str, str], **kw):
    return await post_v3(http, *v3_request(auth.port, action, query, **kw))


async def add_account(http, auth, ak: str, secret: str, instances: list[str]) -> None:
    async with http.put(
        f"{auth.url}/admin/accounts/{ak}", json={"secret": secret, "instances": instances}
    ) as r:
        assert r.status in (200, 201)


# -- rate limits (SPEC §3b) --------------------------------------------------------------------


async def test_legacy_revoke_is_one_per_minute_per_account(auth, http, clock):
    first, second = [await apply_token(http, auth, clock) for _ in range(2)]
    assert (await call(http, auth, "revoke", token_params(first)))[1]["code"] == 200
    status, body = await call(http, auth, "revoke", token_params(second))
    assert (status, body["success"], body["code"]) == (429, False, 429)
    assert set(body) == {"success", "code", "message", "tokenData"}
    assert not auth.engine.is_revoked(auth.engine.codec.decode(second).token_id)
    # another account is not throttled by dev-ak's revokes
    await add_account(http, auth, "ak2", "s2", ["i2"])
    other = await apply_token(http, auth, clock, secret="s2", access_key="ak2", instance="i2")
    assert (await call(http, auth, "revoke", token_params(other, secret="s2", access_key="ak2")))[
        1
    ]["code"] == 200
    clock.advance(59)
    assert (await call(http, auth, "revoke", token_params(second)))[0] == 429
    clock.advance(1)  # a minute of the server's clock after the first
    assert (await call(http, auth, "revoke", token_params(second)))[1]["code"] == 200


async def test_openapi_apply_is_100_per_second_then_apply_token_overflow(auth, http, clock):
    for i in range(100):
        status, body = await v3(http, auth, "ApplyToken", apply_query())
        assert status == 200, (i, body)
    status, body = await v3(http, auth, "ApplyToken", apply_query())
    assert (status, body["Code"]) == (400, "ApplyTokenOverFlow")
    assert set(body) == {"RequestId", "HostId", "Code", "Message"}
    # the legacy API's limit is its own (1,000/s)
    assert (await call(http, auth, "apply", apply_params(EXP)))[1]["success"] is True
    clock.advance(0.01)  # one more apply per 10 ms of the server's clock
    assert (await v3(http, auth, "ApplyToken", apply_query()))[0] == 200
    assert (await v3(http, auth, "ApplyToken", apply_query()))[1]["Code"] == "ApplyTokenOverFlow"


async def test_openapi_query_100_and_revoke_5_per_second_then_throttling_user(auth, http, clock):
    token = await apply_token(http, auth, clock)
    q = {"Token": token, "InstanceId": "mqtt-dev"}
    for _ in range(100):
        assert (await v3(http, auth, "QueryToken", q))[1]["TokenStatus"] is True
    status, body = await v3(http, auth, "QueryToken", q)
    assert (status, body["Code"]) == (400, "Throttling.User")
    for _ in range(5):
        assert (await v3(http, auth, "RevokeToken", q))[0] == 200
    status, body = await v3(http, auth, "RevokeToken", q)
    assert (status, body["Code"]) == (400, "Throttling.User")
    # RPC v1 requests of the same account share the buckets
    async with http.get(f"{auth.url}/", params=rpc_params("RevokeToken", q)) as r:
        assert (r.status, (await r.json())["Code"]) == (400, "Throttling.User")


async def test_legacy_apply_and_query_limits_are_settable(tmp_path, http, clock):
    limits = RateLimits(legacy_apply=Rate(3), legacy_query=Rate(2, 10.0))
    async with serve(tmp_path, clock, rate_limits=limits) as auth:
        answers = [await call(http, auth, "apply", apply_params(EXP)) for _ in range(4)]
        assert [body["code"] for _, body in answers] == [200, 200, 200, 429]
        assert answers[-1][0] == 429
        token = answers[0][1]["tokenData"]
        codes = [
            (await call(http, auth, "query", token_params(token)))[1]["code"] for _ in range(3)
        ]
        assert codes == [200, 200, 429]
        clock.advance(5)  # 2 per 10 s: one more after 5 s
        assert (await call(http, auth, "query", token_params(token)))[1]["code"] == 200


async def test_no_rate_limits_switch(tmp_path, http, clock):
    async with serve(tmp_path, clock, rate_limits=RateLimits.off()) as auth:
        tokens = [await apply_token(http, auth, clock) for _ in range(3)]
        for token in tokens:
            assert (await call(http, auth, "revoke", token_params(token)))[1]["code"] == 200
        q = {"Token": tokens[0], "InstanceId": "mqtt-dev"}
        for _ in range(8):
            assert (await v3(http, auth, "RevokeToken", q))[0] == 200


async def test_injected_throttle_answers_as_the_real_limit(tmp_path, http, clock):
    """The same answer, whether the limit or a throttle fault refused the request."""
    limits = RateLimits(legacy_apply=Rate(1), openapi_apply=Rate(1), openapi_query=Rate(1))
    async with serve(tmp_path, clock, rate_limits=limits) as real:
        await call(http, real, "apply", apply_params(EXP))
        real_legacy = await call(http, real, "apply", apply_params(EXP))
        await v3(http, real, "ApplyToken", apply_query())
        real_apply = await v3(http, real, "ApplyToken", apply_query())
        await v3(http, real, "QueryToken", {"Token": "bm9wZQ==", "InstanceId": "mqtt-dev"})
        real_query = await v3(
            http, real, "QueryToken", {"Token": "bm9wZQ==", "InstanceId": "mqtt-dev"}
        )
    async with serve(tmp_path / "f", clock, rate_limits=RateLimits.off()) as faulty:
        async with http.post(
            f"{faulty.url}/admin/faults", json={"kind": "throttle", "per_second": 1e-9}
        ) as r:
            assert r.status == 201
        await call(http, faulty, "query", token_params("bm9wZQ=="))  # the one allowed
        fault_legacy = await call(http, faulty, "apply", apply_params(EXP))
        fault_apply = await v3(http, faulty, "ApplyToken", apply_query())
        fault_query = await v3(http, faulty, "QueryToken", {"Token": "x", "InstanceId": "mqtt-dev"})

    def shape(answer):
        status, body = answer
        return status, body.get("Code", body.get("code")), body.get("success")

    assert shape(real_legacy) == shape(fault_legacy) == (429, 429, False)
    assert shape(real_apply) == shape(fault_apply) == (400, "ApplyTokenOverFlow", None)
    assert shape(real_query) == shape(fault_query) == (400, "Throttling.User", None)


@pytest.mark.sdk
async def test_the_providers_sdks_see_the_throttling_codes(tmp_path, clock):
    from .test_openapi import rpc_call, v3_client

    limits = RateLimits(openapi_apply=Rate(1), openapi_revoke=Rate(1))
    expire_ms = int((clock.now() + 3600) * 1000)

    def v3_applies(port: int) -> tuple[str, int]:
        from alibabacloud_onsmqtt20200420 import models
        from alibabacloud_tea_openapi.exceptions import ClientException

        client = v3_client(port)
        request = models.ApplyTokenRequest(
            actions="R", resources="a", instance_id="mqtt-dev", expire_time=expire_ms
        )
        client.apply_token(request)
        try:
            client.apply_token(request)
        except ClientException as exc:
            return str(exc.code), exc.status_code
        raise AssertionError("the second apply was not throttled")

    def rpc_revokes(port: int, token: str) -> str:
        from aliyunsdkcore.acs_exception.exceptions import ServerException
        from aliyunsdkonsmqtt.request.v20200420 import RevokeTokenRequest

        def revoke() -> None:
            r = RevokeTokenRequest.RevokeTokenRequest()
            r.set_Token(token)
            r.set_InstanceId("mqtt-dev")
            rpc_call(port, r)

        revoke()
        try:
            revoke()
        except ServerException as exc:
            return exc.get_error_code()
        raise AssertionError("the second revoke was not throttled")

    async with serve(tmp_path, clock, rate_limits=limits) as auth:
        assert await asyncio.to_thread(v3_applies, auth.port) == ("ApplyTokenOverFlow", 400)
        token = auth.engine.apply(
            ApplyRequest("dev-ak", "mqtt-dev", frozenset("R"), ("a",), expire_ms)
        ).token
        assert await asyncio.to_thread(rpc_revokes, auth.port, token) == "Throttling.User"


# -- error codes and statuses (SPEC §3b) ---------------------------------------------------------


async def test_unknown_or_foreign_instance(auth, http, clock):
    await add_account(http, auth, "ak2", "s2", ["i2"])
    token = await apply_token(http, auth, clock)
    for instance in ("i2", "no-such-instance"):
        for action, query in (
            ("ApplyToken", apply_query(InstanceId=instance)),
            ("QueryToken", {"Token": token, "InstanceId": instance}),
            ("RevokeToken", {"Token": token, "InstanceId": instance}),
        ):
            status, body = await v3(http, auth, action, query)
            assert (status, body["Code"]) == (400, "InstancePermissionCheckFailed"), action
        # legacy: the parameter code, in the body
        status, body = await call(http, auth, "apply", apply_params(EXP, instance=instance))
        assert (status, body["code"]) == (200, 400)
    assert not auth.engine.is_revoked(auth.engine.codec.decode(token).token_id)


@pytest.mark.parametrize(
    ("override", "code"),
    [
        ({"ExpireTime": str(int(START * 1000) + 1000)}, "InvalidParameter.ExpireTime"),
        ({"ExpireTime": "soon"}, "InvalidParameter.ExpireTime"),
        ({"Actions": "RW"}, "InvalidParameter.Actions"),
        ({"Actions": "W,R"}, "InvalidParameter.Actions"),
        ({"Resources": "b/#,a/+"}, "InvalidParameter.Resources"),
        ({"Resources": "a/" + "b" * 198}, "InvalidParameter.Resources"),
        ({"Resources": "a:b"}, "InvalidParameter.Resources"),
        ({"Resources": "a/%41"}, "InvalidParameter.Resources"),
    ],
)
async def test_openapi_parameter_errors_name_the_parameter(auth, http, override, code):
    status, body = await v3(http, auth, "ApplyToken", apply_query(**override))
    assert (status, body["Code"]) == (400, code)
    async with http.get(
        f"{auth.url}/", params=rpc_params("ApplyToken", apply_query(**override))
    ) as r:
        assert (r.status, (await r.json())["Code"]) == (400, code)


async def test_legacy_refuses_the_same_resources_with_its_code(auth, http):
    for resources in ("a/" + "b" * 198, "a:b", "a/%41", "x" * 65):
        status, body = await call(http, auth, "apply", apply_params(EXP, resources=resources))
        assert (status, body["success"], body["code"]) == (200, False, 400), resources


async def test_parent_topics_are_not_checked_on_apply(auth, http):
    # SPEC §4a: the provider's docs do not say the token service checks them.
    assert "nosuchparent" not in auth.engine.parent_topics_of("mqtt-dev")
    _, body = await call(http, auth, "apply", apply_params(EXP, resources="nosuchparent/#"))
    assert body["success"] is True
    assert (await v3(http, auth, "ApplyToken", apply_query(Resources="nosuchparent/#")))[0] == 200


async def test_revoke_of_foreign_or_forged_token(auth, http, clock):
    await add_account(http, auth, "ak2", "s2", ["i2"])
    other = await apply_token(http, auth, clock, secret="s2", access_key="ak2", instance="i2")
    await add_account(http, auth, "dev-ak", "dev-sk", ["mqtt-dev", "i2"])
    status, body = await v3(http, auth, "RevokeToken", {"Token": other, "InstanceId": "i2"})
    assert (status, body["Code"]) == (400, "PermissionCheckFailed")
    status, body = await v3(http, auth, "RevokeToken", {"Token": "bm9wZQ==", "InstanceId": "i2"})
    assert (status, body["Code"]) == (400, "InvalidParameter.Token")
    assert (await call(http, auth, "revoke", token_params(other)))[1]["code"] == 410


async def test_other_onsmqtt_actions_are_api_not_support(auth, http):
    status, body = await v3(http, auth, "ListGroupId", {"InstanceId": "mqtt-dev"})
    assert (status, body["Code"]) == (404, "ApiNotSupport")
    status, body = await v3(http, auth, "DeleteEverything", {})
    assert (status, body["Code"]) == (404, "InvalidAction.NotFound")
    status, body = await post_v3(http, f"{auth.url}/", {"authorization": "x"})
    assert (status, body["Code"]) == (400, "MissingParameter")


@pytest.mark.sdk
async def test_the_providers_sdks_see_instance_and_parameter_codes(auth, clock):
    from .test_openapi import rpc_call, v3_client

    expire_ms = int((clock.now() + 3600) * 1000)

    def v3_apply(instance: str, resources: str) -> tuple[str, int]:
        from alibabacloud_onsmqtt20200420 import models
        from alibabacloud_tea_openapi.exceptions import ClientException

        try:
            v3_client(auth.port).apply_token(
                models.ApplyTokenRequest(
                    actions="R", resources=resources, instance_id=instance, expire_time=expire_ms
                )
            )
        except ClientException as exc:
            return str(exc.code), exc.status_code
        raise AssertionError("accepted")

    def rpc_apply(instance: str, resources: str) -> str:
        from aliyunsdkcore.acs_exception.exceptions import ServerException
        from aliyunsdkonsmqtt.request.v20200420 import ApplyTokenRequest

        r = ApplyTokenRequest.ApplyTokenRequest()
        r.set_Actions("R")
        r.set_Resources(resources)
        r.set_InstanceId(instance)
        r.set_ExpireTime(expire_ms)
        try:
            rpc_call(auth.port, r)
        except ServerException as exc:
            return exc.get_error_code()
        raise AssertionError("accepted")

    assert await asyncio.to_thread(v3_apply, "elsewhere", "a") == (
        "InstancePermissionCheckFailed",
        400,
    )
    assert await asyncio.to_thread(v3_apply, "mqtt-dev", "dev:1") == (
        "InvalidParameter.Resources",
        400,
    )
    assert await asyncio.to_thread(rpc_apply, "elsewhere", "a") == "InstancePermissionCheckFailed"
    assert await asyncio.to_thread(rpc_apply, "mqtt-dev", "a" * 200) == "InvalidParameter.Resources"


# -- the legacy signing rule (SPEC §3a) ----------------------------------------------------------


def raw_signature(string_to_sign: str, secret: str = "dev-sk") -> str:
    """HMAC-SHA1 + Base64 of exactly this string (not through our signer)."""
    mac = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def signed_over(wire_resources: str, signed_resources: str) -> dict[str, str]:
    """Legacy apply parameters sending ``wire_resources``, signed over
    ``signed_resources`` as written."""
    params = apply_params(EXP, resources=wire_resources)
    params["signature"] = raw_signature(
        f"actions=R,W&expireTime={EXP}&instanceId=mqtt-dev&resources={signed_resources}"
        "&serviceName=mq"
    )
    return params


async def test_unsorted_resources_signed_by_the_rule_are_accepted(auth, http):
    _, body = await call(http, auth, "apply", signed_over("b2,b1", "b1,b2"))
    assert body["success"] is True, body
    assert auth.engine.codec.decode(body["tokenData"]).resources == ("b1", "b2")


async def test_a_signature_over_the_unsorted_values_is_refused(auth, http):
    # What a client that signs the wire order gets from the provider: its string to sign
    # ('resources=b2,b1') is not the server's ('resources=b1,b2').
    status, body = await call(http, auth, "apply", signed_over("b2,b1", "b2,b1"))
    assert (status, body["code"]) == (200, 407)


async def test_same_name_parameters_and_actions_in_any_order(auth, http):
    params = apply_params(EXP, resources="b2,b1", actions="W,R")
    params["signature"] = raw_signature(
        f"actions=R,W&expireTime={EXP}&instanceId=mqtt-dev&resources=b1,b2&serviceName=mq"
    )
    form = [(k, v) for k, v in params.items() if k != "resources"]
    form += [("resources", "b2"), ("resources", "b1")]
    async with http.post(f"{auth.url}/token/apply", data=form) as r:
        body = await r.json()
    assert body["success"] is True, body
    claims = auth.engine.codec.decode(body["tokenData"])
    assert (claims.resources, claims.actions) == (("b1", "b2"), {"R", "W"})
