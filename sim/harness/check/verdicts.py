"""What the observations of each check mean (pure): observations in, an
:class:`~.model.Outcome` out.  The I/O (asking the AppServer, reading the AuthServer's
admin API, the MQTT probe) is :mod:`.appserver`'s; nothing here waits or reads a clock.

Observations never hold a secret or a token: an :class:`Ask` keeps the ids of the
tokens it got (the AuthServer's ids, safe to print), not the tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sim.shared.protocol import covers, parse_actions

from .model import Outcome

__all__ = [
    "Ask",
    "AskKind",
    "ProbeFacts",
    "TokenFacts",
    "grant_problems",
    "judge_beyond",
    "judge_connect",
    "judge_drain",
    "judge_expiry",
    "judge_forged",
    "judge_outage_cached",
    "judge_outage_new",
    "judge_repeat",
    "judge_restart",
    "judge_single_flight",
    "judge_stale",
    "peak_per_window",
]

AskKind = Literal["credentials", "unauthenticated", "refused", "unavailable", "bad_answer"]

#: Two expiries closer than this are the same (the AppServer may round to seconds).
EXPIRY_TOLERANCE_MS = 1000


@dataclass(frozen=True)
class Ask:
    """One ask of the AppServer and what came of it."""

    label: str
    kind: AskKind
    status: int | None = None
    message: str = ""
    retry_after: float = 0.0
    #: the AuthServer ids of the tokens in the password (credentials only)
    token_ids: tuple[str, ...] = ()
    #: the expiry the answer states (ms), if the adapter reads one
    expire_ms: int | None = None
    stale: bool = False

    @property
    def ok(self) -> bool:
        return self.kind == "credentials"

    @property
    def refused(self) -> bool:
        """A 4xx: the AppServer said no, for good."""
        return self.kind in ("unauthenticated", "refused")

    def describe(self) -> str:
        answer = f"HTTP {self.status}" if self.status is not None else "no HTTP answer"
        if self.ok:
            ids = ",".join(self.token_ids) or "?"
            return f"{self.label}: {answer}, token {ids}" + (" (stale)" if self.stale else "")
        detail = f": {self.message}" if self.message else ""
        return f"{self.label}: {answer}, {self.kind.replace('_', ' ')}{detail}"


@dataclass(frozen=True)
class TokenFacts:
    """The AuthServer's record of a token (``/admin/tokens/{id}``)."""

    token_id: str
    actions: frozenset[str]
    resources: tuple[str, ...]
    expire_ms: int
    issued_ms: int
    #: valid | expired | revoked
    status: str


def _lines(asks: Sequence[Ask]) -> tuple[str, ...]:
    return tuple(a.describe() for a in asks)


def _applies(n: int) -> str:
    return f"{n} upstream appl{'y' if n == 1 else 'ies'}"


def _refusals(asks: Sequence[Ask], applies: int, what: str) -> Outcome:
    wrong = [a for a in asks if not a.refused]
    evidence = (*_lines(asks), f"{_applies(applies)} at the AuthServer meanwhile")
    if any(a.ok for a in wrong):
        got = ", ".join(a.label for a in wrong if a.ok)
        return Outcome.failed(f"{what} got a token: {got}", *evidence, applies=applies)
    if wrong:
        bad = ", ".join(f"{a.label} ({a.status or a.kind})" for a in wrong)
        return Outcome.failed(
            f"{what} was not refused with a 4xx: {bad}", *evidence, applies=applies
        )
    if applies:
        return Outcome.failed(
            f"refused, but the AppServer applied upstream first ({_applies(applies)})",
            *evidence,
            applies=applies,
        )
    return Outcome.passed(f"{len(asks)} asks refused, no upstream apply", *evidence, applies=0)


def judge_forged(asks: Sequence[Ask], applies: int) -> Outcome:
    return _refusals(asks, applies, "a forged identity")


def judge_beyond(asks: Sequence[Ask], applies: int) -> Outcome:
    return _refusals(asks, applies, "a client asking beyond its permissions")


