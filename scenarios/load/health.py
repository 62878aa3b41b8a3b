"""Is the load generator itself the limit?  The pure core (docs/load.md, "Honest failures").

A load test that reports a healthy broker as failing because its own worker ran out of
CPU or descriptors is worse than no test.  Every second a worker samples itself
(:class:`ProcessSample`: CPU time, time spent waiting for a CPU, how late its event
loop woke, open descriptors) and :func:`judge` decides from two samples whether the
worker was overloaded in between:

* **CPU** (``cpu``): CPU time / wall time of the worker's event-loop thread, over a
  sliding window, so that one busy second (a spawn burst) is not an overload but three
  are.  Near 1 the worker is busy on its own: a core's worth of work.
* **Hub lag** (``hub-lag``): how much later than asked a 0.25 s sleep of the event
  loop woke.  Every timing the worker takes is inflated by it: a worker falling behind
  because it is starved of CPU (a hog pinned on its core, a loaded machine), a loop
  blocked by work, a long pause of the garbage collector.
* The run-queue wait of the thread (ready to run, waiting for a CPU) is reported as
  ``wait_share`` but judges nothing by itself: measured on this project's shared
  2-core machine, a worker with 10-40 % of a core of work was ready-and-waiting 60-90 %
  of the time -- one short wait per wake-up -- with its event loop on time; and a
  worker beside a pinned CPU hog slowed down (fewer requests) without its timings
  growing.  Where starvation does distort, it shows as hub lag.
* **Descriptors**: open descriptors against the soft ``RLIMIT_NOFILE``.

:func:`blame` then attributes a failed request: to the **generator** when the error is
the generator's own resource (``EMFILE``, ``ENFILE``, no ephemeral port, no buffer
space) or when a timeout / lost connection happened while the generator was
overloaded; to the **system under test** when the server answered (a CONNACK refusal,
an HTTP status) or when the generator was healthy.  No I/O, no clock: samples and
"overloaded" are passed in.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "GENERATOR_ERRNOS",
    "GENERATOR_OVERLOADED",
    "Blame",
    "GeneratorLimits",
    "ProcessSample",
    "Verdict",
    "blame",
    "exhausted_resource",
    "judge",
]

#: The stats entry (name) of a failure attributed to the generator; request type
#: ``GENERATOR``.
GENERATOR_OVERLOADED = "generator:overloaded"

#: Errors that are the generator's own resources running out, whoever it talks to,
#: and the resource each names (a reason of :class:`Verdict`).
GENERATOR_ERRNOS = {
    errno.EMFILE: "descriptors",
    errno.ENFILE: "descriptors",
    errno.ENOBUFS: "memory",
    errno.ENOMEM: "memory",
    errno.EADDRNOTAVAIL: "ephemeral-ports",
}


class Blame(StrEnum):
    GENERATOR = "generator"
    SYSTEM = "system"  # the broker, the AppServer: what the load test is about


@dataclass(frozen=True)
class GeneratorLimits:
    """When a worker counts as overloaded (the ``--generator-*`` options)."""

    #: CPU share of one core (the event-loop thread's), averaged over ``window_s``
    max_cpu_share: float = 0.9
    #: sliding window of the CPU share (seconds of samples)
    window_s: float = 3.0
    #: worst event-loop lateness within one sample interval
    max_hub_lag_s: float = 1.0
    #: open descriptors / soft RLIMIT_NOFILE
    max_fd_share: float = 0.9

    def __post_init__(self) -> None:
        if not 0 < self.max_cpu_share <= 1:
            raise ValueError(f"max_cpu_share must be in (0, 1], got {self.max_cpu_share!r}")
        if not self.window_s > 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s!r}")
        if not self.max_hub_lag_s > 0:
            raise ValueError(f"max_hub_lag_s must be > 0, got {self.max_hub_lag_s!r}")
        if not 0 < self.max_fd_share <= 1:
            raise ValueError(f"max_fd_share must be in (0, 1], got {self.max_fd_share!r}")


@dataclass(frozen=True)
class ProcessSample:
    """Cumulative counters of the worker at one instant (all seconds)."""

    wall_s: float  # monotonic
    cpu_s: float  # CPU time of the event-loop thread
    wait_s: float | None  # run-queue wait of that thread (None: not available here)
    max_lag_s: float  # worst hub lag seen since the previous sample
    fds: int
    fd_limit: int  # soft RLIMIT_NOFILE (<= 0: unlimited)


@dataclass(frozen=True)
class Verdict:
    overloaded: bool
    #: short, stable kinds ("cpu", "hub-lag", "descriptors"): they name a stats entry's
    #: error, so they carry no numbers
    reasons: tuple[str, ...]
    cpu_share: float
    wait_share: float | None
    lag_s: float
    fd_share: float

    def describe(self) -> str:
        """One line with the numbers, for the log."""
        wait = "-" if self.wait_share is None else f"{self.wait_share:.2f}"
        return (
            f"CPU {self.cpu_share:.2f} of a core (waited for one {wait}), hub lag "
            f"{self.lag_s:.2f} s, descriptors {self.fd_share:.0%} of the limit"
        )


def _shares(a: ProcessSample, b: ProcessSample) -> tuple[float, float | None]:
    wall = b.wall_s - a.wall_s
    if wall <= 0:
        return 0.0, None
    cpu = max(0.0, (b.cpu_s - a.cpu_s) / wall)
    if a.wait_s is None or b.wait_s is None:
        return cpu, None
    return cpu, max(0.0, (b.wait_s - a.wait_s) / wall)


def judge(samples: Sequence[ProcessSample], limits: GeneratorLimits) -> Verdict:
    """Judge the newest sample against the window of those before it (oldest first)."""
    if not samples:
        raise ValueError("judge needs at least one sample")
    last = samples[-1]
    # The newest sample at least a window old is the base of the CPU share; with
    # less than a window of history, no CPU verdict yet (a start-up burst is not one).
    base = None
    for s in samples[:-1]:
        if last.wall_s - s.wall_s >= limits.window_s * 0.999:
            base = s
    cpu, wait = _shares(base, last) if base is not None else (0.0, None)
    fd_share = last.fds / last.fd_limit if last.fd_limit > 0 else 0.0
    reasons = []
    if cpu >= limits.max_cpu_share:
        reasons.append("cpu")
    if last.max_lag_s >= limits.max_hub_lag_s:
        reasons.append("hub-lag")
    if fd_share >= limits.max_fd_share:
        reasons.append("descriptors")
    return Verdict(bool(reasons), tuple(reasons), cpu, wait, last.max_lag_s, fd_share)


def exhausted_resource(exc: BaseException) -> str | None:
    """The generator's own resource that ``exc`` says ran out, if any."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return GENERATOR_ERRNOS.get(exc.errno)
    return None


def blame(exc: BaseException, *, overloaded: bool) -> Blame:
    """Whose failure is ``exc``?  ``overloaded``: the generator was overloaded at some
    point while the failed request was in flight."""
    if exhausted_resource(exc) is not None:
        return Blame.GENERATOR
    if isinstance(exc, ConnectionRefusedError):
        return Blame.SYSTEM  # nothing listens there: an answer, however late we read it
    if overloaded and isinstance(exc, TimeoutError | ConnectionError | OSError):
        # A late answer or a dropped connection while the generator could not keep up
        # (its keep-alive late, its reads late): not evidence against the server.
        return Blame.GENERATOR
    return Blame.SYSTEM
