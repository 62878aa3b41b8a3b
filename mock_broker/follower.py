"""Follows the AuthServer: bootstrap once, then long-poll the feed (CONTRACTS.md).

The feed answers as soon as there is an event, so a revocation reaches the authority,
and through it every live session, well within SPEC §3c's one second.  Answers are read
as the typed documents of :mod:`sim.shared.protocol.feed`.  Network trouble and
malformed answers are retried after a short jittered wait (real time), capped at
:data:`RETRY_CAP_S` however long the AuthServer has been gone: a revocation made right
after it comes back must still arrive within the second (a longer backoff once hid the
return for up to 7.5 s).  The last known keys keep verifying tokens offline meanwhile.
A retry is one HTTP request to a loopback or LAN AuthServer: four a second cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from sim.shared.clock import Clock
from sim.shared.protocol import Bootstrap, FeedDocumentError, FeedPage

from .authority import TokenAuthority
from .errors import FeedError, FeedReset
from .metrics import BrokerMetrics

__all__ = ["RETRY_CAP_S", "RETRY_FIRST_S", "FeedFollower", "retry_wait"]

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.05
RETRY_CAP_S = 0.25


def retry_wait(failures: int, draw: float) -> float:
    """Real seconds to wait after ``failures`` failed attempts in a row (``>= 1``), given a
    uniform ``draw`` in [0, 1): doubling from :data:`RETRY_FIRST_S`, capped at
    :data:`RETRY_CAP_S`, jittered down to half so that brokers do not retry in step."""
    base = min(RETRY_CAP_S, RETRY_FIRST_S * (1 << min(failures - 1, 16)))
    return base * (0.5 + draw / 2)


class FeedFollower:
    def __init__(
        self,
        base_url: str,
        authority: TokenAuthority,
        *,
        clock: Clock,
        poll_timeout: float = 10.0,
        metrics: BrokerMetrics | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.authority = authority
        self.clock = clock
        self.poll_timeout = poll_timeout
        self.metrics = metrics
        self._sleep = sleep  # how it waits between retries (tests record the waits)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self.polls = 0

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def start(self, wait: float = 10.0) -> bool:
        """Start following; wait up to ``wait`` real seconds for the first bootstrap."""
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)
        )
        self._task = asyncio.create_task(self._run(), name="authserver-feed")
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait)
        if not self.ready:
            log.warning("no bootstrap from %s yet; CONNECTs wait for it", self.base_url)
        return self.ready

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._http is not None:
            await self._http.close()

    async def _get(self, path: str, params: dict[str, str], seconds: float) -> Any:
        assert self._http is not None
        async with self._http.get(
            self.base_url + path,
            params=params,
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as response:
            if response.status != 200:
                raise FeedError(f"{path} answered HTTP {response.status}")
            try:
                return await response.json(content_type=None)
            except ValueError:
                raise FeedError(f"{path} answered something that is not JSON") from None

    async def bootstrap(self) -> None:
        doc = await self._get("/admin/broker/bootstrap", {}, 10.0)
        self.authority.load_bootstrap(Bootstrap.from_json(doc))
        self._count("bootstrap")
        self._ready.set()

    async def poll_once(self) -> None:
        params = {"after": str(self.authority.seq), "timeout": f"{self.poll_timeout:g}"}
        doc = await self._get("/admin/feed", params, self.poll_timeout + 10.0)
        self.authority.apply_feed(FeedPage.from_json(doc))
        self.polls += 1
        self._count("events")
        self.authority.prune(self.clock.now_ms())

    def _count(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.feed_events.labels(kind).inc()

    async def _run(self) -> None:
        failures = 0
        need_bootstrap = True
        while True:
            try:
                if need_bootstrap:
                    await self.bootstrap()
                    need_bootstrap = False
                await self.poll_once()
                if failures:
                    log.info("AuthServer feed: back after %d failed attempts", failures)
                failures = 0
                continue
            except FeedReset:
                need_bootstrap = True
                continue
            except (
                FeedError,
                FeedDocumentError,
                aiohttp.ClientError,
                TimeoutError,
                OSError,
            ) as exc:
                # Once per outage: the retries come every quarter second.
                level = logging.WARNING if not failures else logging.DEBUG
                log.log(level, "AuthServer feed: %s; retrying", exc or type(exc).__name__)
            except Exception:  # a bug: say so loudly, but keep following
                log.exception("AuthServer feed: unexpected error; retrying")
            self._count("error")
            failures += 1
            await self._sleep(retry_wait(failures, random.random()))
