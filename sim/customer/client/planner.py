"""What a token-aware client does next, and when (SPEC §6): the SDK's planner.

A pure core: no I/O, no event loop, no clock.  The shell (:mod:`.client`) keeps one
:class:`Situation`, replaces it through the transition methods below at every event
(each returns a new one; those that back off also return the :class:`Delay` to report),
and asks :func:`plan` what to do next -- ``Plan(action, at)`` -- feeding ``now`` in.
Chance (backoff jitter, a token's place in the refresh spread) comes from the client's
seeded :class:`random.Random`, passed in where it is drawn.

Between sessions::

    refused for good ──────────────────────────────────────────► STOP
    the token is dead (invalid notice, CONNACK 4/5, expiry) ───► REAPPLY ┐
    no token, or less than ``min_validity`` left ─────────────► ASK      ├ at the retry time
    otherwise ────────────────────────────────────────────────► CONNECT ┘ (backoff)

In session::

    a refresh under way, or the token dead (the broker ends the session) ─► WAIT
    the token expired ─────────────────────────────────────────────────────► DROP now
    otherwise REFRESH (the client's mode: upload or reconnect) at
        ``margin`` (+ this token's share of ``spread``) before expiry, or at once if forced;
        no later than an expire notice asked; no earlier than ``not_before`` (a failed
        ask's backoff, the AppServer handing back the same token);
        never past expiry: a refresh put off that far is a DROP at expiry.

Re-planning at a plan's own time gives the same action, due then (the shell sleeps
until ``at`` and asks again: an event in between may change the answer).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from enum import StrEnum

from sim.shared.protocol import InvalidCode

from .policy import (
    Backoff,
    RefreshAction,
    RefreshMode,
    RefreshPolicy,
    after_expire_notice,
    after_same_token,
    decide_refresh,
    is_reusable,
    react_to_invalid,
)

__all__ = [
    "STABLE_SESSION_S",
    "Action",
    "Delay",
    "HeldToken",
    "Plan",
    "Situation",
    "plan",
]

#: clock seconds a session must last for the backoff to start again from its first step
STABLE_SESSION_S = 10.0

EXPIRED_IN_SESSION = "expired in session"


class Action(StrEnum):
    CONNECT = "connect"  # CONNECT with the token in hand
    ASK = "ask"  # ask the AppServer for a token, then CONNECT
    REAPPLY = "reapply"  # forget the dead token (and its file), then ASK
    REFRESH = "refresh"  # in session: ask for a new token, then upload it or reconnect
    DROP = "drop"  # in session: the token ran out; end the session (it is dead)
    WAIT = "wait"  # nothing until an event (a refresh under way, the broker ending it)
    STOP = "stop"  # refused for good


@dataclass(frozen=True)
class Plan:
    action: Action
    #: when (virtual seconds); ``now`` means at once; ``inf``: only an event changes it
    at: float
    #: REFRESH: how the new token is put to use
    mode: RefreshMode | None = None
    #: ASK, REAPPLY, DROP: why (reported with the AppServer request)
    reason: str = ""


@dataclass(frozen=True)
class Delay:
    """A backoff just decided (reported as a BACKOFF event)."""

    seconds: float
    #: its step: 0 for the first failure in a row, 1 for the second, ...
    attempt: int


@dataclass(frozen=True)
class HeldToken:
    """What the planner knows of the token in hand (never the token itself)."""

    expire_at: float
    #: this token's share of ``RefreshPolicy.spread``, in [0, 1)
    jitter: float
    #: read from the store and not yet accepted by a broker
    from_store: bool = False


@dataclass(frozen=True)
class Situation:
    """One client, as the planner sees it.  Replace it through the methods below."""

    policy: RefreshPolicy = field(default_factory=RefreshPolicy)
    backoff: Backoff = field(default_factory=Backoff)
    #: a session lasting this long resets the backoff (``ClientConfig.stable_session_s``)
    stable_session_s: float = STABLE_SESSION_S
    token: HeldToken | None = None
    #: why the token in hand must not be used again (None: it may)
    dead: str | None = None
    refused: bool = False
    #: when the current session began (None: no session)
    session_since: float | None = None
    # -- between sessions
    attempt: int = 0  # consecutive failures: token asks, connects, short sessions
    retry_at: float = -math.inf  # no attempt before this
    # -- in session
    refreshing: bool = False  # a refresh (ask, then upload or reconnect) is under way
    force: bool = False  # refresh at once (refresh_now, a failed refresh's retry)
    notice_at: float | None = None  # an expire notice asked for a refresh by then
    not_before: float = -math.inf  # no refresh ask before this
    refresh_failures: int = 0
    planned_reconnect: bool = False  # the shell ends this session to use a new token

    # ---------------------------------------------------------------- tokens

    def adopted(
        self, expire_at: float, *, rng: random.Random, same: bool = False, from_store: bool = False
    ) -> Situation:
        """A token is in hand (the store, the AppServer, a refresh).  ``same``: it is the
        token already held.  A new token draws its own place in the spread, and what was
        planned for the old one (a notice, a retry time) no longer applies."""
        if same and self.token is not None:
            held = replace(self.token, expire_at=expire_at, from_store=from_store)
            return replace(self, token=held, dead=None)
        held = HeldToken(expire_at, rng.random(), from_store)
        return replace(
            self,
            token=held,
            dead=None,
            notice_at=None,
            not_before=-math.inf,
            refresh_failures=0,
        )

    def discarded(self) -> Situation:
        """REAPPLY carried out: the dead token (and its file) are gone."""
        return replace(self, token=None, dead=None)

    def ask_failed(
        self, now: float, rng: random.Random, *, retry_after: float = 0.0
    ) -> tuple[Situation, Delay]:
        """The AppServer gave no token (transient: 5xx, unreachable); its ``Retry-After``
        is a floor under the backoff.  Between sessions the next attempt backs off; in
        session the refresh is asked again after a backoff of its own, forced."""
        if self.session_since is None:
            return self._backing_off(now, rng, floor=retry_after)
        n = self.refresh_failures
        delay = self.backoff.delay(n, rng, floor=retry_after)
        after = replace(self, refresh_failures=n + 1, not_before=now + delay, force=True)
        return after, Delay(delay, n)

    def refused_for_good(self) -> Situation:
        """401/403 (SPEC §5): retrying cannot help."""
        return replace(self, refused=True)

    # ---------------------------------------------------------------- connecting

    def connect_failed(self, now: float, rng: random.Random) -> tuple[Situation, Delay]:
        """No session: network error, or a CONNACK refusal other than 4/5."""
        return self._backing_off(now, rng)

    def not_authorized(
        self, now: float, rng: random.Random, *, code: int
    ) -> tuple[Situation, Delay | None]:
        """CONNACK 4/5 (SPEC §4): the token is dead.  One from the store is asked anew at
        once (it was only stale); one just handed out backs off first."""
        dead = replace(self, dead=f"CONNACK {code}")
        if self.token is not None and self.token.from_store:
            return replace(dead, retry_at=now), None
        return dead._backing_off(now, rng)

    def connected(self, now: float) -> Situation:
        held = self.token
        if held is not None and held.from_store:
            held = replace(held, from_store=False)
        return replace(self, session_since=now, token=held, planned_reconnect=False)

    def session_ended(self, now: float, rng: random.Random) -> tuple[Situation, Delay | None]:
        """A session ended.  One the shell ended to use a new token reconnects at once;
        any other backs off, from the first step again after a session that held."""
        since = self.session_since
        s = replace(self, session_since=None, refreshing=False, planned_reconnect=False)
        if since is not None and now - since >= self.stable_session_s:
            s = replace(s, attempt=0)
        if self.planned_reconnect:
            return replace(s, retry_at=now), None
        if not self.policy.reuse:
            s = replace(s, token=None)  # the reuse defect: the next CONNECT asks anew
        return s._backing_off(now, rng)

    def _backing_off(
        self, now: float, rng: random.Random, *, floor: float = 0.0
    ) -> tuple[Situation, Delay]:
        delay = self.backoff.delay(self.attempt, rng, floor=floor)
        after = replace(self, attempt=self.attempt + 1, retry_at=now + delay)
        return after, Delay(delay, self.attempt)

    # ---------------------------------------------------------------- in session

    def expire_notice(self, now: float) -> Situation:
        """``$SYS/tokenExpireNotice``: refresh within this token's share of ``spread``."""
        if self.token is None:
            return self
        t = self.token
        at = after_expire_notice(now, t.expire_at, self.policy, jitter=t.jitter)
        return replace(self, notice_at=at, not_before=-math.inf)

    def invalid_notice(self, code: InvalidCode) -> Situation:
        """``$SYS/tokenInvalidNotice``: a dead-token code condemns the token in hand."""
        if react_to_invalid(code).discard_token:
            return replace(self, dead=f"invalid notice {int(code)}")
        return self

    def forced(self) -> Situation:
        """Refresh at once (``TokenClient.refresh_now``)."""
        return replace(self, force=True, not_before=-math.inf)

    def dropped(self) -> Situation:
        """DROP carried out: the token ran out in session."""
        return replace(self, dead=EXPIRED_IN_SESSION)

    def refresh_started(self) -> Situation:
        return replace(self, refreshing=True, force=False, notice_at=None)

    def refresh_ended(self) -> Situation:
        return replace(self, refreshing=False)

    def same_token(self, now: float) -> Situation:
        """The AppServer handed back the token in hand (its cache margin is shorter than
        ours): ask again later, before expiry."""
        if self.token is None:
            return self
        retry = after_same_token(now, self.token.expire_at, self.policy)
        return replace(self, not_before=retry, refresh_failures=0)

    def renews(self, expire_at: float, *, same_text: bool) -> bool:
        """Whether a token the AppServer answered with replaces the one in hand."""
        return not same_text and (self.token is None or expire_at > self.token.expire_at)

    def reconnect_planned(self) -> Situation:
        """The shell ends this session itself to CONNECT with a new token."""
        return replace(self, planned_reconnect=True)


