"""Time as ``check appserver`` sees it: the AppServer's clock, and whether the check can
move it.

* **manual**: the mock AuthServer runs a manual clock (``GET /admin/clock``) that the
  AppServer reads too (the reference AppServer in ``up --clock manual``, an AppServer
  with a test hook like the foreign one's ``--clock-url``).  While the check runs, time
  flows at :data:`SPEED` times real time (``POST /admin/clock/advance`` in small steps),
  so that whatever waits on the clock -- a backoff, a pacer, a breaker -- moves on; the
  stale-fallback check jumps it, with the flow paused.
* **command**: ``--advance-cmd CMD`` moves the AppServer's clock (``{seconds}`` in CMD is
  replaced: a libfaketime timestamp file, a test endpoint); otherwise real time.
* **real**: the AppServer runs on real time and nothing moves it: checks that need time
  to move are "not measured".
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import AsyncIterator
from typing import Literal

from .observe import AuthServerObserver

__all__ = ["SPEED", "Timeline", "TimelineError"]

TimeMode = Literal["manual", "command", "real"]

#: Virtual seconds per step, and real seconds between steps, of a manual clock's flow.
STEP_S = 0.5
EVERY_S = 0.05
SPEED = STEP_S / EVERY_S


class TimelineError(RuntimeError):
    """The clock could not be moved (a failing --advance-cmd, a refused advance)."""


class Timeline:
    def __init__(
        self, admin: AuthServerObserver, mode: TimeMode, *, advance_cmd: str | None = None
    ):
        self.admin = admin
        self.mode: TimeMode = mode
        self.advance_cmd = advance_cmd
        self._offset_s = 0.0  # command mode: how far the AppServer's clock was moved
        self._now_ms = int(time.time() * 1000)
        self._moved = asyncio.Event()
        self._paused = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def detect(cls, admin: AuthServerObserver, advance_cmd: str | None) -> Timeline:
        if advance_cmd:
            return cls(admin, "command", advance_cmd=advance_cmd)
        clock = await admin.clock()
        timeline = cls(admin, "manual" if clock.mode == "manual" else "real")
        timeline._now_ms = clock.now_ms
        return timeline

    @property
    def can_jump(self) -> bool:
        return self.mode in ("manual", "command")

    def describe(self) -> str:
        return {
            "manual": f"manual clock of the AuthServer, flowing at {SPEED:g}x while checking",
            "command": f"moved by --advance-cmd {self.advance_cmd!r}",
            "real": "real time (nothing moves the AppServer's clock)",
        }[self.mode]

    def now_ms(self) -> int:
        """The AppServer's time as far as the check knows it."""
        if self.mode == "manual":
            return self._now_ms
        return int((time.time() + self._offset_s) * 1000)

    async def start(self) -> None:
        if self.mode == "manual" and self._task is None:
            self._now_ms = (await self.admin.clock()).now_ms
            self._task = asyncio.get_running_loop().create_task(self._flow())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _flow(self) -> None:
        while True:
            await asyncio.sleep(EVERY_S)
            if self._paused:
                continue
            with contextlib.suppress(Exception):  # a busy AuthServer: the next step
                self._set(await self.admin.advance(STEP_S))

    def _set(self, now_ms: int) -> None:
        self._now_ms = max(self._now_ms, now_ms)
        self._moved.set()
        self._moved = asyncio.Event()

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No flow inside (a manual clock moves only by :meth:`jump`)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of the AppServer's time."""
        if self.mode != "manual" or self._task is None:
            await asyncio.sleep(seconds)
            return
        target = self._now_ms + seconds * 1000
        while self._now_ms < target:
            await self._moved.wait()

    async def jump(self, seconds: float) -> None:
        """Move the AppServer's clock ``seconds`` forward at once."""
        if self.mode == "manual":
            self._set(await self.admin.advance(seconds))
            return
        if self.mode == "real":
            raise TimelineError("the AppServer's clock cannot be moved")
        assert self.advance_cmd is not None
        cmd = self.advance_cmd.replace("{seconds}", shlex.quote(f"{seconds:.3f}"))
        proc = await asyncio.create_subprocess_shell(cmd)
        try:
            code = await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            raise TimelineError("--advance-cmd did not finish within 60 s") from None
        if code != 0:
            raise TimelineError(f"--advance-cmd exited {code}")
        self._offset_s += seconds
