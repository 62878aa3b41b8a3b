"""The device audit's pure core (mock_broker.audit): each rule, table-driven, with times
passed in; the bounds on memory; the report's JSON form."""

from __future__ import annotations

import random
from typing import Any

import pytest

from mock_broker.audit import (
    AuditBounds,
    AuditReport,
    DeviceAudit,
    Finding,
    Rule,
    spearman,
)
from mock_broker.fidelity import Feature, FidelityLedger
from sim.shared.protocol.tokens import TokenClaims

NS = "dev-ak|mqtt-dev"
T0 = 1_800_000_000.0
HOUR = 3600.0


def claims(
    token_id: str,
    issued: float = T0,
    life: float = HOUR,
    resources: tuple[str, ...] = ("dev/a/#",),
    actions: frozenset[str] = frozenset({"R", "W"}),
) -> TokenClaims:
    return TokenClaims(
        token_id, "dev-ak", "mqtt-dev", actions, resources, round((issued + life) * 1000),
        round(issued * 1000),
    )  # fmt: skip


def rules_of(audit: DeviceAudit, now: float = T0 + 10 * HOUR) -> dict[str, set[str]]:
    """rule -> client ids it names."""
    out: dict[str, set[str]] = {}
    for f in audit.report(now).findings:
        out.setdefault(str(f.rule), set()).update(f.client_ids)
    return out


# -- new-token-while-valid --------------------------------------------------------------

# (what happens before the second CONNECT, the second token, when) -> flagged?
NEW_TOKEN_CASES: list[tuple[str, dict[str, Any], float, bool]] = [
    ("a new token at 10% of the old one's life", {}, 0.1 * HOUR, True),
    ("a new token at 45% of its life", {}, 0.45 * HOUR, True),
    ("a new token at 55% of its life (a refresh)", {}, 0.55 * HOUR, False),
    ("the old one expired", {}, 1.1 * HOUR, False),
    ("other resources: a new ask", {"resources": ("dev/b/#",)}, 0.1 * HOUR, False),
    ("other actions: a new ask", {"actions": frozenset({"R"})}, 0.1 * HOUR, False),
    ("the same token again", {"same": True}, 0.1 * HOUR, False),
    ("the old one was revoked", {"revoked": True}, 0.1 * HOUR, False),
    ("its session ended for revocation", {"end": "revoked"}, 0.1 * HOUR, False),
    ("its session ended for expiry", {"end": "expired"}, 0.1 * HOUR, False),
    ("a plain loss (kick)", {"end": "kicked"}, 0.1 * HOUR, True),
    ("the old one was refused meanwhile", {"refused": "type_mismatch"}, 0.1 * HOUR, False),
    ("a token issued before the old one", {"older": True}, 0.1 * HOUR, False),
]


@pytest.mark.parametrize(("what", "how", "after", "flagged"), NEW_TOKEN_CASES)
def test_new_token_while_valid(what: str, how: dict[str, Any], after: float, flagged: bool) -> None:
    audit = DeviceAudit()
    first = claims("t1")
    audit.connected(T0, NS, "GID_a@@@d1", {"RW": first})
    audit.ended(T0 + after - 1, NS, "GID_a@@@d1", how.get("end", "client"))
    if "refused" in how:
        audit.refused(T0 + after - 0.5, NS, "GID_a@@@d1", how["refused"], "RW", first)
    if how.get("same"):
        second = first
    else:
        issued = T0 - 10 if how.get("older") else T0 + after - 2
        second = claims(
            "t2",
            issued,
            resources=how.get("resources", ("dev/a/#",)),
            actions=how.get("actions", frozenset({"R", "W"})),
        )
    revoked = {"t1"} if how.get("revoked") else set()
    audit.connected(T0 + after, NS, "GID_a@@@d1", {"RW": second}, is_revoked=revoked.__contains__)
    found = audit.report(T0 + after).by_rule(Rule.NEW_TOKEN_WHILE_VALID)
    assert bool(found) is flagged, what
    if flagged:
        (f,) = found
        assert f.client_ids == ("GID_a@@@d1",)
        assert f.evidence["previous_token_id"] == "t1"
        assert f.evidence["new_token_id"] == "t2"
        assert f.instance_id == "mqtt-dev" and f.access_key_id == "dev-ak"


