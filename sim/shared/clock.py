"""One clock for every component (SPEC §2).

Core code never reads wall time: it is handed a :class:`Clock` (or a ``now``
taken from one).  Three implementations:

* :class:`SystemClock` -- real time (the default);
* :class:`ScaledClock` -- ``virtual = epoch + (wall - wall0) * scale``; every process
  of one stack is given the same ``epoch_ms``/``wall0`` and ``scale`` so that they agree;
* :class:`ManualClock` -- for in-process tests: time stands still until
  :meth:`ManualClock.advance`, which fires every timer that falls due, in order, at once.

Every clock starts at the real "now" unless it is given an epoch: a stack on a manual or
scaled clock begins where a client computing ``expireTime`` from its own wall clock (as
the provider's demos do) expects it.  Tests that need a fixed instant pass one.

The protocol, :class:`ClockSpec` and the shared flags live in the pure
:mod:`sim.shared.clockspec` and are re-exported here.

Timers (``call_at``/``call_later``/``sleep``) are expressed in *virtual* seconds; the
real clocks map them onto the running asyncio loop, the manual clock keeps its own heap.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from .clockspec import (
    Clock,
    ClockMode,
    ClockSpec,
    TimerHandle,
    add_clock_arguments,
    clock_spec_from_args,
)

__all__ = [
    "Clock",
    "ClockMode",
    "ClockSpec",
    "ManualClock",
    "ScaledClock",
    "SystemClock",
    "TimerHandle",
    "add_clock_arguments",
    "clock_from_spec",
    "clock_spec_from_args",
]


class _LoopClock:
    """A clock whose virtual time is a linear function of the real clock."""

    _scale: float = 1.0

    def now(self) -> float:  # pragma: no cover - overridden
        raise NotImplementedError

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    @property
    def scale(self) -> float:
        return self._scale

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, delay) / self._scale, callback)

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        return self.call_later(when - self.now(), callback)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self._scale)

    async def sleep_until(self, when: float) -> None:
        # Re-check after waking: the real clock can run slightly early on some loops.
        while (remaining := when - self.now()) > 0:  # noqa: ASYNC110 - a deadline, not an event
            await asyncio.sleep(remaining / self._scale)


class SystemClock(_LoopClock):
    mode: ClockMode = "system"

    def now(self) -> float:
        return time.time()


class ScaledClock(_LoopClock):
    """``virtual = epoch + (wall - wall0) * scale``.

    ``wall0`` defaults to ``epoch``: a stack started "now" with scale 60 begins at the
    real time and runs sixty times faster.  Processes handed the same three numbers agree.
    """

    mode: ClockMode = "scaled"

    def __init__(self, scale: float, *, epoch: float | None = None, wall0: float | None = None):
        if not scale > 0:
            raise ValueError(f"time scale must be > 0, got {scale!r}")
        self._scale = float(scale)
        now = time.time()
        self.epoch = now if epoch is None else float(epoch)
        # With only an epoch, virtual time is taken to have started at real time ``epoch``.
        self.wall0 = float(wall0) if wall0 is not None else self.epoch

    def now(self) -> float:
        return self.epoch + (time.time() - self.wall0) * self._scale


@dataclass(order=True)
class _ManualTimer:
    when: float
    seq: int
    callback: Callable[[], object] | None

    def cancel(self) -> None:
        self.callback = None


class ManualClock:
    """Time that moves only when told to.

    ``advance(s)`` moves time forward, firing due timers in time order; each timer sees
    ``now()`` equal to its own due time, so a chain of timers behaves as it would in real
    time.  Callbacks run synchronously inside ``advance``; coroutines waiting in
    :meth:`sleep` are woken and run on the loop's next iterations.
    """

    mode: ClockMode = "manual"
    scale: float = 1.0

    def __init__(self, start: float | None = None):
        #: ``start`` None: the real now (see the module docstring).
        self._now = time.time() if start is None else float(start)
        self._timers: list[_ManualTimer] = []
        self._seq = itertools.count()
        self._listeners: list[Callable[[float], object]] = []

    def now(self) -> float:
        return self._now

    def now_ms(self) -> int:
        return int(self._now * 1000)

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        timer = _ManualTimer(float(when), next(self._seq), callback)
        heapq.heappush(self._timers, timer)
        return timer

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        return self.call_at(self._now + max(0.0, delay), callback)

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + max(0.0, seconds))

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        handle = self.call_at(when, wake)
        try:
            await fut
        finally:
            handle.cancel()

    def on_advance(self, listener: Callable[[float], object]) -> None:
        """Call ``listener(now)`` after every :meth:`advance` (e.g. to wake pollers)."""
        self._listeners.append(listener)

    def pending(self) -> int:
        return sum(1 for t in self._timers if t.callback is not None)

    def advance(self, seconds: float) -> int:
        """Move time forward by ``seconds``; return how many timers fired."""
        if seconds < 0:
            raise ValueError("a manual clock cannot go backwards")
        target = self._now + seconds
        fired = 0
        while self._timers and self._timers[0].when <= target:
            timer = heapq.heappop(self._timers)
            if timer.callback is None:
                continue
            self._now = max(self._now, timer.when)
            callback, timer.callback = timer.callback, None
            callback()
            fired += 1
        self._now = target
        for listener in list(self._listeners):
            listener(self._now)
        return fired

    def set(self, when: float) -> int:
        """Jump to absolute virtual time ``when`` (never backwards)."""
        return self.advance(max(0.0, when - self._now))


def clock_from_spec(spec: ClockSpec) -> Clock:
    if spec.mode == "manual":
        return ManualClock(spec.epoch)
    if spec.mode == "scaled" or spec.scale != 1.0:
        return ScaledClock(spec.scale, epoch=spec.epoch, wall0=spec.wall0)
    return SystemClock()
