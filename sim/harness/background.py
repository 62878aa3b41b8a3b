"""The one stack on an event loop of its own, in a background thread.

For callers that have no loop to lend it, or whose loops come and go: synchronous code
(paho clients, Hypothesis rules) and a test session whose tests each run on their own
loop (the pytest plugin's session-scoped stack).  They reach the stack over its sockets,
and run coroutines on its loop through :meth:`BackgroundStack.call`.

    with BackgroundStack(StackConfig(data_dir=None).with_free_ports()) as stack:
        stack.authserver_url, stack.appserver_url, stack.broker_url
        stack.call(lambda h: h.admin.authserver.add_fault({...}))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from .errors import StackError
from .stack import HandleView, StackConfig, StackHandle, run_stack

__all__ = ["BackgroundStack"]

T = TypeVar("T")

#: Real seconds a start or a stop may take before it is reported as hung.
START_TIMEOUT_S = 60.0


class BackgroundStack(HandleView):
    """:func:`~sim.harness.stack.run_stack` on a loop in a daemon thread (module docstring)."""

    def __init__(self, config: StackConfig):
        self.config = config
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="mqtt-token-sim-stack", daemon=True
        )
        self._handle: StackHandle | None = None
        self._stop: asyncio.Event | None = None
        self._running: Future[None] | None = None

    @property
    def handle(self) -> StackHandle:
        if self._handle is None:
            raise StackError("the background stack is not running")
        return self._handle

    def start(self) -> BackgroundStack:
        self._thread.start()
        started: Future[StackHandle] = Future()

        async def serve() -> None:
            self._stop = asyncio.Event()
            try:
                async with run_stack(self.config) as handle:
                    started.set_result(handle)
                    await self._stop.wait()
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                raise

        self._running = asyncio.run_coroutine_threadsafe(serve(), self.loop)
        try:
            self._handle = started.result(START_TIMEOUT_S)
        except BaseException:
            self._shut_loop()
            raise
        return self

    def call(
        self,
        fn: Callable[[StackHandle], Awaitable[T]],
        timeout: float = 30.0,
    ) -> T:
        """Run ``fn(handle)`` on the stack's loop; return its result (or raise its error)."""

        async def run() -> T:
            return await fn(self.handle)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def stop(self) -> None:
        """Stop the parts (data flushed), then the loop and its thread."""
        if self._running is None:
            return
        stop, running, self._running = self._stop, self._running, None
        if stop is not None:
            self.loop.call_soon_threadsafe(stop.set)
        try:
            running.result(START_TIMEOUT_S)
        finally:
            self._handle = None
            self._shut_loop()

    def _shut_loop(self) -> None:
        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(drain(), self.loop).result(START_TIMEOUT_S)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(START_TIMEOUT_S)
        self.loop.close()

    def __enter__(self) -> BackgroundStack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