def test_a_device_asking_on_every_connect_is_counted_each_time() -> None:
    audit = DeviceAudit()
    for k in range(5):
        now = T0 + 60 * k
        audit.connected(now, NS, "GID_a@@@loop", {"RW": claims(f"t{k}", now - 0.5)})
        audit.ended(now + 1, NS, "GID_a@@@loop", "client")
    (f,) = audit.report(T0 + 400).by_rule(Rule.NEW_TOKEN_WHILE_VALID)
    assert f.count == 4 and f.evidence["new_token_id"] == "t4"


# -- dead-token-reuse -------------------------------------------------------------------

DEAD_CASES: list[tuple[str, list[str], bool]] = [
    ("one refusal: the client learns", ["expired"], False),
    ("twice expired", ["expired", "expired"], True),
    ("twice revoked", ["revoked", "revoked"], True),
    ("revoked then expired", ["revoked", "expired"], True),
    ("an accepted CONNECT in between", ["revoked", "ok", "revoked"], False),
    ("forged tokens are no dead tokens", ["forged", "forged", "forged"], False),
    ("a type mismatch is not a dead token", ["type_mismatch", "type_mismatch"], False),
]


@pytest.mark.parametrize(("what", "steps", "flagged"), DEAD_CASES)
def test_dead_token_reuse(what: str, steps: list[str], flagged: bool) -> None:
    audit = DeviceAudit()
    old = claims("dead", T0 - 2 * HOUR)
    for k, step in enumerate(steps):
        now = T0 + 30 * k
        if step == "ok":
            audit.connected(now, NS, "GID_a@@@d1", {"RW": claims(f"n{k}", now)})
            audit.ended(now + 1, NS, "GID_a@@@d1", "client")
        else:
            audit.refused(now, NS, "GID_a@@@d1", step, "RW", old)
    found = audit.report(T0 + 1000).by_rule(Rule.DEAD_TOKEN_REUSE)
    assert bool(found) is flagged, what
    if flagged:
        assert found[0].evidence["tokens"][0]["token_id"] == "dead"


def test_refusals_before_the_account_is_known_leave_no_record() -> None:
    audit = DeviceAudit()
    for reason in ("malformed", "client_id", "account", "not_ready"):
        audit.refused(T0, NS, "GID_a@@@d1", reason)
    assert audit.report(T0).clients == 0


# -- tight-retry ------------------------------------------------------------------------

TIGHT = AuditBounds().tight_retry_run


def _retry_loop(audit: DeviceAudit, gaps: list[float], end: str = "lost") -> None:
    now = T0
    audit.connected(now, NS, "GID_a@@@d1", {"RW": claims("t1")})
    for gap in gaps:
        now += 0.5
        audit.ended(now, NS, "GID_a@@@d1", end)
        now += gap
        audit.connected(now, NS, "GID_a@@@d1", {"RW": claims("t1")})


TIGHT_CASES: list[tuple[str, list[float], str, bool]] = [
    ("at once, every time", [0.001] * TIGHT, "lost", True),
    ("one retry short of the run", [0.001] * (TIGHT - 1), "lost", False),
    ("backing off past the gap once", [0.001] * 5 + [0.5] + [0.001] * 5, "lost", False),
    ("backing off (0.2 s)", [0.2] * 30, "lost", False),
    ("kicked and back at once", [0.01] * TIGHT, "kicked", True),
    ("its own DISCONNECT, then a new session: not a retry", [0.001] * 30, "client", False),
]


@pytest.mark.parametrize(("what", "gaps", "end", "flagged"), TIGHT_CASES)
def test_tight_retry(what: str, gaps: list[float], end: str, flagged: bool) -> None:
    audit = DeviceAudit()
    _retry_loop(audit, gaps, end)
    found = audit.report(T0 + 100).by_rule(Rule.TIGHT_RETRY)
    assert bool(found) is flagged, what
    if flagged:
        assert found[0].evidence["retries_in_a_row"] >= TIGHT


def test_refused_connects_retried_at_once_are_a_tight_retry() -> None:
    audit = DeviceAudit()
    bad = claims("x", T0, life=60)
    for k in range(TIGHT + 1):
        audit.refused(T0 + 0.02 * k, NS, "GID_a@@@d1", "type_mismatch", "RW", bad)
    assert rules_of(audit) == {"tight-retry": {"GID_a@@@d1"}}


