"""What a check run produces (pure): each check's outcome, and the report of a run.

A check ends in one of four states: **passed**, **failed** (the AppServer broke the rule
the check comes from), **not measured** (the run lacked something the check needs, e.g.
a restart command; the reason is given), **error** (the check could not run: the
evidence would not mean what it claims).  A run exits 1 if a check failed, else 2 if one
could not run, else 0 (:meth:`Report.exit_code`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = ["CheckResult", "CheckSpec", "Outcome", "Report", "Status"]

Figure = int | float | str | None


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_MEASURED = "not measured"
    ERROR = "error"


@dataclass(frozen=True)
class CheckSpec:
    """One named check and the rule it comes from."""

    name: str
    title: str
    #: the seed's own words (or SPEC's, for a figure the seed does not give)
    rule: str
    #: where the rule is written
    source: str
    #: how the check follows from the rule
    why: str
    #: checks whose failure leaves this one nothing to measure
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    status: Status
    summary: str
    #: what was observed, one fact a line (no secrets, no tokens)
    evidence: tuple[str, ...] = ()
    figures: Mapping[str, Figure] = field(default_factory=dict)

    @classmethod
    def passed(cls, summary: str, *evidence: str, **figures: Figure) -> Outcome:
        return cls(Status.PASSED, summary, evidence, figures)

    @classmethod
    def failed(cls, summary: str, *evidence: str, **figures: Figure) -> Outcome:
        return cls(Status.FAILED, summary, evidence, figures)

    @classmethod
    def not_measured(cls, reason: str, *evidence: str) -> Outcome:
        return cls(Status.NOT_MEASURED, reason, evidence)

    @classmethod
    def error(cls, reason: str, *evidence: str) -> Outcome:
        return cls(Status.ERROR, reason, evidence)


@dataclass(frozen=True)
class CheckResult:
    spec: CheckSpec
    outcome: Outcome
    #: real seconds the check took
    seconds: float = 0.0

    @property
    def status(self) -> Status:
        return self.outcome.status


@dataclass(frozen=True)
class Report:
    """One run of ``check appserver``."""

    #: what was checked: adapter, URLs, clock mode (no secrets)
    target: Mapping[str, str]
    results: tuple[CheckResult, ...]
    #: what the run did besides checking (e.g. parent topics it created on the mock)
    notes: tuple[str, ...] = ()
    started: str = ""
    seconds: float = 0.0

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status is status)

    def exit_code(self) -> int:
        """0 every check passed (or was not measured), 1 one failed, 2 one could not run."""
        if self.count(Status.FAILED):
            return 1
        if self.count(Status.ERROR):
            return 2
        return 0