def judge_repeat(
    asks: Sequence[Ask], applies_after_first: int, lives_s: Sequence[float], min_life_s: float
) -> Outcome:
    """``asks``: the first ask then the repeats; ``lives_s``: each token's life left."""
    evidence = (*_lines(asks), f"{_applies(applies_after_first)} after the first ask")
    failed = [a for a in asks if not a.ok]
    if failed:
        return Outcome.error(f"the client got no token: {failed[0].describe()}", *evidence)
    short = [life for life in lives_s if life < min_life_s]
    figures = {"asks": len(asks), "applies": applies_after_first, "min_life_s": min(lives_s)}
    if applies_after_first:
        return Outcome.failed(
            f"{len(asks) - 1} repeated asks caused {_applies(applies_after_first)}",
            *evidence,
            **figures,
        )
    if short:
        return Outcome.failed(
            f"a token came back with {min(short):.0f} s of life, less than {min_life_s:g} s",
            *evidence,
            **figures,
        )
    return Outcome.passed(
        f"{len(asks) - 1} repeated asks, no new apply, at least {min(lives_s):.0f} s of life",
        *evidence,
        **figures,
    )


def judge_single_flight(asks: Sequence[Ask], applies: int) -> Outcome:
    evidence = (*_lines(asks[:3]), f"... {len(asks)} asks at once", _applies(applies))
    figures = {"asks": len(asks), "applies": applies}
    if applies == 0:
        return Outcome.error(
            "no upstream apply at all: this client's token was cached before the check "
            "(an earlier run?); pick unused clients with --first-client",
            *evidence,
        )
    failed = [a for a in asks if not a.ok]
    if applies > 1:
        return Outcome.failed(
            f"{len(asks)} identical asks at once caused {_applies(applies)}", *evidence, **figures
        )
    if failed:
        return Outcome.failed(
            f"{len(failed)} of {len(asks)} identical asks got no token: {failed[0].describe()}",
            *evidence,
            **figures,
        )
    tokens = {a.token_ids for a in asks}
    if len(tokens) > 1:
        return Outcome.failed(
            f"one apply, yet {len(tokens)} different tokens came back", *evidence, **figures
        )
    return Outcome.passed(f"{len(asks)} asks at once, one apply, one token", *evidence, **figures)


def judge_restart(before: Sequence[Ask], after: Sequence[Ask], applies: int) -> Outcome:
    evidence = (*_lines(before), "-- AppServer restarted --", *_lines(after), _applies(applies))
    failed = [a for a in after if not a.ok]
    if failed:
        return Outcome.failed(
            f"after the restart a cached client got no token: {failed[0].describe()}", *evidence
        )
    if applies:
        return Outcome.failed(
            f"after the restart {len(after)} cached clients caused {_applies(applies)}",
            *evidence,
            applies=applies,
        )
    changed = [a.label for b, a in zip(before, after, strict=True) if a.token_ids != b.token_ids]
    if changed:
        return Outcome.failed(
            f"after the restart {', '.join(changed)} got another token", *evidence
        )
    return Outcome.passed(
        f"{len(after)} clients got their cached tokens back, no apply", *evidence, applies=0
    )


def judge_outage_cached(before: Sequence[Ask], during: Sequence[Ask]) -> Outcome:
    evidence = (*_lines(before), "-- AuthServer outage --", *_lines(during))
    failed = [a for a in during if not a.ok]
    if failed:
        return Outcome.failed(
            f"during the outage a cached client got no token: {failed[0].describe()}", *evidence
        )
    other = [a.label for b, a in zip(before, during, strict=True) if a.token_ids != b.token_ids]
    if other:
        return Outcome.error(
            f"{', '.join(other)} got a new token during the outage: the outage did not "
            "reach the AppServer (is it pointed at this AuthServer?)",
            *evidence,
        )
    return Outcome.passed(f"{len(during)} cached clients got their tokens", *evidence)


