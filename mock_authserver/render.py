"""Rendering of errors in the request's wire style (the middleware's one voice)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from .appkeys import CODE, REQUEST_ID
from .errors import AuthServerError, InternalError, ParameterError

__all__ = [
    "HOST_ID",
    "error_response",
    "http_layer_error_response",
    "request_id",
    "wire_style",
]

HOST_ID = "onsmqtt.mock.local"


def wire_style(path: str) -> str:
    if path.startswith("/token/"):
        return "legacy"
    if path.startswith("/admin/") or path == "/admin":
        return "admin"
    return "openapi"


def request_id(request: web.BaseRequest) -> str:
    rid = request.get(REQUEST_ID)
    if rid is None:
        rid = request[REQUEST_ID] = str(uuid.uuid4()).upper()
    return str(rid)


def error_response(request: web.BaseRequest, err: AuthServerError) -> web.Response:
    style = wire_style(request.path)
    request[CODE] = str(err.legacy_code)
    if style == "legacy":
        body: dict[str, Any] = {
            "success": False,
            "code": err.legacy_code,
            "message": err.message,
            "tokenData": "",
        }
        return web.json_response(body, status=err.legacy_http_status)
    if style == "openapi":
        return web.json_response(
            {
                "RequestId": request_id(request),
                "HostId": HOST_ID,
                "Code": err.openapi_code,
                "Message": err.message,
            },
            status=err.http_status,
        )
    return web.json_response(
        {"code": err.openapi_code, "message": err.message}, status=err.http_status
    )


def http_layer_error_response(request: web.BaseRequest, status: int, message: str) -> web.Response:
    """An answer the HTTP layer gives before routing (a malformed request, a 5xx of the
    layer itself), in the wire style of the request's path (``/`` when unparsed)."""
    err: AuthServerError = ParameterError(message) if status < 500 else InternalError(message)
    return error_response(request, err)
