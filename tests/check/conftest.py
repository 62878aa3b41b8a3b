"""The foreign AppServer (tests/foreign_appserver/server.py) in its own process, beside a
stack of ours (AuthServer, broker, reference AppServer) on free loopback ports."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mock_authserver.ratelimit import RateLimits
from sim.harness.stack import StackConfig, StackHandle, run_stack
from sim.shared.clock import Clock

FOREIGN = Path(__file__).resolve().parents[1] / "foreign_appserver"
SERVER = FOREIGN / "server.py"
RESTART = FOREIGN / "restart.py"
ADAPTER = FOREIGN / "adapter.toml"


@dataclass
class Foreign:
    url: str
    proc: asyncio.subprocess.Process

    @property
    def restart_cmd(self) -> str:
        return f"{sys.executable} {RESTART} {self.url} {self.proc.pid}"


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
    args = [str(SERVER), "--authserver", handle.authserver_url, "--db", str(db), "--port", "0"]
    if manual:
        args += ["--clock-url", handle.authserver_url + "/admin/clock"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, *flags, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"foreign appserver listening on http://127.0.0.1:"), line
        yield Foreign(line.decode().split()[-1], proc)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
