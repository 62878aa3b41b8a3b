"""Many deadlines on one clock timer (the broker's token notices and expiries).

A fleet of connections each holding one or two tokens would otherwise keep one or two
event-loop timers per connection, created and cancelled on every connect; here a
connect costs a heap push and a disconnect a flag.  Time is the shared clock's, so a
:class:`~sim.shared.clock.ManualClock` ``advance()`` fires every deadline that falls due.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from heapq import heappush
from typing import Any

from sim.shared.clock import Clock, TimerHandle

__all__ = ["Deadline", "DeadlineQueue"]

# A deadline is a list ``[when, seq, callback, *args]``: heap order is compared in C
# (``seq`` is unique, so callbacks are never compared); cancelling sets the callback to
# None.  The arguments ride in the same list: one allocation per deadline, no partial.
Deadline = list[Any]
_WHEN, _SEQ, _CALLBACK, _ARGS = 0, 1, 2, 3


class DeadlineQueue:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[Deadline] = []
        self._seq = itertools.count()
        self._live = 0
        self._timer: TimerHandle | None = None
        self._armed_at: float | None = None

    def __len__(self) -> int:
        return self._live

    def push(self, when: float, callback: Callable[..., object], *args: Any) -> Deadline:
        """Call ``callback(*args)`` once the clock reaches ``when``."""
        deadline: Deadline = [when, next(self._seq), callback, *args]
        heappush(self._heap, deadline)
        self._live += 1
        armed_at = self._armed_at
        if armed_at is None or when < armed_at:
            self._arm()
        return deadline

    def cancel(self, deadline: Deadline) -> None:
        if deadline[_CALLBACK] is None:
            return
        deadline[_CALLBACK:] = (None,)  # and drop the arguments: nothing kept alive
        self._live -= 1
        if len(self._heap) > 64 and len(self._heap) > 4 * self._live:
            self._heap = [d for d in self._heap if d[_CALLBACK] is not None]
            heapq.heapify(self._heap)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_at = None, None
        self._heap.clear()
        self._live = 0

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_at = None, None
        while self._heap and self._heap[0][_CALLBACK] is None:
            heapq.heappop(self._heap)
        if self._heap:
            self._armed_at = self._heap[0][_WHEN]
            self._timer = self.clock.call_at(self._armed_at, self._fire)

    def _fire(self) -> None:
        self._timer, self._armed_at = None, None
        now = self.clock.now()
        while self._heap and self._heap[0][_WHEN] <= now:
            deadline = heapq.heappop(self._heap)
            callback = deadline[_CALLBACK]
            if callback is None:
                continue
            args = deadline[_ARGS:]
            deadline[_CALLBACK:] = (None,)
            self._live -= 1
            callback(*args)
        if self._timer is None:
            self._arm()
