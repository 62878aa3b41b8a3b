"""Sampling counters while a scenario runs (the thin I/O shell around ``report``).

:class:`TimelineSampler` calls a probe every ``interval_s`` *real* seconds (the figures of a
scenario are about real elapsed time, whatever clock the stack runs on) and keeps the
samples as :class:`~scenarios.report.TimelinePoint`; :meth:`TimelineSampler.mark` labels
an instant (a kick, the start of an outage).  The probe may be a plain function or a
coroutine function (e.g. one that reads the AuthServer's ``/admin/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType

from .report import Mark, TimelinePoint

__all__ = ["Probe", "TimelineSampler"]

log = logging.getLogger(__name__)

Probe = Callable[[], Mapping[str, float] | Awaitable[Mapping[str, float]]]


class TimelineSampler:
    """``async with TimelineSampler(probe, interval_s=0.1) as tl: ...`` samples at start,
    every interval and once more at exit.

    ``periodic=False``: only at start, at exit and when :meth:`sample` is called -- for a
    run on a manual clock (``monotonic`` then reads its virtual time), which samples
    after each step of time it takes."""

    def __init__(
        self,
        probe: Probe,
        *,
        interval_s: float = 0.1,
        monotonic: Callable[[], float] = time.monotonic,
        max_points: int = 20_000,
        periodic: bool = True,
    ):
        if not interval_s > 0:
            raise ValueError("interval_s must be > 0")
        self._probe = probe
        self._interval = interval_s
        self._monotonic = monotonic
        self._max_points = max_points
        self._periodic = periodic
        self._t0: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.points: list[TimelinePoint] = []
        self.marks: list[Mark] = []
        self.probe_errors = 0

    def elapsed(self) -> float:
        return 0.0 if self._t0 is None else self._monotonic() - self._t0

    def mark(self, label: str) -> None:
        self.marks.append(Mark(self.elapsed(), label))

    async def sample(self) -> None:
        t = self.elapsed()
        try:
            result = self._probe()
            values = await result if inspect.isawaitable(result) else result
        except Exception as exc:  # a failed probe costs a point, never the scenario
            self.probe_errors += 1
            log.debug("timeline probe failed: %r", exc)
            return
        if len(self.points) < self._max_points:
            self.points.append(TimelinePoint(t, {k: float(v) for k, v in values.items()}))

    async def _run(self) -> None:
        assert self._t0 is not None
        n = 1
        while True:
            # Sample on a fixed grid so a slow probe does not stretch the intervals.
            delay = self._t0 + n * self._interval - self._monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.sample()
            n = max(n + 1, int((self._monotonic() - self._t0) / self._interval) + 1)

    async def __aenter__(self) -> TimelineSampler:
        self._t0 = self._monotonic()
        await self.sample()
        if self._periodic:
            self._task = asyncio.create_task(self._run(), name="timeline-sampler")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.sample()
