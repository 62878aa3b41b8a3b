"""Start and stop an AppServer on a real socket (tests, the stack, the CLI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from sim.shared.clock import Clock, SystemClock

from .app import SERVICE, create_app
from .config import AppServerConfig
from .service import TokenService

__all__ = ["AppServerHandle", "run_appserver"]


@dataclass(frozen=True)
class AppServerHandle:
    url: str  # "http://127.0.0.1:PORT"
    port: int
    app: web.Application
    service: TokenService  # the core object, for in-process inspection


@asynccontextmanager
async def run_appserver(
    config: AppServerConfig, *, clock: Clock | None = None
) -> AsyncIterator[AppServerHandle]:
    """Serve until the block exits; ``port=0`` picks a free port."""
    app = create_app(config, clock=clock or SystemClock())
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = int(runner.addresses[0][1])
        host = config.host if ":" not in config.host else f"[{config.host}]"
        yield AppServerHandle(f"http://{host}:{port}", port, app, app[SERVICE])
    finally:
        await runner.cleanup()
