"""The generator watching itself: samples for :mod:`.health`, taken under gevent.

One sampler greenlet per process reads, every second, the CPU time and run-queue wait
of the event-loop thread (``/proc/self/schedstat``; ``getrusage`` without the wait
elsewhere), the open descriptors (``/proc/self/fd``) against the soft
``RLIMIT_NOFILE``, and the worst lateness a 0.25 s probe sleep saw; :func:`.health.judge`
turns them into a verdict.  When a worker becomes overloaded it says so once per
episode: a WARNING log line with the numbers and a ``generator:overloaded`` failure in
Locust's stats (request type ``GENERATOR``), so the master's stats, the CSV and the
exit status (:mod:`.runtime`) carry it.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import time
from collections import deque
from collections.abc import Callable

import gevent

from sim.shared import procstats

from .health import GeneratorLimits, ProcessSample, Verdict, judge

__all__ = ["GeneratorMonitor", "read_sample_counters", "rss_kb"]

log = logging.getLogger("mqtt_token_sim.load")

_PROBE_S = 0.25


def _schedstat() -> tuple[float, float] | None:
    """(CPU seconds, run-queue wait seconds) of this process's main thread (Linux)."""
    try:
        with open("/proc/self/schedstat") as fh:
            on_cpu, wait, _ = fh.read().split()
        return int(on_cpu) / 1e9, int(wait) / 1e9
    except (OSError, ValueError):
        return None


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the listing's own
    except OSError:
        return 0


def rss_kb() -> int:
    """Resident set size of this process (KiB; 0 where ``/proc`` is not there)."""
    try:
        return procstats.rss_kb()
    except OSError:
        return 0


def _fd_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return -1 if soft == resource.RLIM_INFINITY else int(soft)


def read_sample_counters() -> tuple[float, float | None, int, int]:
    """(thread CPU s, run-queue wait s or None, open descriptors, descriptor limit)."""
    stat = _schedstat()
    if stat is None:
        cpu, wait = procstats.cpu_seconds(), None
    else:
        cpu, wait = stat
    return cpu, wait, _open_fds(), _fd_limit()


class GeneratorMonitor:
    """Samples this process every ``interval`` seconds while started."""

    def __init__(
        self,
        limits: GeneratorLimits,
        *,
        on_overload: Callable[[Verdict], None] | None = None,
        interval: float = 1.0,
    ) -> None:
        self.limits = limits
        self.interval = interval
        self._on_overload = on_overload
        self._probe_due: float | None = None
        self._greenlets: list[gevent.Greenlet] = []
        self._gc_started: float | None = None
        self.peak_gc_pause_s: float = 0.0
        self.reset()

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        if self._greenlets:
            return
        self.reset()
        self._greenlets = [gevent.spawn(self._probe), gevent.spawn(self._sample_loop)]
        if self._gc_callback not in gc.callbacks:
            gc.callbacks.append(self._gc_callback)

    def stop(self) -> None:
        greenlets, self._greenlets = self._greenlets, []
        for g in greenlets:
            g.kill(block=False)
        if self._gc_callback in gc.callbacks:
            gc.callbacks.remove(self._gc_callback)

    def _gc_callback(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            pause = time.perf_counter() - self._gc_started
            self._gc_started = None
            if pause > self.peak_gc_pause_s:
                self.peak_gc_pause_s = pause

    def reset(self) -> None:
        """A new test: the figures start again (the overload history too)."""
        self._samples: deque[ProcessSample] = deque()
        self._lag_max = 0.0
        self.verdict: Verdict | None = None
        self._last_overloaded_at = float("-inf")
        self.ever_overloaded = False
        self.reasons: list[str] = []
        self.peak_cpu_share = 0.0
        self.peak_wait_share = 0.0
        self.peak_lag_s = 0.0
        #: the longest pause of Python's cyclic collector (it stops the event loop too)
        self.peak_gc_pause_s = 0.0
        self.started_mono = time.monotonic()
        self.started_cpu = procstats.cpu_seconds()
        self.fds_at_start = _open_fds()
        self.rss_kb_at_start = rss_kb()

    # ------------------------------------------------------------------ questions
    def overloaded_since(self, t_mono: float) -> bool:
        """Was this process overloaded at any sample covering ``t_mono`` or later, or
        is its event loop late right now (the probe overdue: the sampler itself may not
        have run since the loop was blocked)?"""
        if self.verdict is not None and self.verdict.overloaded:
            return True
        if self.current_lag() >= self.limits.max_hub_lag_s:
            return True
        return self._last_overloaded_at >= t_mono - self.interval

    def current_lag(self) -> float:
        """How overdue the probe's wake-up is now (0 when it is not)."""
        if self._probe_due is None:
            return 0.0
        return max(0.0, time.perf_counter() - self._probe_due)

    def note(self, reason: str) -> None:
        """An error said a resource of the generator ran out (e.g. ``EMFILE``)."""
        self._last_overloaded_at = time.monotonic()
        if not self.ever_overloaded:
            log.warning(
                "load generator out of %s (pid %d): failures from it are counted as the "
                "generator's (generator:overloaded), not the stack's",
                reason,
                os.getpid(),
            )
        self.ever_overloaded = True
        if reason not in self.reasons:
            self.reasons.append(reason)

    def cpu_seconds(self) -> float:
        return procstats.cpu_seconds() - self.started_cpu

    def wall_seconds(self) -> float:
        return time.monotonic() - self.started_mono

    # ------------------------------------------------------------------ greenlets
    def _probe(self) -> None:
        while True:
            self._probe_due = time.perf_counter() + _PROBE_S
            gevent.sleep(_PROBE_S)
            late = time.perf_counter() - self._probe_due
            self._probe_due = None
            if late > self._lag_max:
                self._lag_max = late

    def _sample_loop(self) -> None:
        while True:
            gevent.sleep(self.interval)
            self.take_sample()

    def take_sample(self) -> Verdict:
        cpu, wait, fds, limit = read_sample_counters()
        lag, self._lag_max = max(self._lag_max, self.current_lag()), 0.0
        now = time.monotonic()
        self._samples.append(ProcessSample(now, cpu, wait, lag, fds, limit))
        while len(self._samples) > 2 and now - self._samples[1].wall_s >= self.limits.window_s:
            self._samples.popleft()
        verdict = judge(list(self._samples), self.limits)
        was = self.verdict is not None and self.verdict.overloaded
        self.verdict = verdict
        self.peak_cpu_share = max(self.peak_cpu_share, verdict.cpu_share)
        self.peak_wait_share = max(self.peak_wait_share, verdict.wait_share or 0.0)
        self.peak_lag_s = max(self.peak_lag_s, verdict.lag_s)
        if verdict.overloaded:
            self._last_overloaded_at = now
            self.ever_overloaded = True
            for r in verdict.reasons:
                if r not in self.reasons:
                    self.reasons.append(r)
            if not was:
                log.warning(
                    "load generator overloaded (pid %d, %s): %s -- failures while this "
                    "lasts are counted as the generator's (%s), not the stack's",
                    os.getpid(),
                    "+".join(verdict.reasons),
                    verdict.describe(),
                    "generator:overloaded",
                )
                if self._on_overload is not None:
                    self._on_overload(verdict)
        return verdict
