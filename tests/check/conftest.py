"""The foreign AppServer (tests/foreign_appserver/server.py) in its own process, beside a
stack of ours (AuthServer, broker, reference AppServer) on free loopback ports."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from mock_authserver.ratelimit import RateLimits
from sim.harness.stack import StackConfig, StackHandle, run_stack
from sim.shared.clock import Clock
from tests.foreign_appserver.launch import ADAPTER, Foreign, running

__all__ = ["ADAPTER", "Foreign", "foreign_appserver", "stack"]


@contextlib.asynccontextmanager
async def stack(
    tmp_path: Path, clock: Clock, rate_limits: Mapping[str, str] | None = None
) -> AsyncIterator[StackHandle]:
    config = (
        StackConfig(data_dir=tmp_path / "stack")
        .with_free_ports()
        .with_appserver(password_hash_cost=4, seed=0)
        .with_authserver(rate_limits=RateLimits().with_overrides(rate_limits or {}))
    )
    async with run_stack(config, clock=clock) as handle:
        yield handle


@contextlib.asynccontextmanager
async def foreign_appserver(
    handle: StackHandle, db: Path, *flags: str, manual: bool = True
) -> AsyncIterator[Foreign]:
    """Start the foreign AppServer against ``handle``'s AuthServer; on a manual clock it
    reads that clock (``--clock-url``)."""
    clock_url = handle.authserver_url + "/admin/clock" if manual else None
    async with running(handle.authserver_url, db, *flags, clock_url=clock_url) as foreign:
        yield foreign
