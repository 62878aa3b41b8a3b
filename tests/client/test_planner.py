"""The SDK's planner (SPEC §6): one row per situation, then properties (no loop, no port)."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.customer.client.planner import Action, Delay, HeldToken, Plan, Situation, plan
from sim.customer.client.policy import Backoff, RefreshPolicy, after_same_token
from sim.shared.protocol import InvalidCode

NOW = 1_800_000_000.0
HOUR = 3600.0
POLICY = RefreshPolicy(margin=300, min_validity=60)


class Draw(random.Random):
    """A Random whose every draw is ``u``: the jitter a transition uses is visible."""

    def __init__(self, u: float = 0.5) -> None:
        super().__init__(0)
        self.u = u

    def random(self) -> float:
        return self.u


def held(ttl: float = HOUR, *, jitter: float = 0.0, from_store: bool = False) -> HeldToken:
    return HeldToken(NOW + ttl, jitter, from_store)


OFF = Situation(policy=POLICY)  # no session, nothing yet
ON = replace(OFF, token=held(), session_since=NOW - 10)  # in session, an hour left
EXP = NOW + HOUR  # ON's token expiry

# (id, situation, expected plan at NOW)
PLANS: list[tuple[str, Situation, Plan]] = [
    # -- between sessions
    ("first start: ask", OFF, Plan(Action.ASK, NOW, reason="no valid token")),
    ("a valid token: connect", replace(OFF, token=held()), Plan(Action.CONNECT, NOW)),
    (
        "less than min_validity left: ask",
        replace(OFF, token=held(59)),
        Plan(Action.ASK, NOW, reason="no valid token"),
    ),
    (
        "backing off: connect at the retry time",
        replace(OFF, token=held(), retry_at=NOW + 3),
        Plan(Action.CONNECT, NOW + 3),
    ),
    (
        "valid now, too short by the retry time: ask then",
        replace(OFF, token=held(100), retry_at=NOW + 50),
        Plan(Action.ASK, NOW + 50, reason="no valid token"),
    ),
    (
        "a retry time passed: at once",
        replace(OFF, retry_at=NOW - 5),
        Plan(Action.ASK, NOW, reason="no valid token"),
    ),
    (
        "a dead token: reapply",
        replace(OFF, token=held(), dead="invalid notice 3"),
        Plan(Action.REAPPLY, NOW, reason="reapply: invalid notice 3"),
    ),
    (
        "a dead token, backing off: reapply then",
        replace(OFF, token=held(), dead="CONNACK 5", retry_at=NOW + 2),
        Plan(Action.REAPPLY, NOW + 2, reason="reapply: CONNACK 5"),
    ),
    ("refused for good: stop", replace(OFF, refused=True), Plan(Action.STOP, math.inf)),
    # -- in session
    ("margin before expiry", ON, Plan(Action.REFRESH, EXP - 300, mode="upload")),
    (
        "reconnect mode",
        replace(ON, policy=replace(POLICY, mode="reconnect")),
        Plan(Action.REFRESH, EXP - 300, mode="reconnect"),
    ),
    (
        "this token's share of the spread",
        replace(ON, policy=replace(POLICY, spread=100), token=held(jitter=0.5)),
        Plan(Action.REFRESH, EXP - 350, mode="upload"),
    ),
    (
        "inside the margin: now",
        replace(ON, token=held(200)),
        Plan(Action.REFRESH, NOW, mode="upload"),
    ),
    ("forced: now", replace(ON, force=True), Plan(Action.REFRESH, NOW, mode="upload")),
    (
        "an expire notice asks earlier",
        replace(ON, notice_at=NOW + 30),
        Plan(Action.REFRESH, NOW + 30, mode="upload"),
    ),
    (
        "an expire notice never delays the plan",
        replace(ON, notice_at=EXP - 10),
        Plan(Action.REFRESH, EXP - 300, mode="upload"),
    ),
    (
        "a retry time after the plan wins",
        replace(ON, token=held(200), not_before=NOW + 40),
        Plan(Action.REFRESH, NOW + 40, mode="upload"),
    ),
    (
        "a failed refresh's backoff holds even when forced",
        replace(ON, force=True, not_before=NOW + 7),
        Plan(Action.REFRESH, NOW + 7, mode="upload"),
    ),
    (
        "a retry past expiry: drop the session at expiry",
        replace(ON, token=held(20), not_before=NOW + 25),
        Plan(Action.DROP, NOW + 20, reason="expired in session"),
    ),
    ("a refresh under way: wait", replace(ON, refreshing=True), Plan(Action.WAIT, math.inf)),
    (
        "a dead token: wait for the broker to end the session",
        replace(ON, dead="invalid notice 3"),
        Plan(Action.WAIT, math.inf),
    ),
    (
        "expired in session: drop now",
        replace(ON, token=held(0)),
        Plan(Action.DROP, NOW, reason="expired in session"),
    ),
    ("refused in session: stop", replace(ON, refused=True), Plan(Action.STOP, math.inf)),
]


@pytest.mark.parametrize(
    ("situation", "expected"), [r[1:] for r in PLANS], ids=[r[0] for r in PLANS]
)
def test_plan(situation: Situation, expected: Plan) -> None:
    assert plan(situation, NOW) == expected


# ---------------------------------------------------------------- transitions

BACKOFF = Backoff(base=0.5, cap=30)
BASE = replace(OFF, backoff=BACKOFF, token=held())


def test_a_new_token_draws_its_place_and_forgets_the_old_ones_plans() -> None:
    s = replace(ON, dead="x", notice_at=NOW + 1, not_before=NOW + 2, refresh_failures=3)
    after = s.adopted(NOW + 2 * HOUR, rng=Draw(0.25))
    assert after.token == HeldToken(NOW + 2 * HOUR, 0.25, False)
    assert (after.dead, after.notice_at, after.not_before, after.refresh_failures) == (
        None,
        None,
        -math.inf,
        0,
    )


def test_the_same_token_again_keeps_its_place_and_plans() -> None:
    s = replace(ON, token=held(jitter=0.7), not_before=NOW + 2)
    after = s.adopted(EXP, rng=Draw(0.1), same=True)
    assert after.token is not None and after.token.jitter == 0.7
    assert after.not_before == NOW + 2


@pytest.mark.parametrize(
    ("name", "event", "delay", "attempt", "retry_at"),
    [
        # a stale stored token is asked anew at once: no backoff
        (
            "CONNACK 5, stored token",
            lambda s: s.not_authorized(NOW, Draw(), code=5),
            None,
            0,
            NOW,
        ),
        (
            "CONNACK 5, fresh token",
            lambda s: replace(s, token=held()).not_authorized(NOW, Draw(), code=5),
            Delay(0.25, 0),
            1,
            NOW + 0.25,
        ),
        ("network error", lambda s: s.connect_failed(NOW, Draw()), Delay(0.25, 0), 1, NOW + 0.25),
        (
            "AppServer 503, Retry-After 5",
            lambda s: s.ask_failed(NOW, Draw(), retry_after=5),
            Delay(5.25, 0),
            1,
            NOW + 5.25,
        ),
        (
            "third failure in a row",
            lambda s: replace(s, attempt=2).connect_failed(NOW, Draw()),
            Delay(1.0, 2),
            3,
            NOW + 1.0,
        ),
    ],
)
def test_failures_between_sessions(name, event, delay, attempt, retry_at) -> None:
    s = replace(BASE, token=held(from_store=True))
    after, got = event(s)
    assert (got, after.attempt, after.retry_at) == (delay, attempt, retry_at)


def test_connack_refusal_condemns_the_token() -> None:
    after, _ = BASE.not_authorized(NOW, Draw(), code=4)
    assert plan(after, NOW + 1) == Plan(Action.REAPPLY, NOW + 1, reason="reapply: CONNACK 4")
    assert plan(after.discarded(), NOW + 1).action is Action.ASK


def test_a_planned_reconnect_does_not_back_off() -> None:
    s = replace(BASE, session_since=NOW - 1, attempt=2).reconnect_planned()
    after, delay = s.session_ended(NOW, Draw())
    assert delay is None and after.attempt == 2 and after.retry_at == NOW
    assert plan(after, NOW) == Plan(Action.CONNECT, NOW)


@pytest.mark.parametrize(("lasted", "step"), [(9.9, 2), (10.0, 0)])
def test_a_session_that_held_resets_the_backoff(lasted: float, step: int) -> None:
    s = replace(BASE, session_since=NOW - lasted, attempt=2)
    after, delay = s.session_ended(NOW, Draw())
    assert delay is not None and delay.attempt == step and after.attempt == step + 1
    assert after.session_since is None


def test_connected_marks_a_stored_token_accepted() -> None:
    s = BASE.adopted(EXP, rng=Draw(), from_store=True).connected(NOW)
    assert s.token is not None and not s.token.from_store and s.session_since == NOW


def test_an_expire_notice_without_spread_refreshes_at_once() -> None:
    s = replace(ON, policy=replace(POLICY, margin=10)).expire_notice(NOW)
    assert plan(s, NOW) == Plan(Action.REFRESH, NOW, mode="upload")
    assert plan(s.refresh_started(), NOW).action is Action.WAIT
    assert s.refresh_started().refresh_ended().notice_at is None


@pytest.mark.parametrize(
    ("code", "dead"),
    [(InvalidCode.REVOKED, "invalid notice 3"), (InvalidCode.RESOURCE_MISMATCH, None)],
)
def test_invalid_notice(code: InvalidCode, dead: str | None) -> None:
    assert ON.invalid_notice(code).dead == dead


def test_a_failed_refresh_retries_after_its_own_backoff() -> None:
    s = replace(ON, backoff=BACKOFF, token=held(200), refresh_failures=1)
    after, delay = s.refresh_started().ask_failed(NOW, Draw(), retry_after=5)
    assert delay == Delay(5.5, 1)
    after = after.refresh_ended()
    assert (after.force, after.refresh_failures, after.not_before) == (True, 2, NOW + 5.5)
    assert plan(after, NOW) == Plan(Action.REFRESH, NOW + 5.5, mode="upload")


def test_the_same_token_again_asks_later() -> None:
    s = replace(ON, token=held(200), refresh_failures=2).same_token(NOW)
    assert s.not_before == after_same_token(NOW, NOW + 200, POLICY) == NOW + 100
    assert s.refresh_failures == 0
    assert plan(s, NOW) == Plan(Action.REFRESH, NOW + 100, mode="upload")


@pytest.mark.parametrize(
    ("expire_at", "same_text", "renews"),
    [
        (EXP + 60, False, True),
        (EXP, False, False),
        (EXP - 1, False, False),
        (EXP + 60, True, False),
    ],
)
def test_renews(expire_at: float, same_text: bool, renews: bool) -> None:
    assert ON.renews(expire_at, same_text=same_text) is renews


def test_a_drop_leaves_a_dead_token_to_reapply() -> None:
    s = replace(ON, token=held(0)).dropped()
    assert plan(s, NOW).action is Action.WAIT
    after, _ = s.session_ended(NOW, Draw())
    assert plan(after, NOW).reason == "reapply: expired in session"


# ---------------------------------------------------------------- properties

times = st.floats(-2 * HOUR, 2 * HOUR)
policies = st.builds(
    RefreshPolicy,
    mode=st.sampled_from(["upload", "reconnect"]),
    margin=st.floats(0, 600),
    spread=st.floats(0, 300),
    min_validity=st.floats(0, 120),
    retry_floor=st.floats(0, 10),
)
tokens = st.none() | st.builds(
    HeldToken,
    expire_at=times.map(lambda t: NOW + t),
    jitter=st.floats(0, 0.999),
    from_store=st.booleans(),
)
situations = st.builds(
    Situation,
    policy=policies,
    backoff=st.builds(
        Backoff, base=st.floats(0.01, 5), cap=st.floats(5, 60), factor=st.floats(1, 3)
    ),
    token=tokens,
    dead=st.none() | st.just("invalid notice 2"),
    refused=st.booleans(),
    session_since=st.none() | times.map(lambda t: NOW + t),
    attempt=st.integers(0, 100),
    retry_at=st.just(-math.inf) | times.map(lambda t: NOW + t),
    refreshing=st.booleans(),
    force=st.booleans(),
    notice_at=st.none() | times.map(lambda t: NOW + t),
    not_before=st.just(-math.inf) | times.map(lambda t: NOW + t),
    refresh_failures=st.integers(0, 100),
    planned_reconnect=st.booleans(),
)


@given(situations)
def test_never_plans_in_the_past(s: Situation) -> None:
    assert plan(s, NOW).at >= NOW


@st.composite
def live_sessions(draw: st.DrawFn) -> Situation:
    """A session whose token may still be refreshed (none under way, not dead), its
    retry and notice times drawn around the token's expiry, where the edges are."""
    expire = NOW + draw(st.floats(-60, 2 * HOUR))
    near_expiry = st.floats(-400, 400).map(lambda d: expire + d)
    return replace(
        draw(situations),
        token=HeldToken(expire, draw(st.floats(0, 0.999)), draw(st.booleans())),
        session_since=NOW - 1,
        dead=None,
        refused=False,
        refreshing=False,
        not_before=draw(st.just(-math.inf) | near_expiry),
        notice_at=draw(st.none() | near_expiry),
    )


