"""The AppServer's HTTP shell: parse, call the service, render.  No rules live here.

Routes (described by :mod:`sim.customer.appserver.openapi`, served at ``/openapi.json``):

    POST   /v1/tokens                  Basic auth; {"resources", "actions"}
    PUT    /admin/accounts/{client_id} {"secret", "grants", "enabled"} ({"enabled": false}
                                       disables: the account stays, its tokens are revoked)
    GET    /admin/accounts/{client_id}
    DELETE /admin/accounts/{client_id} removes the account; its tokens are revoked
    GET    /admin/accounts
    POST   /admin/accounts:bulk        {"accounts": [...]}
    GET    /admin/health
    GET    /admin/metrics              Prometheus text
    GET    /openapi.json

One middleware renders every error as ``{"error", "message"}`` (plus ``Retry-After``
on 503, ``WWW-Authenticate`` on 401); nothing else builds error JSON, and a client
never sees a trace.  ``/admin`` answers loopback peers only unless configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from sim.shared.clock import Clock, SystemClock
from sim.shared.httplimits import JsonTooDeep, check_json_depth, content_coding_problem
from sim.shared.httpserver import client_error_message, close_if_body_unsettled
from sim.shared.net import is_loopback_peer
from sim.shared.protocol import build_token_password, build_username

from .config import AppServerConfig
from .errors import AppServerError, BadRequest, Forbidden, ServiceUnavailable, Unauthorized
from .metrics import Metrics
from .openapi import openapi_document
from .policy import (
    CachedToken,
    parse_account_body,
    parse_basic_auth,
    parse_json,
    parse_token_body,
    validate_client_id,
)
from .service import Issued, TokenService
from .store import Store
from .upstream import LegacyTokenClient, OpenApiRevokeClient, Revoker, Upstream

__all__ = [
    "CLOCK",
    "CONFIG",
    "METRICS",
    "SERVICE",
    "create_app",
    "http_layer_error_response",
]

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", AppServerConfig)
CLOCK = web.AppKey("clock", Clock)
SERVICE = web.AppKey("service", TokenService)
METRICS = web.AppKey("metrics", Metrics)
#: Pre-bound children of appserver_token_requests_total, by outcome.
OUTCOMES = web.AppKey("outcomes", dict[str, Any])

_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    417: "expectation_failed",
    415: "unsupported_media_type",
}
_OUTCOMES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    408: "bad_request",
    413: "bad_request",
    503: "unavailable",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if headers and "Retry-After" in headers:
        body["retryAfter"] = int(headers["Retry-After"])
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The handler's answer, or its error rendered (the middleware's one voice); the
    connection closed after it if the request's body is still unsettled."""
    try:
        if (
            request.path.startswith("/admin")
            and not request.app[CONFIG].admin_remote
            and not is_loopback_peer(request.remote)
        ):
            raise Forbidden("the admin API answers loopback clients only")
        if request.body_exists:
            codings = request.headers.getall("Content-Encoding", ())
            if codings and (problem := content_coding_problem(codings)) is not None:
                raise BadRequest(problem)
        response = await handler(request)
    except AppServerError as exc:
        headers: dict[str, str] = {}
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = 'Basic realm="mqtt-token-sim"'
        if isinstance(exc, ServiceUnavailable):
            headers["Retry-After"] = str(exc.retry_after)
        response = _error_response(exc.http_status, exc.code, exc.message, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        message = exc.reason
        if exc.status == 413:
            message = f"request body is larger than {request.app[CONFIG].max_body_bytes} bytes"
        if exc.status == 408:  # sim.shared.httpserver: the body was late
            limit = request.app[CONFIG].http.body_timeout_s
            message = f"the request body did not arrive within {limit:g} s"
        response = _error_response(
            exc.status, _HTTP_CODES.get(exc.status, "http_error"), message, headers
        )
    except web.RequestPayloadError as exc:  # a body that breaks off or does not decode
        response = _error_response(400, "bad_request", client_error_message(exc.__cause__))
    except ConnectionResetError:  # the client left mid-request: nobody to answer
        log.debug("client left during %s %s", request.method, request.path)
        response = _error_response(400, "bad_request", "the client closed the connection")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = _error_response(500, "internal", "internal error")
    close_if_body_unsettled(request, response)
    return response


def _shallow(raw: bytes) -> bytes:
    """The raw body, refused if its JSON would nest deeper than
    :data:`~sim.shared.httplimits.MAX_JSON_DEPTH` (read it with ``request.read()``,
    which raises 413 past ``client_max_size``)."""
    try:
        check_json_depth(raw)
    except JsonTooDeep as exc:
        raise BadRequest(f"request body is {exc}") from None
    return raw


async def _json_body(request: web.Request) -> object:
    return parse_json(_shallow(await request.read()))


def http_layer_error_response(request: web.BaseRequest, status: int, message: str) -> web.Response:
    """An answer the HTTP layer gives before routing (a malformed request, a 5xx of the
    layer itself): the same ``{"error", "message"}`` shape as every other error."""
    return _error_response(status, _HTTP_CODES.get(status, "internal"), message)


def _render_issued(config: AppServerConfig, issued: Issued) -> dict[str, Any]:
    cached = issued.token
    token_type = cached.key.request.token_type
    return {
        "token": cached.token,
        "type": token_type.value,
        "expireTime": cached.expire_ms,
        "instanceId": cached.key.instance_id,
        "username": build_username(config.access_key, cached.key.instance_id),
        "password": build_token_password({token_type: cached.token}),
        "stale": issued.stale,
    }


class _RenderedTokens:
    """Response bodies of recently served tokens: a cache hit re-sends bytes."""

    def __init__(self, config: AppServerConfig, size: int = 10_000):
        self.config = config
        self.size = size
        self._bodies: dict[tuple[CachedToken, bool], bytes] = {}

    def body(self, issued: Issued) -> bytes:
        key = (issued.token, issued.stale)
        body = self._bodies.get(key)
        if body is None:
            if len(self._bodies) >= self.size:
                self._bodies.clear()
            body = json.dumps(_render_issued(self.config, issued)).encode()
            self._bodies[key] = body
        return body


RENDERED = web.AppKey("rendered", _RenderedTokens)


# -- handlers ------------------------------------------------------------------------------


async def post_token(request: web.Request) -> web.Response:
    app = request.app
    service = app[SERVICE]
    outcomes = app[OUTCOMES]
    try:
        client_id, secret = parse_basic_auth(request.headers.get("Authorization"))
        account = await service.authenticate(client_id, secret)
        token_request = parse_token_body(_shallow(await request.read()))
        issued = await service.issue(account, token_request)
    except AppServerError as exc:
        outcomes[_OUTCOMES.get(exc.http_status, "error")].inc()
        raise
    except web.HTTPException as exc:
        outcomes[_OUTCOMES.get(exc.status, "error")].inc()
        raise
    outcomes[issued.source].inc()
    return web.Response(body=app[RENDERED].body(issued), content_type="application/json")


def _account_view(service: TokenService, client_id: str) -> dict[str, Any]:
    account = service.accounts[client_id]
    view = account.to_json()
    view["tokens"] = service.token_count(client_id)
    return view


async def put_account(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    client_id = validate_client_id(request.match_info["client_id"])
    body = parse_account_body(await _json_body(request))
    _, created, change = await service.put_account(client_id, body)
    view = _account_view(service, client_id) | change.to_json()
    return web.json_response(view, status=201 if created else 200)


async def get_account(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    client_id = validate_client_id(request.match_info["client_id"])
    if client_id not in service.accounts:
        raise web.HTTPNotFound(reason=f"no account {client_id!r}")
    return web.json_response(_account_view(service, client_id))


async def delete_account(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    client_id = validate_client_id(request.match_info["client_id"])
    change = await service.delete_account(client_id)
    return web.json_response({"client_id": client_id, **change.to_json()})


async def list_accounts(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return web.json_response(
        {"accounts": [_account_view(service, cid) for cid in sorted(service.accounts)]}
    )


async def bulk_accounts(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict) or set(body) != {"accounts"}:
        raise BadRequest('request body must be {"accounts": [...]}')
    return web.json_response(await request.app[SERVICE].bulk_import(body["accounts"]))


async def health(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return web.json_response(
        {
            "status": "ok",
            "breaker": service.breaker_state().value,
            "accounts": len(service.accounts),
            "cached_tokens": len(service.tokens),
            "instanceId": request.app[CONFIG].instance_id,
        }
    )


async def metrics(request: web.Request) -> web.Response:
    request.app[SERVICE].update_gauges()
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


# -- background work -----------------------------------------------------------------------


def _upstream_ctx(*clients: object) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        for client in clients:
            start = getattr(client, "start", None)
            if start is not None:
                await start()
        try:
            yield
        finally:
            await app[SERVICE].close()
            for client in clients:
                close = getattr(client, "close", None)
                if close is not None:
                    await close()

    return ctx


async def _accounts_file_ctx(app: web.Application) -> AsyncIterator[None]:
    path = app[CONFIG].accounts_file
    if path is not None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadRequest(f"accounts file {path}: {exc}") from None
        if not isinstance(data, dict) or "accounts" not in data:
            raise BadRequest(f'accounts file {path} must be {{"accounts": [...]}}')
        result = await app[SERVICE].bulk_import(data["accounts"])
        log.info("imported %d accounts from %s", result["imported"], path)
    yield


async def _revocation_drain(app: web.Application) -> AsyncIterator[None]:
    """The revocation queue drains in the background while the app runs."""
    drain = app[SERVICE].revocations
    task = asyncio.get_running_loop().create_task(drain.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await drain.stop()


def create_app(
    config: AppServerConfig,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    upstream: Upstream | None = None,
) -> web.Application:
    clock = clock or SystemClock()
    own_store = store is None
    store = store if store is not None else Store(config.db_path)
    revoker: Revoker | None = None
    if upstream is None:
        account = (config.access_key, config.secret_key, config.instance_id)
        timeout_s = config.upstream_timeout_s
        upstream = LegacyTokenClient(config.authserver_url, *account, timeout_s=timeout_s)
        if config.revoke_api == "openapi":
            revoker = OpenApiRevokeClient(config.revoke_url, *account, timeout_s=timeout_s)
    app_metrics = Metrics()
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[CLOCK] = clock
    app[METRICS] = app_metrics
    app[SERVICE] = TokenService(config, clock, store, upstream, app_metrics, revoker=revoker)
    app[OUTCOMES] = {
        outcome: app_metrics.requests.labels(outcome)
        for outcome in ("cached", "issued", "stale", "error", *_OUTCOMES.values())
    }
    app[RENDERED] = _RenderedTokens(config)
    app.router.add_post("/v1/tokens", post_token)
    app.router.add_get("/admin/accounts", list_accounts)
    app.router.add_post("/admin/accounts:bulk", bulk_accounts)
    app.router.add_put("/admin/accounts/{client_id}", put_account)
    app.router.add_get("/admin/accounts/{client_id}", get_account)
    app.router.add_delete("/admin/accounts/{client_id}", delete_account)
    app.router.add_get("/admin/health", health)
    app.router.add_get("/admin/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.cleanup_ctx.append(_upstream_ctx(upstream, revoker))
    app.cleanup_ctx.append(_accounts_file_ctx)
    app.cleanup_ctx.append(_revocation_drain)

    async def stop_flights(app: web.Application) -> None:
        # Before the server waits for open requests: release those parked on a flight.
        await app[SERVICE].close()

    app.on_shutdown.append(stop_flights)
    if own_store:

        async def close_store(_: web.Application) -> None:
            store.close()

        app.on_cleanup.append(close_store)
    return app
