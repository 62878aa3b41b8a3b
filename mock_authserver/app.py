"""The aiohttp shell: app factory, the one error-rendering middleware, routes.

Handlers parse the request, call the pure core (:mod:`.validation`, :mod:`.auth`,
:mod:`.ttl`, :mod:`.faults`) and render success; every failure is an exception of the
error tree (:mod:`.errors`), rendered here in the wire style of the request:

* legacy token API (``/token/*``): ``{"success", "code", "message", "tokenData"}``;
* OpenAPI (``/``): ``{"RequestId", "HostId", "Code", "Message"}`` with a 4xx/5xx status;
* admin API (``/admin/*``): ``{"code", "message"}`` with a 4xx status.

Nothing else reaches a client: an unexpected exception is logged and answered as
``InternalError`` without a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from sim.shared.clock import Clock
from sim.shared.httplimits import content_coding_problem
from sim.shared.httpserver import client_error_message, close_if_body_unsettled
from sim.shared.net import is_loopback_peer
from sim.shared.protocol import FeedEvent

from . import admin, legacy_api, openapi
from .appkeys import (
    CLOCK,
    CODE,
    COMMIT,
    CONFIG,
    ENGINE,
    FAULTS,
    FEED,
    LIMITER,
    METRICS,
    MONOTONIC,
    NONCES,
    OPERATION,
    WALL,
)
from .auth import NonceStore
from .config import DEV_ACCOUNT, DEV_PARENT_TOPICS, AuthServerConfig
from .errors import (
    AdminForbidden,
    AuthServerError,
    InternalError,
    MethodNotAllowed,
    NotFound,
    ParameterError,
)
from .faults import FaultSet
from .feedwait import FeedSignal
from .gate import TransportAborted
from .metrics import Metrics
from .ratelimit import RateLimiter
from .render import error_response, wire_style
from .store import GroupCommit
from .ttl import Repository, TTLEngine

__all__ = ["create_app"]

log = logging.getLogger("mock_authserver")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _from_http_exception(exc: web.HTTPException, config: AuthServerConfig) -> AuthServerError:
    if exc.status == 404:
        return NotFound(f"no such resource: {exc.reason}")
    if exc.status == 405:
        return MethodNotAllowed("method not allowed here")
    if exc.status == 413:
        return ParameterError("the request body is too large")
    if exc.status == 408:  # sim.shared.httpserver: the body was late
        return ParameterError(
            f"the request body did not arrive within {config.http.body_timeout_s:g} s"
        )
    if 400 <= exc.status < 500:
        return ParameterError(f"bad request: {exc.reason}")
    return InternalError("internal error")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    try:
        if (
            wire_style(request.path) == "admin"
            and not request.app[CONFIG].admin_allow_remote
            and not is_loopback_peer(request.remote)
        ):
            raise AdminForbidden("the admin API answers loopback peers only")
        if request.body_exists:
            codings = request.headers.getall("Content-Encoding", ())
            if codings and (problem := content_coding_problem(codings)) is not None:
                raise ParameterError(problem)
        response = await handler(request)
    except AuthServerError as err:
        response = error_response(request, err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(request, _from_http_exception(exc, request.app[CONFIG]))
    except web.RequestPayloadError as exc:  # a body that breaks off or does not decode
        response = error_response(request, ParameterError(client_error_message(exc.__cause__)))
    except (TransportAborted, ConnectionResetError):
        # Nothing reaches the client (the transport is gone); aiohttp drops this quietly.
        return web.Response(status=499)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        response = error_response(request, InternalError("internal error"))
    close_if_body_unsettled(request, response)
    op = request.get(OPERATION)
    if op is not None:
        request.app[METRICS].record(op, request.get(CODE, "200"), time.perf_counter() - started)
    return response


def create_app(
    config: AuthServerConfig,
    *,
    clock: Clock,
    repo: Repository,
    wall: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> web.Application:
    """The AuthServer app on ``repo`` (storage) and ``clock`` (virtual time)."""
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_body_bytes)
    engine = TTLEngine(
        clock,
        repo,
        feed_keep=config.feed_keep,
        dev_account=DEV_ACCOUNT if config.dev_account else None,
        dev_instance=DEV_PARENT_TOPICS if config.dev_account else None,
        accounts=config.accounts,
        instances=config.instances,
    )
    metrics = Metrics()
    feed = FeedSignal()
    engine.add_listener(feed.notify)

    def on_event(event: FeedEvent) -> None:
        metrics.feed_seq.set(event.seq)

    engine.add_listener(on_event)
    metrics.feed_seq.set(engine.seq)
    metrics.revoked.set_function(engine.revoked_count)

    app[CONFIG] = config
    app[CLOCK] = clock
    app[ENGINE] = engine
    app[WALL] = wall
    app[MONOTONIC] = monotonic
    app[NONCES] = NonceStore(config.timestamp_skew_s, config.nonce_capacity)
    app[FAULTS] = FaultSet(seed=config.fault_seed)
    app[LIMITER] = RateLimiter(config.rate_limits)
    app[FEED] = feed
    app[METRICS] = metrics
    app[COMMIT] = GroupCommit(repo.flush)

    legacy_api.add_routes(app)
    admin.add_routes(app)
    openapi.add_routes(app)
    app.cleanup_ctx.append(_sweeper)

    async def wake_pollers(app: web.Application) -> None:
        app[FEED].close()

    app.on_shutdown.append(wake_pollers)
    return app


async def _sweeper(app: web.Application) -> AsyncIterator[None]:
    """Forget expired revocations every ``sweep_interval_s`` of virtual time."""
    clock, engine = app[CLOCK], app[ENGINE]
    interval = app[CONFIG].sweep_interval_s

    async def loop() -> None:
        while True:
            await clock.sleep(interval)
            try:
                engine.sweep()
            except Exception:  # storage trouble must not kill the sweeper
                log.exception("sweep failed")

    task = asyncio.create_task(loop(), name="authserver-sweeper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
