"""Run the AuthServer in the current event loop (docs/CONTRACTS.md "AuthServer")."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import web

from sim.shared.clock import Clock, clock_from_spec
from sim.shared.httpserver import HttpStats, serve_app

from .app import create_app
from .appkeys import ENGINE, FAULTS
from .config import AuthServerConfig
from .faults import FaultSet
from .render import http_layer_error_response
from .store import SqliteStore
from .ttl import TTLEngine

__all__ = ["AuthServerHandle", "run_authserver"]


@dataclass(frozen=True)
class AuthServerHandle:
    url: str
    host: str
    port: int
    app: web.Application
    engine: TTLEngine
    clock: Clock
    config: AuthServerConfig
    #: What the HTTP layer refused or cut (late headers or bodies, malformed requests).
    http_stats: HttpStats = field(default_factory=HttpStats)

    @property
    def faults(self) -> FaultSet:
        return self.app[FAULTS]


@contextlib.asynccontextmanager
async def run_authserver(
    config: AuthServerConfig,
    *,
    clock: Clock | None = None,
    wall: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> AsyncIterator[AuthServerHandle]:
    """Serve until the block exits; ``port=0`` picks a free port (see ``handle.port``)."""
    clock = clock if clock is not None else clock_from_spec(config.clock)
    store = SqliteStore.in_dir(config.data_dir)
    try:
        app = create_app(config, clock=clock, repo=store, wall=wall, monotonic=monotonic)
        async with serve_app(
            app,
            host=config.host,
            port=config.port,
            limits=config.http,
            render_error=http_layer_error_response,
            handler_cancellation=True,  # a hung (fault) request ends when its client leaves
            shutdown_timeout=1.0,
            reuse_address=True,
        ) as served:
            url_host = f"[{config.host}]" if ":" in config.host else config.host
            yield AuthServerHandle(
                url=f"http://{url_host}:{served.port}",
                host=config.host,
                port=served.port,
                app=app,
                engine=app[ENGINE],
                clock=clock,
                config=config,
                http_stats=served.stats,
            )
    finally:
        store.close()
