"""The OpenAPI style at ``/`` (SPEC §3b): filled in by the next step."""

from __future__ import annotations

from aiohttp import web

from .errors import UnknownAction

__all__ = ["add_routes"]


async def dispatch(request: web.Request) -> web.Response:
    raise UnknownAction("the OpenAPI style is not served yet")


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", "/", dispatch)
    app.router.add_route("POST", "/", dispatch)
