"""Keep-alive (F3): a client silent for 1.5 x its keep-alive is dropped (MQTT-3.1.2-24).

Real time, whatever virtual clock the broker runs on: the client pings by its own clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["KeepAlive"]


class KeepAlive:
    """One timer per connection, re-armed lazily: a packet costs one clock read."""

    __slots__ = ("_expired", "_last", "_loop", "_timeout", "_timer")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, keep_alive: int, expired: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._timeout = keep_alive * 1.5
        self._expired = expired
        self._last = loop.time()
        self._timer: asyncio.TimerHandle | None = loop.call_later(self._timeout, self._check)

    def seen(self) -> None:
        """A packet arrived."""
        self._last = self._loop.time()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        idle = self._loop.time() - self._last
        if idle >= self._timeout:
            self._timer = None
            self._expired()
        else:
            self._timer = self._loop.call_later(self._timeout - idle, self._check)