def test_the_sdk_backoff_is_not_a_tight_retry() -> None:
    """The SDK's own schedule (sim.customer.client.policy.Backoff, full jitter) at the
    reconnect storm's smallest base, over 500 failing clients."""
    from sim.customer.client.policy import Backoff

    backoff = Backoff(base=0.013, cap=5.0)
    rng = random.Random(7)
    audit = DeviceAudit()
    for c in range(500):
        cid = f"GID_a@@@d{c}"
        now = T0
        for attempt in range(20):
            audit.refused(now, NS, cid, "type_mismatch", "RW", claims("x"))
            now += backoff.delay(attempt, rng)
    assert audit.report(now).by_rule(Rule.TIGHT_RETRY) == ()


# -- reconnect-lockstep -----------------------------------------------------------------


def _mass(order: list[int], *, n: int = 30, ns: str = NS, refused: bool = False) -> DeviceAudit:
    audit = DeviceAudit()
    for c in range(n):
        audit.connected(T0, ns, f"GID_a@@@d{c}", {"RW": claims(f"t{c}")})
    for c in range(n):
        audit.ended(T0 + 10 + 0.001 * c, ns, f"GID_a@@@d{c}", "kicked")
    for k, c in enumerate(order):
        now = T0 + 11 + 0.001 * k
        if refused:
            audit.refused(now, ns, f"GID_a@@@d{c}", "revoked", "RW", claims(f"t{c}"))
        else:
            audit.connected(now, ns, f"GID_a@@@d{c}", {"RW": claims(f"t{c}")})
    return audit


def test_a_fleet_back_in_the_order_it_was_lost_is_in_lockstep() -> None:
    audit = _mass(list(range(30)))
    (f,) = audit.report(T0 + 20).by_rule(Rule.RECONNECT_LOCKSTEP)
    assert f.evidence["rank_correlation"] == 1.0
    assert f.evidence["returned"] == 30 and len(f.client_ids) == 30
    assert f.client_ids[0] == "GID_a@@@d0"


def test_a_fleet_back_in_a_random_order_is_not() -> None:
    flagged = 0
    for seed in range(200):
        order = list(range(30))
        random.Random(seed).shuffle(order)
        flagged += bool(_mass(order).report(T0 + 20).by_rule(Rule.RECONNECT_LOCKSTEP))
    assert flagged == 0


@pytest.mark.parametrize(
    ("what", "n", "order_of", "flagged"),
    [
        ("reverse order", 30, lambda n: list(reversed(range(n))), False),
        ("too few to judge", 19, lambda n: list(range(n)), False),
        ("in order, refused returns count too", 30, lambda n: list(range(n)), True),
        ("mostly in order (two swaps)", 30, lambda n: [1, 0, *range(2, n - 2), n - 1, n - 2], True),
    ],
)
def test_lockstep_cases(what: str, n: int, order_of: Any, flagged: bool) -> None:
    audit = _mass(order_of(n), n=n, refused=what.startswith("in order, refused"))
    assert bool(audit.report(T0 + 20).by_rule(Rule.RECONNECT_LOCKSTEP)) is flagged, what


def test_a_mass_disconnect_is_judged_once_complete_and_kept() -> None:
    audit = _mass(list(range(30)))
    later = T0 + 20 + AuditBounds().lockstep_follow_s
    audit.connected(later, NS, "GID_a@@@other", {"RW": claims("o")})  # settles it
    report = audit.report(later)
    (f,) = report.by_rule(Rule.RECONNECT_LOCKSTEP)
    assert "complete" not in f.evidence
    assert report.totals["reconnect-lockstep"] == 1


