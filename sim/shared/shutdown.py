"""The one serve-until-signal of every long-running command: SIGINT (Ctrl-C) and
SIGTERM ask for a clean stop (stores closed, data flushed, exit 0).

    async with run_part(config) as part:
        print(f"listening on {part.url}", flush=True)
        await until_stopped()

:func:`stop_requested` is the same as an :class:`asyncio.Event`, for loops that do
other work while they wait.  The handlers are removed on the way out, so a second
Ctrl-C during shutdown interrupts as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable

__all__ = ["STOP_SIGNALS", "stop_requested", "until_stopped"]

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


@contextlib.asynccontextmanager
async def stop_requested() -> AsyncIterator[asyncio.Event]:
    """An event set by the first SIGINT or SIGTERM while the block runs."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def until_stopped(*also: Awaitable[object]) -> str:
    """Wait for SIGINT or SIGTERM, or for any of ``also`` to finish (e.g. the parent
    closing our stdin); return ``"signal"`` or ``"done"``.  ``also`` is cancelled when
    a signal comes first."""
    async with stop_requested() as stop:
        waiters = [asyncio.ensure_future(stop.wait()), *map(asyncio.ensure_future, also)]
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        return "signal" if waiters[0] in done else "done"
