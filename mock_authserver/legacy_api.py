"""The legacy token API, ``/token/apply|revoke|query`` (SPEC §3a): parse, call, render.

GET (query string) or POST (``application/x-www-form-urlencoded`` or
``multipart/form-data``; body fields override query fields).  Every answer is
``{"success", "code", "message", "tokenData"}``; business errors come with HTTP 200 and
the code in the body (see :mod:`.errors`, docs/authserver.md).

Multi-valued parameters (``resources``, ``actions``) follow the provider's signing rule
(SPEC §3a): their values are sorted before signing, so their order on the wire does not
matter, and a name given more than once ("same-name parameters") is one comma-joined
value.  Every authenticated request counts against its account's rate limit (SPEC §3b).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from sim.shared.protocol.signing import LEGACY_APPLY_SIGNED, LEGACY_TOKEN_SIGNED

from .appkeys import COMMIT, ENGINE, OPERATION
from .auth import verify_legacy
from .errors import ParameterError
from .gate import gate, rate_limit
from .validation import (
    ApplyRequest,
    parse_actions,
    parse_expire_ms,
    parse_resources,
    parse_token,
    require,
)

__all__ = ["MULTI_VALUED", "add_routes", "read_params"]

#: Parameters whose values are a comma-separated list (SPEC §3a).
MULTI_VALUED = frozenset({"actions", "resources"})


async def read_params(request: web.Request) -> dict[str, str]:
    """Query and body parameters as one flat dict of text; each name at most once."""
    params: dict[str, str] = {}
    sources: list[object] = [request.query]
    if request.method == "POST" and request.body_exists:
        try:
            sources.append(await request.post())
        except web.HTTPRequestEntityTooLarge:
            raise ParameterError("the request body is too large") from None
        except (ValueError, AssertionError, LookupError, RuntimeError, HttpProcessingError):
            raise ParameterError("the request body is malformed") from None
    for source in sources:
        seen: set[str] = set()
        for key, value in source.items():  # type: ignore[attr-defined]
            if not isinstance(value, str):
                raise ParameterError(f"parameter {key[:40]!r} must be a text value, not a file")
            if key in seen:
                if key not in MULTI_VALUED:
                    raise ParameterError(f"parameter {key[:40]!r} is given more than once")
                params[key] = f"{params[key]},{value}"  # same-name values: one list
                continue
            seen.add(key)
            params[key] = value
    return params


def _ok(token: str = "") -> web.Response:
    return web.json_response(
        {"success": True, "code": 200, "message": "success", "tokenData": token}
    )


async def apply(request: web.Request) -> web.Response:
    request[OPERATION] = "apply"
    await gate(request, "apply")
    params = await read_params(request)
    for name in (*LEGACY_APPLY_SIGNED, "proxyType"):
        require(params, name)
    if params["serviceName"] != "mq":
        raise ParameterError("serviceName must be 'mq'")
    if params["proxyType"] != "MQTT":
        raise ParameterError("proxyType must be 'MQTT'")
    actions = parse_actions(params["actions"], any_order=True)
    resources = parse_resources(params["resources"], any_order=True)
    expire_ms = parse_expire_ms(params["expireTime"])
    engine = request.app[ENGINE]
    account = verify_legacy(engine, params, LEGACY_APPLY_SIGNED)
    rate_limit(request, "legacy", "apply", account.access_key_id)
    issued = engine.apply(
        ApplyRequest(account.access_key_id, params["instanceId"], actions, resources, expire_ms)
    )
    await request.app[COMMIT].wait()
    return _ok(issued.token)


async def revoke(request: web.Request) -> web.Response:
    request[OPERATION] = "revoke"
    await gate(request, "revoke")
    params = await read_params(request)
    token = parse_token(require(params, "token"))
    engine = request.app[ENGINE]
    account = verify_legacy(engine, params, LEGACY_TOKEN_SIGNED)
    rate_limit(request, "legacy", "revoke", account.access_key_id)
    engine.revoke(account.access_key_id, token)
    return _ok()


async def query(request: web.Request) -> web.Response:
    request[OPERATION] = "query"
    await gate(request, "query")
    params = await read_params(request)
    token = parse_token(require(params, "token"))
    engine = request.app[ENGINE]
    account = verify_legacy(engine, params, LEGACY_TOKEN_SIGNED)
    rate_limit(request, "legacy", "query", account.access_key_id)
    engine.query(account.access_key_id, token)
    return _ok()


def add_routes(app: web.Application) -> None:
    for path, handler in (("apply", apply), ("revoke", revoke), ("query", query)):
        app.router.add_route("GET", f"/token/{path}", handler)
        app.router.add_route("POST", f"/token/{path}", handler)