def test_stragglers_that_never_return_close_the_mass_when_its_follow_period_ends() -> None:
    """The audit settles its windows only when one is due (one comparison per CONNECT
    otherwise): a mass whose last clients never come back is still judged, at the first
    event after its follow period, and not before."""
    audit = _mass(list(range(25)))  # 30 lost, 25 back in order, 5 never
    follow = AuditBounds().lockstep_follow_s
    early = T0 + 10 + follow - 1
    audit.connected(early, NS, "GID_a@@@other", {"RW": claims("o")})
    (pending,) = audit.report(early).by_rule(Rule.RECONNECT_LOCKSTEP)
    assert pending.evidence.get("complete") is False  # still followed
    later = T0 + 10 + follow + 1
    audit.connected(later, NS, "GID_a@@@other2", {"RW": claims("o2")})  # settles it
    (f,) = audit.report(later).by_rule(Rule.RECONNECT_LOCKSTEP)
    assert "complete" not in f.evidence
    assert (f.evidence["lost"], f.evidence["returned"]) == (30, 25)


def test_losses_spread_over_time_are_no_mass_disconnect() -> None:
    audit = DeviceAudit()
    for c in range(30):
        audit.connected(T0, NS, f"GID_a@@@d{c}", {"RW": claims(f"t{c}")})
    for c in range(30):
        audit.ended(T0 + 10 + 2.0 * c, NS, f"GID_a@@@d{c}", "lost")
        audit.connected(T0 + 10.5 + 2.0 * c, NS, f"GID_a@@@d{c}", {"RW": claims(f"t{c}")})
    assert audit.report(T0 + 100).by_rule(Rule.RECONNECT_LOCKSTEP) == ()


def test_spearman() -> None:
    assert spearman([0, 1, 2, 3], [10, 20, 30, 40]) == 1.0
    assert spearman([0, 1, 2, 3], [40, 30, 20, 10]) == -1.0
    with pytest.raises(ValueError):
        spearman([1, 2], [1, 2])


# -- the upload rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("waited", "old_allows", "new_allows", "flagged"),
    [
        (False, False, True, True),  # needed the new token, sent before the PUBACK
        (True, False, True, False),  # sent after the client could see the PUBACK
        (False, True, True, False),  # the old token allowed it anyway
        (False, False, False, False),  # neither allows it: an ordinary refusal
    ],
)
def test_used_before_upload_ack(
    waited: bool, old_allows: bool, new_allows: bool, flagged: bool
) -> None:
    audit = DeviceAudit()
    got = audit.used_before_ack(
        T0,
        NS,
        "GID_a@@@d1",
        action="publish",
        topic="dev/b/x",
        waited_for_ack=waited,
        old_allows=old_allows,
        new_allows=new_allows,
        token_type="RW",
        old_token_id="o",
        new_token_id="n",
        upload_ms=1,
    )
    assert got is flagged
    assert bool(audit.report(T0).by_rule(Rule.USED_BEFORE_UPLOAD_ACK)) is flagged


@pytest.mark.parametrize(
    ("what", "next_connect", "flagged"),
    [
        ("the uploaded token", "new", False),
        ("the replaced token", "old", True),
        ("the replaced token, refused as expired", "old-refused", True),
        ("a third token", "third", False),
    ],
)
def test_old_token_after_upload(what: str, next_connect: str, flagged: bool) -> None:
    audit = DeviceAudit()
    old, new = claims("old", T0 - 3000), claims("new", T0 + 10)
    audit.connected(T0, NS, "GID_a@@@d1", {"RW": old})
    audit.uploaded(T0 + 20, NS, "GID_a@@@d1", "RW", old, new)
    audit.ended(T0 + 30, NS, "GID_a@@@d1", "client")
    if next_connect == "old-refused":
        audit.refused(T0 + 40, NS, "GID_a@@@d1", "expired", "RW", old)
    else:
        token = {"new": new, "old": old, "third": claims("third", T0 + 35)}[next_connect]
        audit.connected(T0 + 40, NS, "GID_a@@@d1", {"RW": token})
    found = audit.report(T0 + 50).by_rule(Rule.OLD_TOKEN_AFTER_UPLOAD)
    assert bool(found) is flagged, what
    if flagged:
        assert found[0].evidence["old_token_id"] == "old"
        assert found[0].evidence["uploaded_token_id"] == "new"


def test_an_upload_is_the_previous_token_of_the_next_connect() -> None:
    """After a refresh by upload the uploaded token is the one in hand: connecting with it
    is no new token, and a new one is judged against it."""
    audit = DeviceAudit()
    old, new = claims("old", T0 - 3300), claims("new", T0 + 10)
    audit.connected(T0, NS, "GID_a@@@d1", {"RW": old})
    audit.uploaded(T0 + 20, NS, "GID_a@@@d1", "RW", old, new)
    audit.ended(T0 + 30, NS, "GID_a@@@d1", "lost")
    audit.connected(T0 + 40, NS, "GID_a@@@d1", {"RW": new})
    assert audit.report(T0 + 50).clean


