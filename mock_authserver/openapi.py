"""The OpenAPI style at ``/`` (SPEC §3b): ``ApplyToken``, ``QueryToken``, ``RevokeToken``
of product ``onsmqtt``, version ``2020-04-20``, signed V3 (``ACS3-HMAC-SHA256``, the
``Authorization`` header) or RPC v1 (``Signature`` parameter).

Answers ``{"RequestId", ...}`` with 200; errors ``{"RequestId", "HostId", "Code",
"Message"}`` with a 4xx/5xx status (rendered by the middleware in :mod:`.app`), the codes
of the provider's error-code table (:mod:`.errors`).  Every authenticated request counts
against its account's rate limit (SPEC §3b) before the engine sees it.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from aiohttp import web

from .appkeys import CODE, COMMIT, CONFIG, ENGINE, NONCES, OPERATION, WALL
from .auth import verify_rpc, verify_v3
from .errors import (
    InvalidVersion,
    MissingParameter,
    ParameterError,
    TokenInvalid,
    UnknownAction,
    UnsupportedAction,
)
from .gate import gate, rate_limit
from .render import request_id
from .validation import (
    ApplyRequest,
    parse_actions,
    parse_expire_ms,
    parse_resources,
    parse_token,
    require,
)

__all__ = ["API_VERSION", "add_routes"]

API_VERSION = "2020-04-20"
_OPERATIONS = {"ApplyToken": "apply", "QueryToken": "query", "RevokeToken": "revoke"}
_MAX_FIELDS = 1000
#: The other actions of onsmqtt 2020-04-20 (from the provider's SDK
#: ``alibabacloud-onsmqtt20200420``): they exist, this emulator does not serve them, so
#: they answer ``ApiNotSupport`` (404) rather than ``InvalidAction.NotFound``.
OTHER_ACTIONS = frozenset(
    [
        "ActiveCaCertificate",
        "ActiveDeviceCertificate",
        "AddCustomAuthConnectBlack",
        "AddCustomAuthIdentity",
        "AddCustomAuthPermission",
        "BatchQuerySessionByClientIds",
        "CloseConnection",
        "CreateGroupId",
        "DeleteCaCertificate",
        "DeleteCustomAuthConnectBlack",
        "DeleteCustomAuthIdentity",
        "DeleteCustomAuthPermission",
        "DeleteDeviceCertificate",
        "DeleteGroupId",
        "DisasterDowngrade",
        "DisasterRecovery",
        "GetCaCertificate",
        "GetDeviceCertificate",
        "GetDeviceCredential",
        "GetRegisterCode",
        "InactivateCaCertificate",
        "InactivateDeviceCertificate",
        "ListCaCertificate",
        "ListDeviceCertificate",
        "ListDeviceCertificateByCaSn",
        "ListDeviceCredentialClientId",
        "ListGroupId",
        "ListInstances",
        "ListTagResources",
        "QueryCustomAuthConnectBlack",
        "QueryCustomAuthIdentity",
        "QueryCustomAuthPermission",
        "QueryMqttTraceDevice",
        "QueryMqttTraceMessageOfClient",
        "QueryMqttTraceMessagePublish",
        "QueryMqttTraceMessageSubscribe",
        "QuerySessionByClientId",
        "RefreshDeviceCredential",
        "RegisterCaCertificate",
        "RegisterDeviceCredential",
        "SendMessage",
        "SetSniConfig",
        "TagResources",
        "UnRegisterDeviceCredential",
        "UntagResources",
        "UpdateCustomAuthIdentity",
        "UpdateCustomAuthPermission",
    ]
)


def _flat(pairs: list[tuple[str, str]], where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in pairs:
        if key in out:
            raise ParameterError(f"parameter {key[:40]!r} is given more than once ({where})")
        out[key] = value
    return out


async def _read_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ParameterError("the request body is too large") from None


def _form(request: web.Request, body: bytes) -> dict[str, str]:
    if not body or request.content_type != "application/x-www-form-urlencoded":
        return {}
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise ParameterError("the request body is malformed") from None
    return _flat(pairs, "body")


async def dispatch(request: web.Request) -> web.Response:
    query = _flat(list(request.query.items()), "query")
    body = await _read_body(request)
    form = _form(request, body)
    params = {**query, **form}
    is_v3 = "authorization" in {k.lower() for k in request.headers}
    if is_v3:
        action = request.headers.get("x-acs-action") or params.get("Action") or ""
        version = request.headers.get("x-acs-version") or params.get("Version") or ""
    else:
        action, version = params.get("Action", ""), params.get("Version", "")
    if not action:
        raise MissingParameter("missing action: x-acs-action header or Action parameter")
    operation = _OPERATIONS.get(action)
    if operation is None:
        if action in OTHER_ACTIONS:
            raise UnsupportedAction(
                f"The specified API is not supported: this emulator serves only ApplyToken,"
                f" QueryToken and RevokeToken of onsmqtt, not {action}"
            )
        raise UnknownAction(f"action {action[:64]!r} does not exist in onsmqtt {API_VERSION}")
    request[OPERATION] = operation
    await gate(request, operation)
    if version != API_VERSION:
        raise InvalidVersion(f"version {version[:20]!r} is not supported; use {API_VERSION}")

    app = request.app
    engine, config = app[ENGINE], app[CONFIG]
    if is_v3:
        account = verify_v3(
            engine,
            app[NONCES],
            method=request.method,
            path=request.path,
            query=query,
            headers=list(request.headers.items()),
            body=body,
            wall_now=app[WALL](),
            skew_s=config.timestamp_skew_s,
        )
    else:
        account = verify_rpc(
            engine,
            app[NONCES],
            method=request.method,
            params=params,
            wall_now=app[WALL](),
            skew_s=config.timestamp_skew_s,
        )
    rid = request_id(request)
    ak = account.access_key_id
    rate_limit(request, "openapi", operation, ak)
    if operation == "apply":
        issued = engine.apply(
            ApplyRequest(
                access_key_id=ak,
                instance_id=require(params, "InstanceId"),
                actions=parse_actions(require(params, "Actions"), "Actions"),
                resources=parse_resources(require(params, "Resources"), "Resources"),
                expire_ms=parse_expire_ms(require(params, "ExpireTime"), "ExpireTime"),
            )
        )
        await request.app[COMMIT].wait()
        return web.json_response({"RequestId": rid, "Token": issued.token})
    token = parse_token(require(params, "Token"), "Token")
    instance_id = require(params, "InstanceId")
    if operation == "query":
        try:
            engine.query(ak, token, instance_id)
        except TokenInvalid as exc:
            request[CODE] = str(exc.legacy_code)
            return web.json_response({"RequestId": rid, "TokenStatus": False})
        return web.json_response({"RequestId": rid, "TokenStatus": True})
    engine.revoke(ak, token, instance_id)
    return web.json_response({"RequestId": rid})


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", "/", dispatch)
    app.router.add_route("POST", "/", dispatch)