@given(live_sessions())
def test_in_session_never_past_the_tokens_expiry(s: Situation) -> None:
    p = plan(s, NOW)
    assert s.token is not None
    assert p.action in (Action.REFRESH, Action.DROP)
    assert p.at <= max(NOW, s.token.expire_at)


@settings(max_examples=300)
@given(situations | live_sessions())
def test_a_plan_holds_until_its_time(s: Situation) -> None:
    # The shell sleeps until ``at`` and plans again: then the same step is due.
    p = plan(s, NOW)
    if NOW < p.at < math.inf:
        assert plan(s, p.at) == p


@given(situations)
def test_connect_only_with_a_token_worth_it(s: Situation) -> None:
    p = plan(s, NOW)
    if p.action is Action.CONNECT:
        assert s.token is not None and s.dead is None
        assert s.token.expire_at - p.at >= s.policy.min_validity


@given(situations, st.floats(0, 0.999999), st.floats(0, 3600))
def test_backoff_is_full_jitter_bounded_by_the_cap(s: Situation, u: float, floor: float) -> None:
    after, delay = s.ask_failed(NOW, Draw(u), retry_after=floor)
    between = s.session_since is None
    step = s.attempt if between else s.refresh_failures
    assert delay.attempt == step
    # full jitter: the whole [0, ceiling) range above the server's floor, capped
    assert delay.seconds == pytest.approx(floor + u * s.backoff.ceiling(step))
    assert floor <= delay.seconds <= floor + s.backoff.cap
    if between:
        assert (after.retry_at, after.attempt) == (NOW + delay.seconds, step + 1)
    else:
        assert (after.not_before, after.refresh_failures) == (NOW + delay.seconds, step + 1)
        assert after.force