# -- bounds, report ---------------------------------------------------------------------


def test_client_records_are_bounded() -> None:
    audit = DeviceAudit(AuditBounds(max_clients=100))
    for c in range(1000):
        audit.connected(T0 + c, NS, f"GID_a@@@d{c}", {"RW": claims(f"t{c}")})
    report = audit.report(T0 + 2000)
    assert report.clients == 100 and report.clients_forgotten == 900
    assert any("forgotten" in n for n in report.notes)


def test_findings_are_bounded_and_still_counted() -> None:
    audit = DeviceAudit(AuditBounds(max_findings=3))
    for c in range(10):
        cid = f"GID_a@@@d{c}"
        audit.connected(T0, NS, cid, {"RW": claims(f"a{c}")})
        audit.connected(T0 + 1, NS, cid, {"RW": claims(f"b{c}", T0 + 0.5)})
    report = audit.report(T0 + 2)
    assert len(report.findings) == 3 and report.findings_dropped == 7
    assert report.totals["new-token-while-valid"] == 10


def test_a_client_id_is_kept_cut() -> None:
    audit = DeviceAudit()
    audit.connected(T0, NS, "GID_a@@@" + "x" * 10_000, {"RW": claims("t")})
    audit.connected(T0 + 1, NS, "GID_a@@@" + "x" * 10_000, {"RW": claims("u", T0 + 0.5)})
    (f,) = audit.report(T0 + 2).findings
    assert len(f.client_id) == 128


def test_report_json_round_trip_and_assert_clean() -> None:
    ledger = FidelityLedger("provider")
    ledger.record("mqtt-dev", "GID_a@@@w", Feature.WILL)
    audit = DeviceAudit(AuditBounds(tight_retry_run=3))
    _retry_loop(audit, [0.0] * 3)
    report = audit.report(T0 + 10, ledger.report())
    assert {str(r) for r in report.rules_broken()} == {"tight-retry", "provider-lacks"}
    again = AuditReport.from_json(report.to_json())
    assert again == report
    assert again.bounds.tight_retry_run == 3
    with pytest.raises(AssertionError, match="tight-retry"):
        report.assert_clean()
    report.assert_clean(ignore=["tight-retry", "provider-lacks"])
    (lacks,) = report.by_rule("provider-lacks")
    assert lacks.client_ids == ("GID_a@@@w",) and lacks.evidence["uses"] == {"will": 1}
    assert report.for_client("GID_a@@@d1")[0].rule is Rule.TIGHT_RETRY
    with pytest.raises(ValueError, match="not an audit report"):
        AuditReport.from_json({"findings": [{"rule": "no-such-rule"}]})


def test_bounds_parse() -> None:
    b = AuditBounds.parse("tight_retry_run=5, early-fraction=0.6")
    assert b.tight_retry_run == 5 and b.early_fraction == 0.6
    for bad in ("nope=1", "tight_retry_run", "tight_retry_run=x", "early_fraction=2"):
        with pytest.raises(ValueError):
            AuditBounds.parse(bad)


def test_finding_line_names_rule_client_and_evidence() -> None:
    f = Finding(Rule.TIGHT_RETRY, "ak", "inst", ("GID_a@@@d1",), 12, 1, 2, {"gaps": [0.1]})
    assert f.line().startswith("tight-retry inst GID_a@@@d1 x12: gaps=[0.1]")


def test_a_record_is_small() -> None:
    """docs/your-appserver.md "Memory": about half a KB per client (518 bytes measured),
    so the default 20,000 records are some 12 MB."""
    import tracemalloc

    n = 2000
    tokens = [claims(f"tok{i:012d}") for i in range(n)]
    ids = [f"GID_fleet@@@device-{i:06d}" for i in range(n)]
    audit = DeviceAudit()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            audit.connected(T0 + i, NS, ids[i], {"RW": tokens[i]})
            audit.ended(T0 + i + 0.5, NS, ids[i], "client")
        per_client = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert per_client < 1024, per_client
