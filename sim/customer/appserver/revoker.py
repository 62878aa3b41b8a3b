"""The revocation queue's drain: sends queued revocations upstream in the background,
never faster than the provider's revoke limit (SPEC §3b), and retries what fails.

The queue is durable (``pending_revocations``, :mod:`sim.customer.appserver.store`): a
revocation enters it in the same transaction that takes its token out of the cache,
and leaves it only once the AuthServer revoked the token, said it is dead already,
refused it for good, or the token expired (an expired token needs no revocation).  A
throttled or failed revoke is put back with a jittered backoff (its attempt count and
time are stored, so a restart keeps the schedule); it is never dropped.

:meth:`RevocationDrain.run` is the background task (an ``aiohttp`` ``cleanup_ctx`` runs
it); the rules are the pure :mod:`sim.customer.appserver.revocation`.  Time comes from
the clock handed in, so on the manual clock the queue moves only when time is advanced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Iterable

from sim.shared.clock import Clock

from .config import AppServerConfig
from .errors import UpstreamError
from .metrics import Metrics
from .revocation import (
    Outcome,
    PendingRevocations,
    Revocation,
    SendWindow,
    backoff_s,
    outcome_of,
)
from .store import Store
from .upstream import Revoker

__all__ = ["RevocationDrain"]

log = logging.getLogger(__name__)

#: Revokes waiting for an answer at once.  The send window bounds the rate; this bounds
#: what a hanging AuthServer can hold (each call ends at ``upstream_timeout_s``).
MAX_IN_FLIGHT = 4


class RevocationDrain:
    def __init__(
        self,
        config: AppServerConfig,
        clock: Clock,
        store: Store,
        revoker: Revoker,
        metrics: Metrics,
        rng: random.Random,
    ):
        self.config = config
        self.clock = clock
        self.store = store
        self.revoker = revoker
        self.metrics = metrics
        self.rng = rng
        self.window = SendWindow(config.revoke_rate)
        self.pending = PendingRevocations(store.load_pending())
        #: No send before this (virtual seconds): set by a throttling answer, since the
        #: provider's limit is per account, not per token.
        self.paused_until = 0.0
        #: While the drain waits: the virtual time it waits for (``math.inf``: for new
        #: work or an answer).  ``None`` while it works.  For inspection and tests.
        self.parked_until: float | None = None
        self._wake = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        """Revocations not settled yet (queued or in flight)."""
        return len(self.pending)

    def add(self, revocations: Iterable[Revocation]) -> None:
        """Queue revocations the store has just committed."""
        if any([self.pending.add(r) for r in revocations]):
            self._wake.set()

    # -- the background task -----------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the revocation drain failed; it resumes in a while")
                await self._park(self.clock.now() + self.config.revoke_retry_s)

    async def _step(self) -> None:
        """Send the next due revocation, or wait until one can go."""
        self._wake.clear()
        now = self.clock.now()
        item = self.pending.peek()
        if item is None or self.pending.in_flight >= MAX_IN_FLIGHT:
            await self._park(math.inf)  # until new work or an answer
            return
        if item.expire_ms <= self.clock.now_ms():
            self.pending.pop()
            self._settle(item, None)
            return
        at = max(item.not_before_ms / 1000, self.paused_until, self.window.next_slot(now))
        if at > now:
            await self._park(at)
            return
        self.pending.pop()
        self.window.book(now)
        task = asyncio.get_running_loop().create_task(self._send(item))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _park(self, until: float) -> None:
        timer = None if math.isinf(until) else self.clock.call_at(until, self._wake.set)
        self.parked_until = until
        try:
            await self._wake.wait()
        finally:
            self.parked_until = None
            if timer is not None:
                timer.cancel()

    async def stop(self) -> None:
        """Cancel the sends in flight (their rows stay queued for the next start)."""
        sends = list(self._sends)
        for task in sends:
            task.cancel()
        for task in sends:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- one revoke --------------------------------------------------------------------

    async def _send(self, item: Revocation) -> None:
        try:
            try:
                await self.revoker.revoke(item.token)
            except UpstreamError as exc:
                self._answered(item, outcome_of(exc), exc)
            else:
                self._answered(item, "ok", None)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug or the store failing: keep the revocation (its row is still there).
            log.exception("a queued revocation failed locally; it stays queued")
        finally:
            self._wake.set()

    def _answered(self, item: Revocation, outcome: Outcome, error: UpstreamError | None) -> None:
        self.metrics.upstream_revokes.labels(outcome).inc()
        if outcome in ("ok", "gone", "refused"):
            if outcome == "refused" and error is not None:
                log.warning("the AuthServer refused a revocation for good: %s", error.message)
            self._settle(item, outcome)
            return
        now = self.clock.now()
        cfg = self.config
        if outcome == "throttled":
            base = self.window.limit.window_s
        else:
            base = cfg.revoke_retry_s
            if error is not None:
                self.metrics.upstream_errors.labels("revoke", error.reason).inc()
        delay = backoff_s(item.attempts + 1, base, max(base, cfg.revoke_retry_max_s), self.rng)
        retry = item.retry_at(math.ceil((now + delay) * 1000))
        if outcome == "throttled":
            # The limit is the account's: hold every revoke, not only this one.
            self.paused_until = max(self.paused_until, retry.not_before_ms / 1000)
        self.store.reschedule(retry)
        self.pending.retry(retry)
        log.info(
            "revocation %s (attempt %d); retry in %.1f s",
            outcome,
            retry.attempts,
            delay,
        )

    def _settle(self, item: Revocation, outcome: Outcome | None) -> None:
        """Done with ``item``: revoked or dead (``outcome``), or expired (``None``)."""
        self.store.settle(item.token)
        self.pending.done(item.token)
        if outcome is None:
            self.metrics.revocations_expired.inc()
