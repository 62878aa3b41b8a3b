"""``check appserver`` against an AppServer that is not ours (tests/foreign_appserver: its
own process, its own API, reached through its adapter): it passes; each variant with
one seed rule broken fails exactly the check of that rule, and the report quotes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.customer.adapter import load_adapter
from sim.harness.check.appserver import CheckOptions, check_appserver
from sim.harness.check.model import Report, Status
from sim.harness.check.report import to_table
from sim.harness.check.rules import CHECK_NAMES, spec
from sim.shared.clock import ManualClock

from .conftest import ADAPTER, foreign_appserver, stack


async def check_foreign(
    tmp_path: Path,
    *flags: str,
    only: tuple[str, ...] = (),
    rate_limits: dict[str, str] | None = None,
    backlog: int = 20,
    restart_flags: str = "",
) -> Report:
    async with (
        stack(tmp_path, ManualClock(), rate_limits) as handle,
        foreign_appserver(handle, tmp_path / "foreign.sqlite", *flags) as foreign,
    ):
        options = CheckOptions(
            appserver_url=foreign.url,
            authserver_url=handle.authserver_url,
            broker_url=handle.broker_url,
            restart_cmd=f"{foreign.restart_cmd} {restart_flags}",
            only=only,
            backlog=backlog,
        )
        return await check_appserver(load_adapter(ADAPTER), options)


def failed(report: Report) -> set[str]:
    return {r.spec.name for r in report.results if r.status is Status.FAILED}


async def test_the_foreign_appserver_passes_every_check(tmp_path: Path) -> None:
    report = await check_foreign(tmp_path)
    assert [r.spec.name for r in report.results] == list(CHECK_NAMES)
    assert {r.spec.name: r.status for r in report.results} == dict.fromkeys(
        CHECK_NAMES, Status.PASSED
    ), to_table(report)
    assert report.exit_code() == 0


@pytest.mark.parametrize(
    ("flag", "check"),
    [
        ("--no-cache", "repeat-uses-cache"),
        ("--no-stale", "outage-stale-fallback"),
        ("--no-single-flight", "concurrent-single-flight"),
        ("--any-secret", "forged-identity"),
    ],
)
async def test_a_variant_fails_exactly_the_check_of_its_rule(
    tmp_path: Path, flag: str, check: str
) -> None:
    report = await check_foreign(tmp_path, flag)
    table = to_table(report)
    assert failed(report) == {check}, table
    assert report.exit_code() == 1
    assert report.count(Status.ERROR) == 0, table
    # the report names the rule: the seed's own words, and the check's name
    words = " ".join(spec(check).rule.split()[:8])
    assert f"FAIL {check}:" in table
    assert words in " ".join(table.split())
    if flag == "--no-cache":  # persistence cannot be judged without a cache
        (restart,) = [r for r in report.results if r.spec.name == "restart-keeps-cache"]
        assert restart.status is Status.NOT_MEASURED
        assert "repeat-uses-cache" in restart.outcome.summary


@pytest.mark.parametrize(
    ("flag", "check", "only"),
    [
        ("--grant-all", "beyond-permissions", ("beyond-permissions",)),
        ("--memory-cache", "restart-keeps-cache", ("repeat-uses-cache", "restart-keeps-cache")),
    ],
)
async def test_more_broken_rules_are_caught(
    tmp_path: Path, flag: str, check: str, only: tuple[str, ...]
) -> None:
    report = await check_foreign(tmp_path, flag, only=only)
    assert failed(report) == {check}, to_table(report)


async def test_an_unpaced_backlog_bursts_past_the_rate_limit(tmp_path: Path) -> None:
    """With the AuthServer's apply limit at 5/s, the foreign AppServer paced at 4/s
    drains a backlog of 12; unpaced, the same backlog is throttled."""
    limits = {"legacy_apply": "5/s"}
    only = ("recovery-drain",)
    paced = await check_foreign(
        tmp_path / "paced", "--apply-rate", "4", only=only, rate_limits=limits, backlog=12
    )
    assert paced.results[0].status is Status.PASSED, to_table(paced)
    burst = await check_foreign(
        tmp_path / "burst", "--no-pacing", only=only, rate_limits=limits, backlog=12
    )
    (result,) = burst.results
    assert result.status is Status.FAILED, to_table(burst)
    assert "throttled" in result.outcome.summary
    assert int(result.outcome.figures["throttled"] or 0) > 0


async def test_a_restart_command_may_return_before_the_appserver_is_back(
    tmp_path: Path,
) -> None:
    """The command returns once the old process is gone; the new one is still starting:
    the check asks again until it answers (within --restart-timeout)."""
    only = ("repeat-uses-cache", "restart-keeps-cache")
    report = await check_foreign(tmp_path, only=only, restart_flags="--return-when-down")
    assert [r.status for r in report.results] == [Status.PASSED] * 2, to_table(report)