def judge_outage_new(during: Sequence[Ask], after: Ask) -> Outcome:
    evidence = (*_lines(during), f"after the outage: {after.describe()}")
    for a in during:
        if a.ok:
            return Outcome.error(
                f"{a.label} got a token during the outage: the outage did not reach the "
                "AppServer (is it pointed at this AuthServer?)",
                *evidence,
            )
        if a.status is None:
            return Outcome.failed(
                f"{a.label} got no HTTP answer during the outage ({a.message})", *evidence
            )
        if a.kind != "unavailable":
            return Outcome.failed(
                f"{a.label} got HTTP {a.status} during the outage: a 4xx tells a client its "
                "request is wrong for good; the outage is temporary (5xx or 429)",
                *evidence,
            )
    if after.status is None:
        return Outcome.failed(f"the AppServer stopped answering: {after.describe()}", *evidence)
    with_retry = sum(1 for a in during if a.retry_after > 0)
    return Outcome.passed(
        f"{len(during)} new clients got HTTP {sorted({a.status or 0 for a in during})} "
        f"({with_retry} with Retry-After), the AppServer kept answering",
        *evidence,
    )


def peak_per_window(times_ms: Sequence[int], window_ms: int = 1000) -> int:
    """The most of ``times_ms`` within any window of ``window_ms``."""
    ordered = sorted(times_ms)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window_ms:
            start += 1
        best = max(best, end - start + 1)
    return best


def judge_drain(
    outage_asks: Sequence[Ask],
    calls_during_outage: int,
    drained: Sequence[Ask],
    throttled: int,
    peak_per_s: int,
) -> Outcome:
    """``calls_during_outage``: upstream apply requests the AuthServer saw during the
    outage; ``drained``: each backlog client's final ask after it; ``throttled``: applies
    the AuthServer answered with its throttling error after it."""
    figures = {
        "backlog": len(outage_asks),
        "upstream_calls_during_outage": calls_during_outage,
        "throttled": throttled,
        "peak_applies_per_s": peak_per_s,
    }
    evidence = (
        f"{len(outage_asks)} clients asked during the outage; the AuthServer saw "
        f"{calls_during_outage} apply requests meanwhile",
        *_lines([a for a in drained if not a.ok][:5]),
        f"after it: {sum(1 for a in drained if a.ok)} of {len(drained)} got a token; "
        f"{throttled} throttled answers; at most {peak_per_s} applies in one second",
    )
    if any(a.ok for a in outage_asks):
        return Outcome.error(
            "a new client got a token during the outage: the outage did not reach the "
            "AppServer (is it pointed at this AuthServer?)",
            *evidence,
        )
    if calls_during_outage > len(outage_asks):
        return Outcome.failed(
            f"{len(outage_asks)} asks during the outage made {calls_during_outage} upstream "
            "calls: retries pile onto a failing AuthServer",
            *evidence,
            **figures,
        )
    if throttled:
        return Outcome.failed(
            f"the backlog burst past the AuthServer's rate limit: {throttled} applies throttled",
            *evidence,
            **figures,
        )
    left = [a for a in drained if not a.ok]
    if left:
        return Outcome.failed(
            f"{len(left)} of {len(drained)} clients still had no token when the check gave "
            f"up: {left[0].describe()}",
            *evidence,
            **figures,
        )
    return Outcome.passed(
        f"{len(drained)} queued clients got tokens, nothing throttled, peak {peak_per_s}/s",
        *evidence,
        **figures,
    )


def judge_stale(before: Ask, during: Ask, life_left_s: float, valid: bool) -> Outcome:
    evidence = (
        before.describe(),
        f"-- time moved on: {life_left_s:.0f} s of life left; AuthServer outage --",
        during.describe(),
    )
    if not during.ok:
        return Outcome.failed(
            f"a cached token with {life_left_s:.0f} s of life left was not served during the "
            f"outage: {during.describe()}",
            *evidence,
        )
    if during.token_ids != before.token_ids:
        return Outcome.error(
            "a new token came back during the outage: the outage did not reach the AppServer",
            *evidence,
        )
    if not valid:
        return Outcome.failed("the token served during the outage had expired", *evidence)
    return Outcome.passed(
        f"the cached token ({life_left_s:.0f} s left) was served during the outage", *evidence
    )


def grant_problems(actions: str, resources: Sequence[str], facts: TokenFacts) -> list[str]:
    """How a token's grant differs from what was asked (SPEC §3a: actions, resources)."""
    problems = []
    tid = facts.token_id
    if facts.status != "valid":
        problems.append(f"token {tid} is {facts.status}")
    if facts.actions != parse_actions(actions):
        problems.append(f"token {tid} grants {sorted(facts.actions)}, asked {actions}")
    for asked in resources:
        if not any(covers(r, asked) for r in facts.resources):
            problems.append(f"token {tid} does not cover {asked!r}")
    for granted in facts.resources:
        if not any(covers(asked, granted) for asked in resources):
            problems.append(f"token {tid} grants {granted!r}, beyond what was asked")
    return problems


