"""Wakes ``/admin/feed`` long polls when the engine publishes an event (shell side)."""

from __future__ import annotations

import asyncio

__all__ = ["FeedSignal"]


class FeedSignal:
    """A broadcast "something changed": waiters wake on the next :meth:`notify`."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()
        self.closing = False

    def notify(self, _event: object = None) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        self._waiters.clear()

    def close(self) -> None:
        """Server shutdown: wake every poller now, and make new polls answer at once."""
        self.closing = True
        self.notify()

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109 - a poll deadline
        """True when notified, False at the timeout."""
        if self.closing:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(fut)
