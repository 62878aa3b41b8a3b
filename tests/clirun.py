"""``mqtt-token-sim`` run as a user runs it: a subprocess (``python -m sim``), its exit
status, its stdout and stderr.  :func:`cli` blocks; :func:`cli_async` is for tests whose
own event loop serves what the command talks to (a stack, a foreign AppServer)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``mqtt-token-sim ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "sim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )


async def cli_async(*args: str, within: float = 60) -> tuple[int, str, str]:
    """Run ``mqtt-token-sim ARGS`` to its end without blocking the loop: (exit status,
    stdout, stderr); ``within``: real seconds it may take."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sim",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), within)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
