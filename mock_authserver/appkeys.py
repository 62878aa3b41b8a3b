"""The typed ``web.AppKey``s of the AuthServer app, in one place (STYLE.md "aiohttp")."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from sim.shared.clock import Clock

from .config import AuthServerConfig
from .ttl import TTLEngine

if TYPE_CHECKING:
    from .auth import NonceStore
    from .faults import FaultSet
    from .feedwait import FeedSignal
    from .metrics import Metrics
    from .ratelimit import RateLimiter
    from .store import GroupCommit

__all__ = [
    "CLOCK",
    "CODE",
    "COMMIT",
    "CONFIG",
    "ENGINE",
    "FAULTS",
    "FEED",
    "LIMITER",
    "METRICS",
    "MONOTONIC",
    "NONCES",
    "OPERATION",
    "REQUEST_ID",
    "WALL",
]

CONFIG = web.AppKey("config", AuthServerConfig)
CLOCK = web.AppKey("clock", Clock)
ENGINE = web.AppKey("engine", TTLEngine)
#: Real wall time (seconds) for OpenAPI timestamp checks: the SDKs stamp real time even
#: when the server runs a scaled or manual clock.
WALL: web.AppKey[Callable[[], float]] = web.AppKey("wall")
#: Real monotonic seconds, for throttling and injected latency.
MONOTONIC: web.AppKey[Callable[[], float]] = web.AppKey("monotonic")
NONCES: web.AppKey[NonceStore] = web.AppKey("nonces")
FAULTS: web.AppKey[FaultSet] = web.AppKey("faults")
FEED: web.AppKey[FeedSignal] = web.AppKey("feed")
#: The provider's API rate limits per account (SPEC §3b), on the server's clock.
LIMITER: web.AppKey[RateLimiter] = web.AppKey("limiter")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
#: Awaited by apply handlers before answering: the issued token is then on disk.
COMMIT: web.AppKey[GroupCommit] = web.AppKey("commit")

# Per-request state: the operation being served (metrics label; None once counted),
# the answer's code (metrics label) and the OpenAPI RequestId.
OPERATION: web.RequestKey[str | None] = web.RequestKey("operation")
CODE: web.RequestKey[str] = web.RequestKey("code")
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
