"""Run the AuthServer in the current event loop (docs/CONTRACTS.md "AuthServer")."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from sim.shared.clock import Clock, clock_from_spec

from .app import create_app
from .appkeys import FAULTS
from .config import AuthServerConfig
from .faults import FaultSet
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
        runner = web.AppRunner(
            app,
            access_log=None,  # the access log would carry tokens and signatures (query strings)
            handler_cancellation=True,  # a hung (fault) request ends when its client leaves
            shutdown_timeout=1.0,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
            await site.start()
            server = site._server
            assert server is not None
            port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
            host = config.host
            url_host = f"[{host}]" if ":" in host else host
            from .appkeys import ENGINE

            yield AuthServerHandle(
                url=f"http://{url_host}:{port}",
                host=host,
                port=port,
                app=app,
                engine=app[ENGINE],
                clock=clock,
                config=config,
            )
        finally:
            await runner.cleanup()
    finally:
        store.close()
