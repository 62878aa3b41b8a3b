"""What the observations of each check mean (pure), and the report in its four forms."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from sim.harness.check.model import CheckResult, Outcome, Report, Status
from sim.harness.check.report import to_html, to_json, to_junit, to_table
from sim.harness.check.rules import CHECK_NAMES, CHECKS, SEED_RULES, spec
from sim.harness.check.verdicts import (
    Ask,
    ProbeFacts,
    TokenFacts,
    grant_problems,
    judge_beyond,
    judge_connect,
    judge_drain,
    judge_expiry,
    judge_forged,
    judge_outage_cached,
    judge_outage_new,
    judge_repeat,
    judge_restart,
    judge_single_flight,
    judge_stale,
    peak_per_window,
)

OK = Ask("c1", "credentials", 200, token_ids=("t1",), expire_ms=10)
OK2 = Ask("c2", "credentials", 200, token_ids=("t2",))
NO = Ask("c1", "unauthenticated", 401, "wrong key")
FORBIDDEN = Ask("c1", "refused", 403, "not yours")
DOWN = Ask("c1", "unavailable", 503, "later", retry_after=5)
SILENT = Ask("c1", "unavailable", None, "no answer within 10 s")


def test_every_check_quotes_its_rule_and_the_three_seed_rules_are_covered() -> None:
    assert len(set(CHECK_NAMES)) == len(CHECKS) == 11
    assert set(SEED_RULES) <= {c.rule.split(" (Rate")[0] for c in CHECKS}
    for c in CHECKS:
        assert c.rule and c.source.startswith("seed") and c.why
        assert all(n in CHECK_NAMES for n in c.needs)


def test_forged_and_beyond_need_a_4xx_and_no_apply() -> None:
    assert judge_forged([NO, FORBIDDEN], applies=0).status is Status.PASSED
    assert judge_forged([NO, OK], applies=0).status is Status.FAILED
    assert judge_forged([NO, DOWN], applies=0).status is Status.FAILED  # 503: not refused
    refused_after_apply = judge_beyond([FORBIDDEN], applies=1)
    assert refused_after_apply.status is Status.FAILED
    assert "applied upstream first" in refused_after_apply.summary


def test_repeat() -> None:
    assert judge_repeat([OK, OK, OK], 0, [3600, 3599, 3599], 60).status is Status.PASSED
    assert judge_repeat([OK, OK, OK], 2, [3600] * 3, 60).status is Status.FAILED
    short = judge_repeat([OK, OK], 0, [3600, 30], 60)
    assert short.status is Status.FAILED and "30 s of life" in short.summary
    assert judge_repeat([DOWN, OK], 0, [0, 0], 60).status is Status.ERROR


def test_single_flight() -> None:
    assert judge_single_flight([OK] * 5, 1).status is Status.PASSED
    assert judge_single_flight([OK] * 5, 5).status is Status.FAILED
    assert judge_single_flight([OK, OK2], 1).status is Status.FAILED  # two tokens, one apply
    assert judge_single_flight([OK, DOWN], 1).status is Status.FAILED
    assert judge_single_flight([OK] * 5, 0).status is Status.ERROR  # cached before: unknown


def test_restart() -> None:
    assert judge_restart([OK, OK2], [OK, OK2], 0).status is Status.PASSED
    assert judge_restart([OK], [OK], 1).status is Status.FAILED
    assert judge_restart([OK], [OK2], 0).status is Status.FAILED
    assert judge_restart([OK], [DOWN], 0).status is Status.FAILED


def test_outage() -> None:
    assert judge_outage_cached([OK], [OK]).status is Status.PASSED
    assert judge_outage_cached([OK], [DOWN]).status is Status.FAILED
    assert judge_outage_cached([OK], [OK2]).status is Status.ERROR  # no outage seen
    assert judge_outage_new([DOWN, DOWN], DOWN).status is Status.PASSED
    assert judge_outage_new([FORBIDDEN], DOWN).status is Status.FAILED  # 4xx: gives up
    assert judge_outage_new([SILENT], DOWN).status is Status.FAILED  # hang or reset
    crashed = judge_outage_new([DOWN], SILENT)
    assert crashed.status is Status.FAILED and "stopped answering" in crashed.summary
    assert judge_outage_new([OK], DOWN).status is Status.ERROR


def test_drain() -> None:
    assert judge_drain([DOWN] * 3, 3, [OK] * 3, 0, 3).status is Status.PASSED
    storm = judge_drain([DOWN] * 3, 9, [OK] * 3, 0, 3)
    assert storm.status is Status.FAILED and "retries pile onto" in storm.summary
    burst = judge_drain([DOWN] * 3, 3, [OK] * 3, 2, 3)
    assert burst.status is Status.FAILED and "2 applies throttled" in burst.summary
    assert judge_drain([DOWN] * 3, 3, [OK, OK, DOWN], 0, 2).status is Status.FAILED
    assert judge_drain([OK], 0, [OK], 0, 1).status is Status.ERROR


def test_stale() -> None:
    assert judge_stale(OK, OK, 30, valid=True).status is Status.PASSED
    assert judge_stale(OK, DOWN, 30, valid=True).status is Status.FAILED
    assert judge_stale(OK, OK, -1, valid=False).status is Status.FAILED
    assert judge_stale(OK, OK2, 30, valid=True).status is Status.ERROR


def test_peak_per_window() -> None:
    assert peak_per_window([]) == 0
    assert peak_per_window([0, 999, 1000, 1001, 5000]) == 3
    assert peak_per_window([0] * 7) == 7
    assert peak_per_window([0, 500, 1000, 1500, 2000]) == 2


FACTS = TokenFacts("t1", frozenset("RW"), ("a/1/#",), 10, 1, "valid")


def test_grant_problems() -> None:
    assert grant_problems("R,W", ["a/1/#"], FACTS) == []
    assert grant_problems("R,W", ["a/1/x"], FACTS) == [
        "token t1 grants 'a/1/#', beyond what was asked"
    ]
    assert grant_problems("R", ["a/1/#"], FACTS) == ["token t1 grants ['R', 'W'], asked R"]
    assert grant_problems("R,W", ["a/#"], FACTS) == ["token t1 does not cover 'a/#'"]
    revoked = TokenFacts("t1", frozenset("RW"), ("a/1/#",), 10, 1, "revoked")
    assert grant_problems("R,W", ["a/1/#"], revoked) == ["token t1 is revoked"]


def test_connect() -> None:
    good = ProbeFacts("c", "R,W", (), "ok", 1, "acked", True, "refused", "disconnected")
    assert judge_connect([good]).status is Status.PASSED
    gentle = ProbeFacts("c", "R,W", (), "ok", 1, "acked", True, "refused", "acked")
    assert judge_connect([gentle]).status is Status.PASSED  # gentle brokers ack and drop
    for bad in (
        ProbeFacts("c", "R,W", connect="CONNACK 5: not authorized"),
        ProbeFacts("c", "R,W", inside_subscribe=0x80),
        ProbeFacts("c", "R,W", inside_publish="connection lost"),
        ProbeFacts("c", "R,W", echoed=False),
        ProbeFacts("c", "R,W", outside_subscribe="granted"),
        ProbeFacts("c", "R,W", grant=("token t1 grants '#', beyond what was asked",)),
    ):
        assert judge_connect([good, bad]).status is Status.FAILED, bad
    assert judge_connect([]).status is Status.ERROR


def test_expiry() -> None:
    assert judge_expiry([("a", 10_000, 10_400)]).status is Status.PASSED
    assert judge_expiry([("a", 10_000, 70_000)]).status is Status.FAILED
    assert judge_expiry([("a", None, 70_000)]).status is Status.NOT_MEASURED
    assert judge_expiry([]).status is Status.ERROR


def report(*outcomes: Outcome) -> Report:
    results = tuple(
        CheckResult(spec(name), o, 0.5) for name, o in zip(CHECK_NAMES, outcomes, strict=False)
    )
    return Report({"appserver": "http://x", "adapter": "a <b>"}, results, ("a note",), "t", 2.0)


@pytest.mark.parametrize(
    ("outcomes", "code"),
    [
        ((Outcome.passed("ok"), Outcome.not_measured("no cmd")), 0),
        ((Outcome.passed("ok"), Outcome.failed("bad"), Outcome.error("?")), 1),
        ((Outcome.passed("ok"), Outcome.error("could not")), 2),
    ],
)
def test_exit_codes(outcomes: tuple[Outcome, ...], code: int) -> None:
    assert report(*outcomes).exit_code() == code


def test_the_four_forms_of_a_report() -> None:
    r = report(
        Outcome.passed("3 refused", "ev <1>"),
        Outcome.failed("got a token", "c1: HTTP 200"),
        Outcome.not_measured("no --restart-cmd"),
        Outcome.error("could not run"),
    )
    table = to_table(r)
    assert (
        "forged-identity           PASS" in table
        and "FAIL beyond-permissions: got a token" in table
    )
    flat = " ".join(table.split())
    assert f'"{spec("beyond-permissions").rule}"' in flat  # the rule, quoted whole
    assert "  - c1: HTTP 200" in table and "exit 1" in table
    doc = json.loads(to_json(r))
    assert doc["exit_code"] == 1 and doc["totals"]["failed"] == 1
    assert doc["checks"][1]["rule"] == spec("beyond-permissions").rule
    html = to_html(r)
    assert "a &lt;b&gt;" in html and "ev &lt;1&gt;" in html  # escaped
    root = ET.fromstring(to_junit(r))  # noqa: S314 - our own report
    suite = root.find("testsuite")
    assert suite is not None
    assert [suite.get(k) for k in ("tests", "failures", "errors", "skipped")] == [
        "4",
        "1",
        "1",
        "1",
    ]
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    failure = cases["beyond-permissions"].find("failure")
    assert failure is not None and failure.get("message") == "got a token"
    assert spec("beyond-permissions").rule in (failure.text or "")
    assert cases["repeat-uses-cache"].find("skipped") is not None
    assert cases["concurrent-single-flight"].find("error") is not None
