"""The embedded stack in a child process, with a small control API for its levers.

Why: a scenario's clients and the stack share one event loop when they share a process,
so on a 2-core machine the broker and a thousand reconnecting clients take turns on
one core.  Real fleets and brokers never share a CPU.  With the stack in a child
process each side gets a core, and the raw connect baseline (measured from the scenario
process) and the storm are measured across the same process boundary.

Child: ``python -m scenarios.stack_proc OPTIONS_JSON`` starts :func:`embedded_environment`
plus a loopback control app, prints one JSON line ``{"endpoints": {...}, "control": url}``
on stdout and runs until its stdin closes (the parent went away) or SIGTERM.

Control API (loopback, free port): ``POST /kick`` (the broker drops every client),
``POST /restart/broker``, ``POST /restart/appserver``, ``GET /health``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sim.shared.clock import Clock, ScaledClock, SystemClock

from .env import EmbeddedOptions, Endpoints, Environment, EnvironmentError_

__all__ = ["subprocess_environment"]

_STARTUP_TIMEOUT_S = 60.0


class _Remote(Environment):
    """An environment whose embedded-only levers go to the child's control API."""

    def __init__(self, *args: Any, control: str, pid: int, **kw: Any):
        super().__init__(*args, **kw)
        self._control = control
        self._pid = pid

    def stack_cpu_seconds(self) -> float | None:
        """utime + stime of the child from ``/proc`` (Linux); None elsewhere."""
        try:
            with open(f"/proc/{self._pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    async def _post(self, path: str) -> dict[str, Any]:
        async with self.http.post(f"{self._control}{path}") as resp:
            body = await resp.json(content_type=None)
            if resp.status != 200:
                raise EnvironmentError_(f"stack control {path} answered {resp.status}: {body}")
            return dict(body)

    async def kick_all(self) -> int:
        return int((await self._post("/kick")).get("kicked", 0))

    async def restart_broker(self) -> None:
        await self._post("/restart/broker")

    async def restart_appserver(self) -> None:
        await self._post("/restart/appserver")


def _options_json(options: EmbeddedOptions) -> str:
    doc = asdict(options)
    doc["data_dir"] = str(options.data_dir) if options.data_dir else None
    doc["appserver_overrides"] = dict(options.appserver_overrides)
    doc["broker_overrides"] = dict(options.broker_overrides)
    doc["authserver_rate_limits"] = dict(options.authserver_rate_limits)
    return json.dumps(doc)


def _options_from_json(text: str) -> EmbeddedOptions:
    doc = json.loads(text)
    if doc.get("data_dir"):
        doc["data_dir"] = Path(doc["data_dir"])
    return EmbeddedOptions(**doc)


@contextlib.asynccontextmanager
async def subprocess_environment(
    options: EmbeddedOptions, *, scale: float = 1.0
) -> AsyncIterator[Environment]:
    """Start the stack in a child process; yield an :class:`Environment` on it.

    A scaled clock is shared by handing the child the same epoch and wall0 (SPEC §2)."""
    clock: Clock
    clock_args: list[str] = []
    if scale != 1.0:
        sc = ScaledClock(scale)
        clock = sc
        clock_args = [f"{sc.scale}", f"{sc.epoch}", f"{sc.wall0}"]
    else:
        clock = SystemClock()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scenarios.stack_proc",
        _options_json(options),
        *clock_args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), _STARTUP_TIMEOUT_S)
            hello = json.loads(line)
        except (TimeoutError, ValueError) as exc:
            raise EnvironmentError_(f"the stack process did not start: {exc!r}") from None
        endpoints = Endpoints(**hello["endpoints"])
        async with aiohttp.ClientSession() as http:
            yield _Remote(
                endpoints, clock, http, embedded=True, control=hello["control"], pid=proc.pid
            )
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# --------------------------------------------------------------------------- the child


async def _child(options: EmbeddedOptions, clock: Clock) -> None:
    from .env import embedded_environment

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async with embedded_environment(options, clock=clock) as env:

        async def kick(_r: web.Request) -> web.Response:
            return web.json_response({"kicked": await env.kick_all()})

        async def restart_broker(_r: web.Request) -> web.Response:
            await env.restart_broker()
            return web.json_response({"ok": True})

        async def restart_appserver(_r: web.Request) -> web.Response:
            await env.restart_appserver()
            return web.json_response({"ok": True})

        async def health(_r: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_post("/kick", kick)
        app.router.add_post("/restart/broker", restart_broker)
        app.router.add_post("/restart/appserver", restart_appserver)
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        hello = {"endpoints": asdict(env.endpoints), "control": f"http://127.0.0.1:{port}"}
        sys.stdout.write(json.dumps(hello) + "\n")
        sys.stdout.flush()

        # The parent closing our stdin (it exited, even by a crash) stops us too.
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        eof = asyncio.ensure_future(reader.read())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({eof, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for t in (eof, stopped):
            t.cancel()
        await runner.cleanup()


def main(argv: list[str]) -> int:
    import logging

    from sim.shared.logredact import install_log_guards

    logging.basicConfig(level=logging.WARNING)
    install_log_guards()  # no credential in a log line, no flood (docs/authserver.md)
    from sim.shared.limits import raise_nofile_limit

    raise_nofile_limit(1 << 20)  # the broker holds one socket per client
    options = _options_from_json(argv[0])
    clock: Clock = SystemClock()
    if len(argv) >= 4:
        clock = ScaledClock(float(argv[1]), epoch=float(argv[2]), wall0=float(argv[3]))
    asyncio.run(_child(options, clock))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
