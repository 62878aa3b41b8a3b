"""The one serve-until-signal of every long-running command: SIGINT (Ctrl-C) and
SIGTERM ask for a clean stop (stores closed, data flushed, exit 0).

    async with stop_requested() as stop, run_part(config) as part:
        print(f"listening on {part.url}", flush=True)   # ready: a SIGTERM now is handled
        await stop.wait()

The handlers are installed on entering the block, before anything announces readiness
(a signal sent right after the announcement must not kill the process), and removed on
the way out, so a second Ctrl-C during shutdown interrupts as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable

__all__ = ["STOP_SIGNALS", "StopRequest", "stop_requested"]

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by the first SIGINT or SIGTERM while :func:`stop_requested`'s block runs."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self, *also: Awaitable[object]) -> str:
        """Until a stop signal (``"signal"``), or until any of ``also`` finishes
        (``"done"``, e.g. the parent closing our stdin); the others are cancelled."""
        if not also:
            await self._event.wait()
            return "signal"
        waiters = [asyncio.ensure_future(self._event.wait()), *map(asyncio.ensure_future, also)]
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        return "signal" if waiters[0] in done else "done"


@contextlib.asynccontextmanager
async def stop_requested() -> AsyncIterator[StopRequest]:
    """Handle SIGINT and SIGTERM as a stop request while the block runs."""
    loop = asyncio.get_running_loop()
    stop = StopRequest()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
