"""Carry a fault decision (:mod:`.faults`) and the rate limits (:mod:`.ratelimit`) out
on a live aiohttp request (shell)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .appkeys import CLOCK, FAULTS, FEED, LIMITER, METRICS, MONOTONIC, OPERATION
from .errors import AuthServerError

__all__ = ["TransportAborted", "gate", "rate_limit"]


class TransportAborted(Exception):
    """The connection was aborted on purpose: the middleware answers nothing more."""


async def gate(request: web.Request, operation: str) -> None:
    """Apply the faults for ``operation`` to this request (may raise, sleep, hang, abort)."""
    app = request.app
    faults = app[FAULTS]
    if not faults.active:  # the common case: no faults, no work
        return
    decision = faults.decide(operation, app[CLOCK].now_ms(), app[MONOTONIC]())
    if decision.delay_s > 0:
        await asyncio.sleep(decision.delay_s)
    outcome = decision.outcome
    if outcome is None:
        return
    if isinstance(outcome, AuthServerError):
        raise outcome
    # Transport faults: counted here, since no answer will pass the middleware.
    app[METRICS].requests.labels(operation, outcome).inc()
    request[OPERATION] = None
    if outcome == "reset":
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise TransportAborted("injected connection reset")
    # hang: until the client goes away (handler cancelled) or the server stops.
    feed = app[FEED]
    while not feed.closing:
        await feed.wait(3600.0)
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise TransportAborted("server stopping")


def rate_limit(request: web.Request, wire: str, operation: str, access_key_id: str) -> None:
    """Count this authenticated request against its account's limit (SPEC §3b), on the
    server's clock; raises the wire's throttling error past it."""
    app = request.app
    limiter = app[LIMITER]
    if limiter.limits.enabled:  # all off (--no-rate-limits): not even a clock read
        limiter.check(access_key_id, wire, operation, app[CLOCK].now_ms())
