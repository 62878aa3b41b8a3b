"""The reference AppServer is just the built-in adapter: ``check appserver`` passes it."""

from __future__ import annotations

from pathlib import Path

from sim.customer.adapter import load_adapter
from sim.harness.check.appserver import CheckOptions, check_appserver
from sim.harness.check.model import Status
from sim.harness.check.report import to_table
from sim.harness.check.rules import CHECK_NAMES
from sim.shared.clock import ManualClock

from .conftest import stack


async def test_the_reference_appserver_passes_through_the_builtin_adapter(
    tmp_path: Path,
) -> None:
    async with stack(tmp_path, ManualClock()) as handle:
        options = CheckOptions(
            appserver_url=handle.appserver_url,
            authserver_url=handle.authserver_url,
            broker_url=handle.broker_url,
        )
        report = await check_appserver(load_adapter("builtin"), options)
    statuses = {r.spec.name: r.status for r in report.results}
    expected = dict.fromkeys(CHECK_NAMES, Status.PASSED)
    # in process: nothing here restarts it (tests/appserver/test_process.py kills it -9)
    expected["restart-keeps-cache"] = Status.NOT_MEASURED
    assert statuses == expected, to_table(report)
    assert report.exit_code() == 0
    # the built-in adapter created its clients through the reference AppServer's admin API
    assert any("client accounts" in n for n in report.notes)
