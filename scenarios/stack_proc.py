"""The one stack (:mod:`sim.harness.stack`) in a child process, with a small control API
for its levers.

Why: a scenario's clients and the stack share one event loop when they share a process,
so on a 2-core machine the broker and a thousand reconnecting clients take turns on
one core.  Real fleets and brokers never share a CPU.  With the stack in a child
process each side gets a core, and the raw connect baseline (measured from the scenario
process) and the storm are measured across the same process boundary.

Child: ``python -m scenarios.stack_proc`` reads one line from stdin, a
:class:`StackConfig` in its JSON form (clock included; on stdin, not the command line,
because it holds the AppServer's AccessKey secret), starts the stack plus a loopback
control app, prints one JSON line ``{"endpoints": {...}, "control": url}`` on stdout
and runs until its stdin closes (the parent went away) or SIGTERM/SIGINT.

Control API (loopback, free port): ``POST /kick`` (the broker drops every client),
``POST /restart/{part}`` (``broker``, ``appserver``, ``authserver``), ``GET /fidelity``
(the broker's fidelity report, docs/fidelity.md), ``GET /health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import asdict, replace
from typing import Any

from aiohttp import web

from sim.harness.admin import AdminClient
from sim.harness.errors import AdminError
from sim.harness.stack import PARTS, Part, StackConfig, run_stack
from sim.shared.clock import Clock, ClockSpec, ScaledClock, SystemClock
from sim.shared.procstats import cpu_seconds
from sim.shared.shutdown import stop_requested

from .env import AppServerTarget, Endpoints, Environment, endpoints_for, endpoints_of
from .errors import StackUnavailable

__all__ = ["subprocess_environment"]

_STARTUP_TIMEOUT_S = 60.0


class _ChildLevers:
    """The levers of a stack in a child process: its control API."""

    def __init__(self, admin: AdminClient, control: str, pid: int):
        self._admin = admin
        self._control = control
        #: The child process.
        self.pid = pid

    def cpu_seconds(self) -> float | None:
        try:
            return cpu_seconds(self.pid)
        except OSError:
            return None

    async def _post(self, path: str) -> dict[str, Any]:
        async with self._admin.http.post(f"{self._control}{path}") as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise StackUnavailable(f"stack control {path} answered {resp.status}: {body}")
            return dict(body)

    async def kick_all(self) -> int:
        return int((await self._post("/kick"))["kicked"])

    async def restart(self, part: Part) -> None:
        await self._post(f"/restart/{part}")

    async def fidelity(self) -> dict[str, Any]:
        async with self._admin.http.get(f"{self._control}/fidelity") as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise StackUnavailable(f"stack control /fidelity answered {resp.status}: {body}")
            return dict(body)


@contextlib.asynccontextmanager
async def subprocess_environment(
    config: StackConfig, *, scale: float = 1.0, target: AppServerTarget | None = None
) -> AsyncIterator[Environment]:
    """Start the stack in a child process; yield an :class:`Environment` on it (beside
    the user's AppServer with a ``target``: ``config`` leaves ours out, env.for_target).

    A scaled clock is shared by handing the child the same epoch and wall0 (SPEC §2)."""
    clock: Clock
    if scale != 1.0:
        scaled = ScaledClock(scale)
        clock = scaled
        spec = ClockSpec(mode="scaled", scale=scale, epoch=scaled.epoch, wall0=scaled.wall0)
    else:
        clock, spec = SystemClock(), ClockSpec()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scenarios.stack_proc",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        # stdin stays open: its end tells the child that this process went away.
        proc.stdin.write(json.dumps(replace(config, clock=spec).to_json()).encode() + b"\n")
        await proc.stdin.drain()
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), _STARTUP_TIMEOUT_S)
            hello = json.loads(line)
            endpoints = endpoints_for(Endpoints(**hello["endpoints"]), target)
        except (TimeoutError, ValueError, KeyError, TypeError) as exc:
            raise StackUnavailable(f"the stack process did not start: {exc!r}") from None
        ours = endpoints.appserver_url if target is None else None
        async with AdminClient(endpoints.authserver_url, ours) as admin:
            levers = _ChildLevers(admin, hello["control"], proc.pid)
            yield Environment(endpoints, clock, admin, levers=levers, target=target)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
        # Reaped and its stdin closed even when it went first (a Ctrl-C reaches the
        # child too): else the transport is left to the garbage collector after the
        # loop has closed, which prints a traceback.
        await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
            with contextlib.suppress(OSError):
                await proc.stdin.wait_closed()


# --------------------------------------------------------------------------- the child


async def _child(config: StackConfig) -> None:
    async with stop_requested() as stop, run_stack(config) as stack:

        async def kick(_r: web.Request) -> web.Response:
            return web.json_response({"kicked": await stack.kick_all()})

        async def restart(request: web.Request) -> web.Response:
            part = request.match_info["part"]
            if part not in PARTS:
                return web.json_response({"error": f"unknown part {part!r}"}, status=404)
            await stack.restart(part)
            return web.json_response({"ok": True})

        async def health(_r: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def fidelity(_r: web.Request) -> web.Response:
            if stack.broker is None:
                return web.json_response({"error": "the broker is not running"}, status=503)
            return web.json_response(stack.broker.fidelity().to_json())

        app = web.Application()
        app.router.add_post("/kick", kick)
        app.router.add_post("/restart/{part}", restart)
        app.router.add_get("/health", health)
        app.router.add_get("/fidelity", fidelity)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            hello = {
                "endpoints": asdict(endpoints_of(stack)),
                "control": f"http://127.0.0.1:{port}",
            }
            sys.stdout.write(json.dumps(hello) + "\n")
            sys.stdout.flush()
            # The parent closing our stdin (it exited, even by a crash) stops us too.
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            await stop.wait(reader.read())
        finally:
            await runner.cleanup()


def main() -> int:
    import logging

    logging.basicConfig(level=logging.WARNING)
    from sim.shared.limits import raise_nofile_limit

    raise_nofile_limit(1 << 20)  # the broker holds one socket per client
    try:
        config = StackConfig.from_json(json.loads(sys.stdin.buffer.readline()))
    except (ValueError, KeyError, TypeError) as exc:
        print(f"scenarios.stack_proc: bad configuration: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_child(config))
    except (OSError, AdminError) as exc:
        print(f"scenarios.stack_proc: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
