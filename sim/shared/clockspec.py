"""How time is described (pure): the :class:`Clock` protocol, :class:`ClockSpec` and the
clock flags every command shares (SPEC §2).

Configuration modules import this, not :mod:`sim.shared.clock` (which implements the
clocks on the event loop and the wall clock), so that they stay pure.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "Clock",
    "ClockMode",
    "ClockSpec",
    "TimerHandle",
    "add_clock_arguments",
    "clock_spec_from_args",
]

ClockMode = Literal["system", "scaled", "manual"]


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What components need from time.  All values are virtual."""

    @property
    def mode(self) -> ClockMode: ...

    @property
    def scale(self) -> float: ...

    def now(self) -> float:
        """Virtual wall time, seconds since the Unix epoch."""
        ...

    def now_ms(self) -> int:
        """Virtual wall time in milliseconds (the unit of ``expireTime``)."""
        ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle:
        """Run ``callback`` (on the event loop) once virtual time reaches ``when``."""
        ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle: ...

    async def sleep(self, seconds: float) -> None: ...

    async def sleep_until(self, when: float) -> None: ...


@dataclass(frozen=True)
class ClockSpec:
    """How a process builds its clock; passed between processes of one stack."""

    mode: ClockMode = "system"
    scale: float = 1.0
    epoch: float | None = None  # virtual start (scaled/manual)
    wall0: float | None = None  # real time at which virtual time was ``epoch`` (scaled)

    def __post_init__(self) -> None:
        if self.mode not in ("system", "scaled", "manual"):
            raise ValueError(f"clock mode must be system, scaled or manual, got {self.mode!r}")
        if not self.scale > 0:
            raise ValueError(f"time scale must be > 0, got {self.scale!r}")


def add_clock_arguments(parser: argparse.ArgumentParser, *, manual_help: str | None) -> None:
    """The clock flags every command shares; ``manual_help=None`` offers no manual clock
    (a part with no way to be advanced)."""
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        metavar="S",
        help="scaled clock: S virtual seconds per real second (60: a 30-minute token lives 30 s)",
    )
    if manual_help is not None:
        parser.add_argument(
            "--clock", choices=["system", "manual"], default="system", help=manual_help
        )
    parser.add_argument(
        "--clock-epoch",
        type=float,
        default=None,
        metavar="UNIX_S",
        help="virtual start time (scaled/manual); the processes of one stack get the same",
    )
    parser.add_argument(
        "--clock-wall0",
        type=float,
        default=None,
        metavar="UNIX_S",
        help="real time at which virtual time was --clock-epoch (scaled clock)",
    )


def clock_spec_from_args(args: argparse.Namespace) -> ClockSpec:
    """Parse :func:`add_clock_arguments`' flags; :class:`ValueError` says what is wrong."""
    scale = args.time_scale
    if getattr(args, "clock", "system") == "manual":
        if scale is not None:
            raise ValueError("--time-scale and --clock manual exclude each other")
        return ClockSpec(mode="manual", epoch=args.clock_epoch)
    if scale is not None:
        return ClockSpec(mode="scaled", scale=scale, epoch=args.clock_epoch, wall0=args.clock_wall0)
    if args.clock_epoch is not None or args.clock_wall0 is not None:
        raise ValueError("--clock-epoch and --clock-wall0 need --time-scale or --clock manual")
    return ClockSpec()
