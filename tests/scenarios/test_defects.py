"""Every scenario can fail, and does when the fault it exists to catch is in the system
(docs/scenarios.md "Defects"): with each named defect the scenario fails exactly the
expectations that catch it -- nothing else, and no crash --, and with the same sizes
and no defect it passes."""

from __future__ import annotations

from typing import Any

import pytest

from scenarios.base import DEFECTS, ScenarioParams, run_scenario
from scenarios.report import ScenarioReport

#: scenario -> the small size and options its defect runs use
SIZES: dict[str, tuple[int, dict[str, str]]] = {
    "reconnect-storm": (20, {"rounds": "1", "stack_process": "0"}),
    "cache-reuse": (8, {}),
    "outage-recovery": (6, {"new_clients": "20", "outage_s": "1.5"}),
    "expiry-refresh": (4, {"lifetimes": "2"}),
    "revocation": (8, {"revoke": "2"}),
}

#: (scenario, defect) -> the expectations that must catch it
CAUGHT_BY: dict[tuple[str, str], set[str]] = {
    ("reconnect-storm", "no-token-persistence"): {"no AppServer requests (the clients' asks)"},
    ("reconnect-storm", "no-retry-jitter"): {
        "retries drawn with full jitter over the window (delay spread / uniform's)"
    },
    ("cache-reuse", "no-appserver-cache"): {
        "empty_stores: no upstream applies",
        "appserver_restart: no upstream applies",
    },
    ("cache-reuse", "no-token-persistence"): {
        "client restart: no token requests to the AppServer",
        "client restart: every token from the store",
    },
    ("outage-recovery", "no-stale-fallback"): {
        "cached clients all reconnected in the outage",
        "cached clients saw no failure",
    },
    ("outage-recovery", "unbounded-drain"): {"no stampede: peak apply rate within the drain limit"},
    ("expiry-refresh", "ignore-expire-notice"): {
        "every client refreshed at least 1 times",
        "no session ended by expiry",
    },
    ("revocation", "broker-ignores-revocations"): {
        "every revoked client disconnected",
        "disconnected within 1 s of the revoke",
        "old tokens refused at CONNECT",
        "revoked SDK clients stop (403 from the AppServer)",
    },
}


def test_every_defect_has_its_test() -> None:
    assert set(CAUGHT_BY) == {(s, d) for s, defects in DEFECTS.items() for d in defects}
    assert set(SIZES) == set(DEFECTS)


async def _run(name: str, **extra: Any) -> ScenarioReport:
    clients, options = SIZES[name]
    return await run_scenario(name, ScenarioParams(clients=clients, options={**options, **extra}))


@pytest.mark.parametrize(("name", "defect"), sorted(CAUGHT_BY))
async def test_a_defect_fails_the_scenario_and_names_what_caught_it(name: str, defect: str) -> None:
    report = await _run(name, defect=defect)
    assert report.error is None, report.error
    failed = {e.name for e in report.failed_expectations()}
    assert failed == CAUGHT_BY[(name, defect)], [
        (e.name, e.detail) for e in report.failed_expectations()
    ]
    assert not report.passed
    verdict = report.verdict()
    assert verdict.startswith(f"{name}: FAILED (")
    assert all(caught in verdict for caught in CAUGHT_BY[(name, defect)])
    assert report.params["defect"] == defect
    assert any(
        n.startswith(f"DEFECT INJECTED (a switch on the harness's own parts): {defect}")
        for n in report.notes
    )


@pytest.mark.parametrize("name", sorted(SIZES))
async def test_the_same_run_without_a_defect_passes(name: str) -> None:
    report = await _run(name)
    assert report.error is None, report.error
    assert report.passed, [(e.name, e.detail) for e in report.failed_expectations()]


async def test_an_unknown_defect_is_refused_by_name() -> None:
    report = await _run("cache-reuse", defect="no-cache")
    assert report.error is not None
    assert "cache-reuse has no defect 'no-cache'" in report.error
    assert "no-appserver-cache" in report.error and "figures" not in report.error
    assert report.figures == {}
