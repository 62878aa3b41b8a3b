"""An awaitable idle point of the event loop: ``await wait_idle()`` returns once nothing
in this process can make progress without a timer or a peer outside it.

What the harness means by "what the clock woke has run" (docs/stack.md): after
``ManualClock.advance``, the timers' callbacks have run synchronously, and the tasks
they woke or started, the sockets those tasks wrote to (in-process peers: the broker,
the AppServer, the SDK) and the thread-pool jobs they started (token stores, password
hashes) run until everything waits again.  This is Trio's
``wait_all_tasks_blocked()`` for asyncio, which has no public equivalent.

How: the loop is idle when, for two loop iterations in a row, the only callback it ran
was ours -- no other ready callback, no socket that ``select`` found readable, no due
timer -- and no job of the default executor is in flight.  The first quiet iteration
can still follow one in which another callback wrote to a socket; the second is then
the one whose ``select`` would have seen it.

Executor jobs are counted by a :class:`~concurrent.futures.ThreadPoolExecutor`
installed as the loop's default executor (:func:`track_loop`), whose jobs count as
finished only after their result was handed to the loop.

The one private name this needs, ``BaseEventLoop._ready`` (the deque of ready
callbacks, unchanged since Python 3.4), is read here and nowhere else; importing this
module checks that it still exists, so a Python that changed it fails at collection
time, not inside a test.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .errors import LoopNotIdle

__all__ = ["LoopNotIdle", "track_loop", "wait_idle"]


def _ready_queue(loop: asyncio.AbstractEventLoop) -> collections.deque[Any]:
    ready = getattr(loop, "_ready", None)
    if not isinstance(ready, collections.deque):
        raise LoopNotIdle(
            f"{type(loop).__name__} has no ready queue to watch: wait_idle() needs "
            "asyncio's own event loop (not uvloop)"
        )
    return ready


def _check_assumptions() -> None:
    loop = asyncio.new_event_loop()
    try:
        _ready_queue(loop)
    except LoopNotIdle as exc:
        raise ImportError(f"sim.harness.idle: asyncio changed: {exc}") from None
    finally:
        loop.close()


_check_assumptions()


class _TrackingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The default executor, counting jobs until their result reached the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__(thread_name_prefix="asyncio")
        self._loop = loop
        self._lock = threading.Lock()
        self.in_flight = 0
        self.drained = asyncio.Event()
        self.drained.set()

    def _settled(self) -> None:  # on the loop thread
        with self._lock:
            self.in_flight -= 1
            if self.in_flight == 0:
                self.drained.set()

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        outer: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            self.in_flight += 1
            self.drained.clear()

        def run() -> None:
            try:
                if not outer.set_running_or_notify_cancel():
                    return
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    outer.set_exception(exc)
                else:
                    # Runs outer's callbacks here, in order: asyncio's hand-over of the
                    # result to the loop (call_soon_threadsafe) is queued before ours.
                    outer.set_result(result)
            finally:
                # A closed loop (RuntimeError) has nobody waiting any more.
                with contextlib.suppress(RuntimeError):
                    self._loop.call_soon_threadsafe(self._settled)

        super().submit(run)
        return outer


_TRACKED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _TrackingExecutor] = (
    weakref.WeakKeyDictionary()
)


def track_loop(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Install the counting default executor on ``loop`` (the running one), once.
    Jobs submitted to a default executor installed earlier are not seen: call this
    before the parts start (the stack does)."""
    loop = loop or asyncio.get_running_loop()
    if loop not in _TRACKED:
        executor = _TrackingExecutor(loop)
        loop.set_default_executor(executor)
        _TRACKED[loop] = executor


async def wait_idle(
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - a hang guard, not a cancel scope
    max_turns: int | None = None,
) -> bool:
    """Return True once the running loop is idle (see the module docstring).

    A loop that never rests (a task of the caller's keeps it busy) raises
    :class:`LoopNotIdle` after ``timeout`` real seconds -- or, with ``max_turns``,
    returns False after that many busy loop turns: a count of turns does not depend on
    the machine's load, and the stack's own chains of wake-ups are far shorter (40 turns
    at most in the test suite)."""
    loop = asyncio.get_running_loop()
    ready = _ready_queue(loop)
    track_loop(loop)
    executor = _TRACKED[loop]
    deadline = time.monotonic() + timeout
    quiet = turns = 0
    while quiet < 2:
        if executor.in_flight:
            quiet = 0
            try:
                await asyncio.wait_for(executor.drained.wait(), deadline - time.monotonic())
            except TimeoutError:
                raise LoopNotIdle(
                    f"{executor.in_flight} thread-pool job(s) still running after {timeout:g} s"
                ) from None
            continue
        await asyncio.sleep(0)
        if ready or executor.in_flight:
            quiet = 0
            turns += 1
            if max_turns is not None and turns >= max_turns:
                return False
            if time.monotonic() > deadline:
                raise LoopNotIdle(
                    f"the event loop did not go idle within {timeout:g} s: something keeps "
                    "it busy without waiting (a tight loop of asyncio.sleep(0)?)"
                )
        else:
            quiet += 1
    return True