EVENTS = st.sampled_from(
    [
        "adopt",
        "connect_failed",
        "not_authorized",
        "ask_failed",
        "connected",
        "session_ended",
        "expire_notice",
        "invalid_notice",
        "forced",
        "refresh_started",
        "refresh_ended",
        "same_token",
    ]
)


@given(st.lists(st.tuples(EVENTS, st.floats(0, 400)), max_size=40), st.integers(0, 2**32))
def test_any_history_keeps_plans_in_the_future_and_before_expiry(
    history: list[tuple[str, float]], seed: int
) -> None:
    rng = random.Random(seed)
    s, now = Situation(policy=replace(POLICY, spread=60)), NOW
    for event, dt in history:
        now += dt
        if event == "adopt":
            s = s.adopted(now + rng.uniform(0, 2 * HOUR), rng=rng)
        elif event in ("connect_failed", "session_ended"):
            s = getattr(s, event)(now, rng)[0]
        elif event == "not_authorized":
            s = s.not_authorized(now, rng, code=5)[0]
        elif event == "ask_failed":
            s = s.ask_failed(now, rng, retry_after=rng.choice([0.0, 5.0]))[0]
        elif event in ("connected", "expire_notice", "same_token"):
            s = getattr(s, event)(now)
        elif event == "invalid_notice":
            s = s.invalid_notice(InvalidCode.EXPIRED)
        else:
            s = getattr(s, event)()
        p = plan(s, now)
        assert p.at >= now
        live = s.session_since is not None and s.token is not None and s.dead is None
        if live and not s.refreshing and s.token is not None:
            assert p.at <= max(now, s.token.expire_at)


def test_the_reuse_defect_asks_anew_after_every_lost_session() -> None:
    # The scenarios' no-token-persistence defect (docs/scenarios.md "Defects").
    s = replace(BASE, token=held(), session_since=NOW - 20)
    kept, _ = s.session_ended(NOW, Draw())
    assert plan(kept, NOW + 1).action is Action.CONNECT
    forgetful = replace(s, policy=replace(POLICY, reuse=False))
    after, delay = forgetful.session_ended(NOW, Draw())
    assert delay is not None and after.token is None
    assert plan(after, NOW + 1).action is Action.ASK
    # ... but a reconnect to use a new token keeps that new token
    planned = forgetful.reconnect_planned()
    after, _ = planned.session_ended(NOW, Draw())
    assert after.token is not None
