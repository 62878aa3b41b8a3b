"""Start and stop an AppServer on a real socket (tests, the stack, the CLI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from sim.shared.clock import Clock, SystemClock
from sim.shared.httpserver import HttpStats, serve_app

from .app import SERVICE, create_app, http_layer_error_response
from .config import AppServerConfig
from .service import TokenService

__all__ = ["AppServerHandle", "run_appserver"]


@dataclass(frozen=True)
class AppServerHandle:
    url: str  # "http://127.0.0.1:PORT"
    port: int
    app: web.Application
    service: TokenService  # the core object, for in-process inspection
    #: What the HTTP layer refused or cut (late headers or bodies, malformed requests).
    http_stats: HttpStats = field(default_factory=HttpStats)


@asynccontextmanager
async def run_appserver(
    config: AppServerConfig, *, clock: Clock | None = None
) -> AsyncIterator[AppServerHandle]:
    """Serve until the block exits; ``port=0`` picks a free port."""
    app = create_app(config, clock=clock or SystemClock())
    async with serve_app(
        app,
        host=config.host,
        port=config.port,
        limits=config.http,
        render_error=http_layer_error_response,
        shutdown_timeout=5.0,
    ) as served:
        host = config.host if ":" not in config.host else f"[{config.host}]"
        yield AppServerHandle(
            f"http://{host}:{served.port}", served.port, app, app[SERVICE], served.stats
        )