def plan(s: Situation, now: float) -> Plan:
    """What the client does next, and when (never before ``now``)."""
    if s.refused:
        return Plan(Action.STOP, math.inf)
    if s.session_since is None:
        return _between_sessions(s, now)
    return _in_session(s, now)


def _between_sessions(s: Situation, now: float) -> Plan:
    at = max(now, s.retry_at)
    if s.dead is not None:
        return Plan(Action.REAPPLY, at, reason=f"reapply: {s.dead}")
    if s.token is None or not is_reusable(at, s.token.expire_at, s.policy):
        return Plan(Action.ASK, at, reason="no valid token")
    return Plan(Action.CONNECT, at)


def _in_session(s: Situation, now: float) -> Plan:
    t = s.token
    if s.refreshing or s.dead is not None or t is None:
        return Plan(Action.WAIT, math.inf)
    decision = decide_refresh(now, t.expire_at, s.policy, jitter=t.jitter)
    if decision.action is RefreshAction.EXPIRED:
        return Plan(Action.DROP, now, reason=EXPIRED_IN_SESSION)
    at = now if s.force else decision.at
    if s.notice_at is not None:
        at = min(at, s.notice_at)
    at = max(at, s.not_before, now)
    if at >= t.expire_at:
        return Plan(Action.DROP, t.expire_at, reason=EXPIRED_IN_SESSION)
    return Plan(Action.REFRESH, at, mode=s.policy.mode)
