"""``up``'s status port (docs/stack.md): one loopback URL an operator or a CI job polls.

* ``GET /health`` -- every part's health in one answer: 200 ``{"status": "ok", "parts":
  {...}}`` when each part answers, 503 ``"degraded"`` naming the one that does not (the
  AuthServer's and the AppServer's ``/admin/health``; the broker: listening, and holding
  the AuthServer's keys, without which it refuses every CONNECT with code 3);
* ``GET /metrics`` -- the broker's Prometheus text (the AuthServer and the AppServer
  serve theirs at ``/admin/metrics``);
* ``GET /fidelity`` -- the broker's fidelity report as JSON (docs/fidelity.md);
* ``GET /audit`` -- the broker's device audit as JSON (docs/your-appserver.md).

Loopback peers only, like the parts' admin APIs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from sim.shared.net import is_loopback_peer

from .errors import AdminError
from .stack import StackHandle

__all__ = ["health_of", "serve_status"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _part_health(call: Any) -> dict[str, Any]:
    try:
        doc = await call()
    except AdminError as exc:
        return {"status": "down", "error": str(exc)}
    return {"status": "ok" if doc.get("status") == "ok" else "down", **doc}


def _broker_health(stack: StackHandle) -> dict[str, Any]:
    broker = stack.broker
    if broker is None:
        return {"status": "down", "error": "the broker is not running"}
    if not broker.authority.ready:
        return {"status": "down", "error": "no keys from the AuthServer yet (CONNACK 3)"}
    return {"status": "ok", "url": broker.url, "profile": broker.config.profile}


async def health_of(stack: StackHandle) -> dict[str, Any]:
    """The combined health document (module docstring)."""
    parts: dict[str, Any] = {}
    calls = {"authserver": stack.admin.authserver.health}
    if "appserver" not in stack.config.without:
        calls["appserver"] = stack.admin.appserver.health
    answers = await asyncio.gather(*(_part_health(c) for c in calls.values()))
    parts.update(zip(calls, answers, strict=True))
    if "broker" not in stack.config.without:
        if stack.config.broker_url is not None:
            parts["broker"] = {"status": "external", "url": stack.config.broker_url}
        else:
            parts["broker"] = _broker_health(stack)
    ok = all(p["status"] in ("ok", "external") for p in parts.values())
    return {"status": "ok" if ok else "degraded", "parts": parts}


def _app(stack: StackHandle) -> web.Application:
    @web.middleware
    async def loopback_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_loopback_peer(request.remote):
            return web.json_response({"error": "loopback only"}, status=403)
        return await handler(request)

    async def health(_: web.Request) -> web.Response:
        doc = await health_of(stack)
        return web.json_response(doc, status=200 if doc["status"] == "ok" else 503)

    async def metrics(_: web.Request) -> web.Response:
        if stack.broker is None:
            return web.json_response({"error": "no broker in this process"}, status=404)
        return web.Response(
            body=stack.broker.metrics.render(),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def fidelity(_: web.Request) -> web.Response:
        if stack.broker is None:
            return web.json_response({"error": "no broker in this process"}, status=404)
        return web.json_response(stack.broker.fidelity().to_json())

    app = web.Application(middlewares=[loopback_only])
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)

    async def audit(_: web.Request) -> web.Response:
        if stack.broker is None:
            return web.json_response({"error": "no broker in this process"}, status=404)
        return web.json_response(stack.broker.audit().to_json())

    app.router.add_get("/fidelity", fidelity)
    app.router.add_get("/audit", audit)
    return app


@contextlib.asynccontextmanager
async def serve_status(stack: StackHandle, host: str, port: int) -> AsyncIterator[str]:
    """Serve the status app on ``host:port`` (0: a free port); yields its base URL."""
    from sim.shared.exits import why_not_listening

    from .errors import PartDidNotStart

    runner = web.AppRunner(_app(stack), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            why = why_not_listening(exc)
            if why is None:
                raise
            raise PartDidNotStart("status endpoint", host, port, why) from exc
        bound = runner.addresses[0][1] if runner.addresses else port
        yield f"http://{host}:{bound}"
    finally:
        await runner.cleanup()
