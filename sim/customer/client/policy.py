"""What a token-aware client does, and when (SPEC §6): the pure core of the SDK.

No I/O, no clock, no event loop: every function is fed ``now`` (virtual seconds) and,
where chance is involved, a seeded :class:`random.Random`.  The planner
(:mod:`sim.customer.client.planner`) composes them into plans; the shell
(:mod:`sim.customer.client.client`) only carries the plans out.

* :func:`decide_refresh` -- a token, its expiry, the margin, the client's mode
  (``upload`` or ``reconnect``) → wait until *t*, refresh now, or the token is gone;
* :func:`after_same_token` -- the AppServer answered with the token we already hold
  (its cache still finds it fresh enough): when to ask again;
* :func:`react_to_invalid` -- what an ``$SYS/tokenInvalidNotice`` code means for the
  stored token;
* :class:`Backoff` -- reconnect delays: exponential, capped, with FULL jitter
  (``uniform(0, min(cap, base * factor**attempt))``), so that a thousand clients that
  lost the broker at the same instant do not come back in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from sim.shared.protocol import InvalidCode

__all__ = [
    "Backoff",
    "InvalidReaction",
    "RefreshAction",
    "RefreshDecision",
    "RefreshMode",
    "RefreshPolicy",
    "after_expire_notice",
    "after_same_token",
    "decide_refresh",
    "is_reusable",
    "react_to_invalid",
]

RefreshMode = Literal["upload", "reconnect"]


@dataclass(frozen=True)
class RefreshPolicy:
    """When a client refreshes its token.

    ``margin``: refresh this many seconds before expiry (the provider's expire notice
    comes 5 min ahead by default, so 300 s keeps clients ahead of it).
    ``spread``: refresh up to this many further seconds early, drawn per client, so
    that a fleet whose tokens were issued together does not refresh together.
    ``min_validity``: a stored token with less life than this is not reused on restart.
    ``retry_floor``: when the AppServer keeps returning the same token, never wait past
    ``expiry - retry_floor`` before asking again.
    ``reuse``: keep a valid token for the next session and read the store at start
    (SPEC §6).  ``False`` is a *defect switch* of the scenarios (docs/scenarios.md
    "Defects"), never a setting for real use: a client that asks the AppServer before
    every CONNECT, as a device without token persistence does.
    """

    mode: RefreshMode = "upload"
    margin: float = 300.0
    spread: float = 0.0
    min_validity: float = 60.0
    retry_floor: float = 5.0
    reuse: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("upload", "reconnect"):
            raise ValueError(f"refresh mode must be 'upload' or 'reconnect', got {self.mode!r}")
        for name in ("margin", "spread", "min_validity", "retry_floor"):
            value = getattr(self, name)
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")


class RefreshAction(StrEnum):
    WAIT = "wait"  # nothing to do before ``at``
    REFRESH = "refresh"  # refresh now, the client's way (``mode``)
    EXPIRED = "expired"  # the token is dead: ask again, then (re)connect


@dataclass(frozen=True)
class RefreshDecision:
    action: RefreshAction
    at: float  # when to act (== now unless WAIT)
    mode: RefreshMode


def decide_refresh(
    now: float, expire_at: float, policy: RefreshPolicy, *, jitter: float = 0.0
) -> RefreshDecision:
    """Decide what to do about a token that expires at ``expire_at``.

    ``jitter`` in [0, 1) is this client's share of ``policy.spread`` (drawn once per
    token by the shell, so the decision is repeatable).
    """
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
    if expire_at <= now:
        return RefreshDecision(RefreshAction.EXPIRED, now, "reconnect")
    refresh_at = expire_at - policy.margin - policy.spread * jitter
    if refresh_at <= now:
        return RefreshDecision(RefreshAction.REFRESH, now, policy.mode)
    return RefreshDecision(RefreshAction.WAIT, refresh_at, policy.mode)


def after_same_token(now: float, expire_at: float, policy: RefreshPolicy) -> float:
    """When to ask again after the AppServer returned the token we already hold.

    Its cache only renews a token once less than *its* margin is left, which may be
    smaller than ours: halve the remaining time each try, but keep ``retry_floor``
    seconds before expiry (and at least one second between asks).
    """
    remaining = expire_at - now
    wait = max(1.0, remaining / 2)
    return min(now + wait, max(now + 1.0, expire_at - policy.retry_floor))


def after_expire_notice(
    now: float, expire_at: float, policy: RefreshPolicy, *, jitter: float = 0.0
) -> float:
    """When to refresh once the broker's ``$SYS/tokenExpireNotice`` arrived.

    Within ``spread * jitter`` of the notice (at once when ``spread`` is 0), and never
    later than the refresh already planned: tokens issued together get their notices
    together, and a fleet must not answer them together.
    """
    planned = decide_refresh(now, expire_at, policy, jitter=jitter).at
    return min(planned, now + policy.spread * jitter)


def is_reusable(now: float, expire_at: float, policy: RefreshPolicy) -> bool:
    """A persisted token is worth connecting with only if it outlives the minimum."""
    return expire_at - now >= max(policy.min_validity, 0.0)


@dataclass(frozen=True)
class InvalidReaction:
    """What a ``$SYS/tokenInvalidNotice`` means for the client."""

    discard_token: bool  # the stored token is dead: delete it and ask the AppServer
    reason: str


_INVALID: dict[InvalidCode, InvalidReaction] = {
    InvalidCode.FORGED: InvalidReaction(True, "token forged"),
    InvalidCode.EXPIRED: InvalidReaction(True, "token expired"),
    InvalidCode.REVOKED: InvalidReaction(True, "token revoked"),
    InvalidCode.BAD_SIGNATURE: InvalidReaction(True, "bad signature"),
    InvalidCode.ACCOUNT_INVALID: InvalidReaction(True, "account invalid"),
    # 4 and 5: the token is fine, the client used a topic or action outside it. A new
    # token from the same grants would not help; reconnect with the one we have.
    InvalidCode.RESOURCE_MISMATCH: InvalidReaction(False, "resource outside the token"),
    InvalidCode.PERMISSION_MISMATCH: InvalidReaction(False, "permission type mismatch"),
}


def react_to_invalid(code: InvalidCode) -> InvalidReaction:
    return _INVALID[code]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog, "Exponential
    Backoff And Jitter"): ``delay(n) = uniform(0, min(cap, base * factor**n))``.

    ``attempt`` counts consecutive failures from 0.  ``floor`` is added to every delay
    (a server's ``Retry-After`` goes there), never jittered away.

    ``jitter=False`` is a *defect switch* of the scenarios (docs/scenarios.md "Defects"),
    never a setting for real use: every delay is the full ceiling, so clients that lost
    the broker at the same instant retry at the same instant (SPEC §6 asks for jitter).
    """

    base: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not self.base > 0:
            raise ValueError(f"backoff base must be > 0, got {self.base!r}")
        if not self.cap >= self.base:
            raise ValueError(f"backoff cap must be >= base, got {self.cap!r}")
        if not self.factor >= 1:
            raise ValueError(f"backoff factor must be >= 1, got {self.factor!r}")

    def ceiling(self, attempt: int) -> float:
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # Avoid float overflow for huge attempt counts: the cap is reached long before.
        if attempt > 64:
            return self.cap
        return min(self.cap, self.base * self.factor**attempt)

    def delay(self, attempt: int, rng: random.Random, *, floor: float = 0.0) -> float:
        if not self.jitter:
            return max(0.0, floor) + self.ceiling(attempt)
        return max(0.0, floor) + rng.uniform(0.0, self.ceiling(attempt))
