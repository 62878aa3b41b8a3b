"""The clock of a part started on its own: it agrees with its AuthServer's (SPEC §2).

In one process (``mqtt-token-sim up``, the pytest plugin) every part shares one clock
object.  A broker, an AppServer or a fleet started as a command of its own reads the
AuthServer's clock (``GET /admin/clock``) instead:

* ``--clock manual`` -- a :class:`ManualClock` that starts at the AuthServer's virtual
  now and follows it (a poll every 0.1 s; time never goes back), so
  ``POST /admin/clock/advance`` on the AuthServer moves this part too;
* ``--time-scale S`` without ``--clock-epoch`` -- a :class:`ScaledClock` whose epoch is
  the AuthServer's virtual now at start: two parts started a minute apart on x60 would
  otherwise be an hour apart;
* no clock flag, for a fleet given ``--authserver``: whatever the AuthServer runs.

Without an AuthServer to read, a scaled clock starts at the real now (and says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from .clock import Clock, ClockSpec, ManualClock, ScaledClock, SystemClock, clock_from_spec
from .exits import CannotRun

__all__ = ["FOLLOW_INTERVAL_S", "AuthServerClock", "part_clock", "read_clock"]

log = logging.getLogger(__name__)

#: Real seconds between two readings of a manual clock being followed.
FOLLOW_INTERVAL_S = 0.1
#: Real seconds a part waits for the AuthServer's first answer.
FIRST_READING_S = 10.0


@dataclass(frozen=True)
class AuthServerClock:
    mode: str
    scale: float
    now: float  # virtual seconds


async def read_clock(
    http: aiohttp.ClientSession,
    base_url: str,
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - one HTTP request's limit
) -> AuthServerClock:
    """``GET /admin/clock``; raises :class:`aiohttp.ClientError`, :class:`TimeoutError`
    or :class:`ValueError` (an answer that is not a clock)."""
    async with http.get(
        base_url.rstrip("/") + "/admin/clock", timeout=aiohttp.ClientTimeout(total=timeout)
    ) as resp:
        if resp.status != 200:
            raise ValueError(f"GET /admin/clock answered {resp.status}")
        doc = await resp.json(content_type=None)
    try:
        return AuthServerClock(str(doc["mode"]), float(doc["scale"]), int(doc["now_ms"]) / 1000)
    except (KeyError, TypeError, ValueError):
        raise ValueError("GET /admin/clock answered something that is not a clock") from None


async def _first_reading(http: aiohttp.ClientSession, base_url: str) -> AuthServerClock:
    deadline = time.monotonic() + FIRST_READING_S
    while True:
        try:
            return await read_clock(http, base_url)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            if time.monotonic() >= deadline:
                raise CannotRun(
                    f"cannot read the AuthServer's clock at {base_url}/admin/clock"
                    f" ({exc or type(exc).__name__}): is the AuthServer up?"
                ) from None
        await asyncio.sleep(0.2)


async def _follow(clock: ManualClock, http: aiohttp.ClientSession, base_url: str) -> None:
    while True:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
            info = await read_clock(http, base_url)
            if info.now > clock.now():
                clock.set(info.now)
        await asyncio.sleep(FOLLOW_INTERVAL_S)


def _scaled_beside(spec: ClockSpec, auth: AuthServerClock, base_url: str) -> ScaledClock:
    if auth.mode != "scaled" or auth.scale != spec.scale:
        what = f"x{auth.scale:g}" if auth.mode == "scaled" else f"a {auth.mode} clock"
        log.warning(
            "the AuthServer at %s runs %s, this part x%g: their times will part",
            base_url,
            what,
            spec.scale,
        )
    return ScaledClock(spec.scale, epoch=auth.now, wall0=time.time())


@contextlib.asynccontextmanager
async def part_clock(spec: ClockSpec | None, authserver_url: str | None) -> AsyncIterator[Clock]:
    """This part's clock for the block (module docstring); ``spec`` None: follow
    whatever the AuthServer at ``authserver_url`` runs.  :class:`CannotRun` when a
    manual clock has no AuthServer to follow."""
    if spec is not None and (spec.mode == "system" and spec.scale == 1.0):
        yield SystemClock()
        return
    if authserver_url is None:
        if spec is None:
            yield SystemClock()
            return
        if spec.mode == "manual":
            raise CannotRun("--clock manual follows the AuthServer's clock: give --authserver URL")
        yield clock_from_spec(spec)
        return
    if spec is not None and spec.mode == "scaled" and spec.epoch is not None:
        yield clock_from_spec(spec)  # the processes of one stack were given one epoch
        return
    async with aiohttp.ClientSession() as http:
        auth = await _first_reading(http, authserver_url)
        if spec is None:
            spec = ClockSpec(mode=auth.mode, scale=auth.scale)  # type: ignore[arg-type]
            if auth.mode == "system":
                yield SystemClock()
                return
        if spec.mode == "scaled":
            yield _scaled_beside(spec, auth, authserver_url)
            return
        if auth.mode != "manual":
            raise CannotRun(
                f"--clock manual: the AuthServer at {authserver_url} runs a {auth.mode} clock,"
                " not a manual one (start it with --clock manual too)"
            )
        clock = ManualClock(auth.now)
        follower = asyncio.create_task(_follow(clock, http, authserver_url))
        try:
            yield clock
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
