"""Serve an aiohttp app with bounded header, body and idle time, and JSON answers to
malformed requests (docs/authserver.md, docs/appserver.md "Security").

aiohttp closes idle keep-alive connections (``keepalive_timeout``), but has no limit of
its own on how long a request's headers or body may take: a client sending one byte a
minute holds a connection, and a descriptor, forever.  :func:`serve_app` runs an app
with a per-connection watchdog (limits in :class:`sim.shared.httplimits.HttpLimits`):

* headers: a deadline from the connection's opening, and from the first byte of each
  later request, until aiohttp's parser has the whole head; late -> connection closed
  (a head pipelined behind a request still being handled is bounded by the idle limit,
  which aiohttp counts from the last answer);
* body: a deadline from the end of the head until the body is complete; late -> the
  handler's read raises :class:`aiohttp.web.HTTPRequestTimeout` (408, rendered by the
  app's error middleware), nothing more is read and the connection closes after the
  answer (a body that never completes for aiohttp's own reasons, too: a large deflate
  body whose stream never ends, which its C parser loses);
* idle: aiohttp's own keep-alive timeout.

It also answers what aiohttp's parser refuses (a bad request line, header garbage, a
body whose ``Content-Encoding`` fails) with the app's own JSON error body and a fixed
message -- aiohttp's plain-text answer echoes the offending line, credentials included
-- and logs such client errors at DEBUG, counted in :class:`HttpStats`, instead of an
ERROR with a traceback each.

This is the one module that reaches into aiohttp's request handler (``RequestHandler``
is public, its bookkeeping is not).  The private names it relies on are checked when it
is imported (:func:`check_aiohttp_assumptions`), so an aiohttp upgrade that moves them
fails loudly at start, not inside a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web
from aiohttp import http_exceptions as hx
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from .httplimits import HttpLimits

__all__ = [
    "ErrorRenderer",
    "HttpStats",
    "ServedApp",
    "check_aiohttp_assumptions",
    "client_error_message",
    "close_if_body_unsettled",
    "serve_app",
]

log = logging.getLogger(__name__)

#: ``render(request, status, message)``: the app's error body for an answer the HTTP
#: layer gives before (or instead of) the app's handlers.
ErrorRenderer = Callable[[web.BaseRequest, int, str], web.StreamResponse]

# Most specific first: the first match names the problem.
_CLIENT_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (hx.LineTooLong, "a request line or header is too long"),
    (hx.BadHttpMethod, "malformed request method"),
    (hx.BadStatusLine, "malformed request line"),
    (hx.InvalidURLError, "malformed request target"),
    (hx.InvalidHeader, "malformed header"),
    (hx.DecompressSizeError, "the decoded body is too large"),
    (hx.ContentEncodingError, "the body does not decode as its Content-Encoding says"),
    (hx.TransferEncodingError, "malformed chunked body"),
    (hx.ContentLengthError, "the body is shorter than its Content-Length"),
    (hx.HttpProcessingError, "malformed request"),
)


def client_error_message(exc: BaseException | None) -> str:
    """A fixed description of a malformed request: never the request's own text (which
    may hold a token, a signature or a password)."""
    for kind, text in _CLIENT_ERRORS:
        if isinstance(exc, kind):
            return f"malformed HTTP request: {text}"
    return "malformed HTTP request"


def close_if_body_unsettled(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """If the request's body is still arriving when the answer is ready, or broke (it
    did not decode, it broke off), close the connection after the answer instead of
    keeping it alive: aiohttp would read on to discard it (or fail on the broken body
    and drop the connection), and a client reusing the connection would find it gone.
    Error answers of the legacy token API are HTTP 200: this looks at the body, not the
    status."""
    content = request.content
    if content.exception() is not None or not content.is_eof():
        response.force_close()


def _client_caused(exc: object) -> bool:
    return isinstance(
        exc,
        hx.HttpProcessingError | web.RequestPayloadError | ConnectionError | web.HTTPException,
    )


@dataclass
class HttpStats:
    """What the HTTP layer refused or cut, since the server started."""

    #: Connections closed because a request's headers did not arrive in time.
    header_timeouts: int = 0
    #: Requests whose body did not arrive in time (answered 408).
    body_timeouts: int = 0
    #: Requests aiohttp's parser refused (answered 400 in the app's JSON shape).
    malformed: int = 0
    #: Client failures aiohttp would have logged as errors (a body that breaks off or
    #: fails to decode after the answer, a client gone mid-request): logged at DEBUG.
    client_errors: int = 0


@dataclass
class _Guard:
    limits: HttpLimits
    render: ErrorRenderer
    stats: HttpStats


class _GuardedRequestHandler(RequestHandler):
    """aiohttp's request handler with header and body deadlines (module docstring).

    The header deadline is kept lazily: a request in flight only stores its deadline
    (``_head_due``) and clears it when its head is parsed; the one timer of the
    connection is not cancelled and re-armed per request (a heap push, and later a
    heap clean-up, for every request on the event loop) but, when it fires, re-arms
    itself for the deadline of the moment, or goes away if no head is pending.  The
    connection is closed at the same moment as with a timer per request."""

    def __init__(self, manager: web.Server, *, guard: _Guard, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._header_timeout = guard.limits.header_timeout_s
        #: Loop time by which the pending request head must be complete; None: none pending.
        self._head_due: float | None = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body: StreamReader | None = None

    # -- connection events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._head_started()  # a connection that never sends a whole head is closed

    def connection_lost(self, exc: BaseException | None) -> None:
        self._head_due = None
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._watch_body(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # The first bytes of a new request start its head's deadline.  When the whole
        # head is in these bytes (the common case) it is parsed in this same call, so
        # the deadline is only set, for the same moment, if it is not.
        starts_head = (
            self._head_due is None
            and data
            and not self._request_in_progress
            and (self._body is None or self._body.is_eof())
        )
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # a head (or a parse error) came out
            self._head_due = None
            if self._body is None or self._body.is_eof():
                payload = self._messages[-1][1] if self._messages else None
                if payload is not None and not payload.is_eof():
                    self._watch_body(payload)
                elif self._body is not None or self._body_timer is not None:
                    self._watch_body(None)
            # else: a body still unfinished keeps its deadline.  HTTP/1.1 framing puts
            # no request inside another's body, but aiohttp 3.14's C parser, having lost
            # a large deflate body that never ends its stream, reports "new requests"
            # while the first waits for the rest of its body forever.
        elif starts_head and self.transport is not None:
            self._head_started()  # a head still incomplete

    # -- deadlines -----------------------------------------------------------------------

    def _head_started(self) -> None:
        self._head_due = due = self._loop.time() + self._header_timeout
        if self._header_timer is None:
            self._header_timer = self._loop.call_at(due, self._check_head)

    def _check_head(self) -> None:
        """The connection's header timer: close if the pending head is late, re-arm if
        one is pending but not yet due (the deadline moved on since the timer was set)."""
        self._header_timer = None
        due = self._head_due
        if due is None or self.transport is None:
            return  # no head pending: the next request's first bytes arm a timer again
        if self._loop.time() < due:
            self._header_timer = self._loop.call_at(due, self._check_head)
            return
        self._head_due = None
        self._guard.stats.header_timeouts += 1
        log.debug("closing a connection whose request headers are late")
        self.force_close()

    def _watch_body(self, payload: StreamReader | None) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._body = None
        if payload is None or payload.is_eof():
            return
        self._body = payload
        self._body_timer = self._loop.call_later(self._guard.limits.body_timeout_s, self._body_late)

    def _body_late(self) -> None:
        self._body_timer = None
        payload, self._body = self._body, None
        if payload is None or payload.is_eof() or self.transport is None:
            return
        self._guard.stats.body_timeouts += 1
        log.debug("request body late: answering 408 and closing")
        self.close()  # read nothing more; no keep-alive after the answer
        payload.set_exception(web.HTTPRequestTimeout())
        payload.feed_eof()  # nothing to linger for: the rest will not be read

    # -- errors --------------------------------------------------------------------------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500:
            self.logger.error("error handling request from %s", request.remote, exc_info=exc)
            text = "internal error"
        else:
            self._guard.stats.malformed += 1
            log.debug("malformed request from %s: %s", request.remote, type(exc).__name__)
            text = client_error_message(exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; cannot send an error instead")
        try:
            resp = self._guard.render(request, status, text)
        except Exception:
            log.exception("rendering an HTTP-layer error failed")
            resp = web.json_response({"error": "bad_request", "message": text}, status=status)
        resp.force_close()
        return resp

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if _client_caused(exc):
            self._guard.stats.client_errors += 1
            log.debug("client error after the answer: %s", type(exc).__name__)
            return
        super().log_exception(*args, **kw)


def _expectation_guard(
    handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]], guard: _Guard
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The app's request handler, with an ``Expect`` it refuses answered in the app's own
    error shape.  aiohttp runs a route's expect handler before the app's middleware, and
    answers anything but ``100-continue`` with a plain-text 417 quoting the header."""

    async def guarded(request: web.BaseRequest) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPExpectationFailed:
            guard.stats.malformed += 1
            resp = guard.render(request, 417, "unsupported Expect header: only 100-continue")
            resp.force_close()  # the body, if any, was not read
            return resp

    def handle(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        # aiohttp runs an expect handler only for a non-empty Expect header: without
        # one, the app's handler runs as it is (no coroutine around it per request).
        if request.headers.get(hdrs.EXPECT):
            return guarded(request)
        return handler(request)

    return handle


class _GuardedServer(web.Server):
    def __init__(self, *args: Any, guard: _Guard, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._guard = guard

    def __call__(self) -> RequestHandler:
        return _GuardedRequestHandler(self, loop=self._loop, guard=self._guard, **self._kwargs)


class _GuardedAppRunner(web.AppRunner):
    def __init__(self, app: web.Application, *, guard: _Guard, **kwargs: Any):
        super().__init__(app, **kwargs)
        self._http_guard = guard

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # runs the app's startup, as AppRunner does
        return _GuardedServer(
            _expectation_guard(plain.request_handler, self._http_guard),
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            guard=self._http_guard,
            **plain._kwargs,
        )


@dataclass(frozen=True)
class ServedApp:
    runner: web.AppRunner
    port: int
    stats: HttpStats


@contextlib.asynccontextmanager
async def serve_app(
    app: web.Application,
    *,
    host: str,
    port: int,
    limits: HttpLimits,
    render_error: ErrorRenderer,
    shutdown_timeout: float,
    handler_cancellation: bool = False,
    reuse_address: bool | None = None,
) -> AsyncIterator[ServedApp]:
    """Serve ``app`` on ``host:port`` (0: a free port) until the block exits."""
    guard = _Guard(limits, render_error, HttpStats())
    runner = _GuardedAppRunner(
        app,
        guard=guard,
        access_log=None,  # an access log would carry tokens and signatures (query strings)
        handle_signals=False,
        shutdown_timeout=shutdown_timeout,
        handler_cancellation=handler_cancellation,
        keepalive_timeout=limits.idle_timeout_s,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=reuse_address)
        await site.start()
        yield ServedApp(runner, int(runner.addresses[0][1]), guard.stats)
    finally:
        await runner.cleanup()


def check_aiohttp_assumptions() -> None:
    """Raise :class:`RuntimeError` naming what moved if aiohttp no longer has the private
    names this module relies on."""
    problems = [
        f"RequestHandler.{name}"
        for name in ("_messages", "_request_count", "_request_in_progress")
        if name not in RequestHandler.__slots__
    ]
    problems += [
        f"web.Server.{name}"
        for name in ("_loop", "_kwargs")
        if name not in web.Server.__init__.__code__.co_names
    ]
    if not any("_loop" in getattr(c, "__slots__", ()) for c in RequestHandler.__mro__):
        problems.append("RequestHandler._loop")
    if not callable(getattr(web.AppRunner, "_make_server", None)):
        problems.append("web.AppRunner._make_server")
    for name in ("handle_error", "log_exception", "data_received", "connection_made"):
        if not callable(getattr(RequestHandler, name, None)):
            problems.append(f"RequestHandler.{name}")
    if problems:
        raise RuntimeError(
            "sim.shared.httpserver relies on aiohttp internals that changed: " + ", ".join(problems)
        )


check_aiohttp_assumptions()