@dataclass(frozen=True)
class ProbeFacts:
    """One token tried on the broker with a real MQTT client."""

    client_id: str
    actions: str
    #: how the tokens' grants differ from what was asked (see :func:`grant_problems`)
    grant: tuple[str, ...] = ()
    #: "ok" or why the CONNECT failed
    connect: str = "ok"
    #: granted QoS of a SUBSCRIBE inside the resources (0x80 refused); None: not tried
    inside_subscribe: int | None = None
    #: "acked" or what happened to a QoS 1 PUBLISH inside; None: not tried
    inside_publish: str | None = None
    #: the publish inside came back to the subscription; None: not tried
    echoed: bool | None = None
    #: "refused" (SUBACK 0x80), "disconnected", "granted"; None: not tried
    outside_subscribe: str | None = None
    #: "disconnected", "acked" (a broker in gentle mode drops it silently); None: not tried
    outside_publish: str | None = None

    def problems(self) -> list[str]:
        out = [f"{self.client_id}: {p}" for p in self.grant]
        if self.connect != "ok":
            return [*out, f"{self.client_id}: CONNECT refused: {self.connect}"]
        if self.inside_subscribe is not None and self.inside_subscribe not in (0, 1):
            out.append(f"{self.client_id}: SUBSCRIBE inside its resources refused")
        if self.inside_publish not in (None, "acked"):
            out.append(f"{self.client_id}: PUBLISH inside its resources: {self.inside_publish}")
        if self.echoed is False:
            out.append(f"{self.client_id}: its own publish did not come back to it")
        if self.outside_subscribe == "granted":
            out.append(f"{self.client_id}: SUBSCRIBE outside its resources was granted")
        return out

    def describe(self) -> str:
        parts = [f"{self.client_id}: connect {self.connect}"]
        if self.inside_subscribe is not None:
            parts.append(f"subscribe inside QoS {self.inside_subscribe:#x}")
        if self.inside_publish is not None:
            parts.append(f"publish inside {self.inside_publish}")
        if self.echoed is not None:
            parts.append("echoed" if self.echoed else "not echoed")
        if self.outside_subscribe is not None:
            parts.append(f"subscribe outside {self.outside_subscribe}")
        if self.outside_publish is not None:
            parts.append(f"publish outside {self.outside_publish}")
        return ", ".join(parts)


def judge_connect(probes: Sequence[ProbeFacts]) -> Outcome:
    evidence = tuple(p.describe() for p in probes)
    if not probes:
        return Outcome.error("no token to try: every earlier ask failed")
    problems = [x for p in probes for x in p.problems()]
    if problems:
        return Outcome.failed(problems[0], *problems[1:], *evidence, tokens=len(probes))
    return Outcome.passed(
        f"{len(probes)} tokens connected with exactly the permissions asked",
        *evidence,
        tokens=len(probes),
    )


def judge_expiry(stated: Sequence[tuple[str, int | None, int]]) -> Outcome:
    """``(label, expiry the answer states or None, the AuthServer's expiry)``."""
    if not stated:
        return Outcome.error("no token to compare")
    if all(s is None for _, s, _ in stated):
        return Outcome.not_measured(
            "the adapter reads no expiry from the answer ([response] expire_ms or "
            "expires_in_s): clients must learn their token's validity period another way"
        )
    evidence = tuple(f"{label}: stated {s}, AuthServer {t}" for label, s, t in stated)
    wrong = [
        (label, s, t) for label, s, t in stated if s is None or abs(s - t) > EXPIRY_TOLERANCE_MS
    ]
    if wrong:
        label, s, t = wrong[0]
        gap = "none" if s is None else f"{(s - t) / 1000:+.1f} s off"
        return Outcome.failed(f"{label}: the stated expiry is wrong ({gap})", *evidence)
    return Outcome.passed(f"{len(stated)} answers state the token's real expiry", *evidence)
