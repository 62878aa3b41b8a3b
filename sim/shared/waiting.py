"""The one "wait until" of the project: poll a condition with a deadline.

For conditions that have no event to wait on (a counter another task bumps, a state
reached over the network).  The deadline is a guard against a hang, never a verdict:
pick it generous, and decide on the condition.  Failing, it names what it waited for::

    await wait_until(lambda: client.state == "refused", timeout=10, what="the client refused")
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

__all__ = ["WaitTimeout", "wait_until"]

#: Real seconds between two polls: short enough not to slow a test down, long enough
#: not to starve the tasks that make the condition true.
DEFAULT_INTERVAL_S = 0.005


class WaitTimeout(AssertionError):
    """A condition did not become true in time.  An :class:`AssertionError`, so that a
    test fails (rather than errors) on it; ``what`` and ``timeout`` say which."""

    def __init__(self, what: str, timeout: float):
        super().__init__(f"timed out after {timeout:g} s waiting for {what}")
        self.what = what
        self.timeout = timeout


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float,  # noqa: ASYNC109 - a guard the error message names, not a cancel scope
    what: str,
    interval: float = DEFAULT_INTERVAL_S,
    between: Callable[[], object] | None = None,
) -> None:
    """Return once ``predicate()`` is true; raise :class:`WaitTimeout` after ``timeout``
    real seconds.  ``predicate`` may be a coroutine function.  ``between`` runs after
    each false poll (e.g. to advance a manual clock so that backoff timers fire)."""
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise WaitTimeout(what, timeout)
        if between is not None:
            between()
        await asyncio.sleep(interval)
