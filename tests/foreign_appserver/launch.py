"""Start the foreign AppServer (``server.py`` beside this file) in its own process, for
the tests that drive it: ``async with running(authserver_url, db, *flags) as foreign``."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVER = HERE / "server.py"
RESTART = HERE / "restart.py"
ADAPTER = HERE / "adapter.toml"


@dataclass
class Foreign:
    url: str
    proc: asyncio.subprocess.Process

    @property
    def restart_cmd(self) -> str:
        """Restarts it in place and returns once the new process answers."""
        return f"{sys.executable} {RESTART} {self.url} {self.proc.pid}"


@contextlib.asynccontextmanager
async def running(
    authserver_url: str, db: Path, *flags: str, clock_url: str | None = None
) -> AsyncIterator[Foreign]:
    """The foreign AppServer on a free port, applying at ``authserver_url`` (it calls it
    only when it applies: the AuthServer may start after it)."""
    args = [str(SERVER), "--authserver", authserver_url, "--db", str(db), "--port", "0"]
    if clock_url is not None:
        args += ["--clock-url", clock_url]
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
