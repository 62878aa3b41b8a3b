"""The load generator's pure core: is it the limit, whose failure is this, what do the
workers' reports add up to (scenarios.load.health, scenarios.load.figures)."""

from __future__ import annotations

import errno
import sys

import pytest

from scenarios.load.figures import WorkerReport, storm_complete, storm_round, totals
from scenarios.load.health import (
    Blame,
    GeneratorLimits,
    ProcessSample,
    blame,
    exhausted_resource,
    judge,
)

LIMITS = GeneratorLimits(max_cpu_share=0.9, window_s=3.0, max_hub_lag_s=1.0, max_fd_share=0.9)


def _samples(
    cpu_per_s: float,
    *,
    n: int = 4,
    wait_per_s: float | None = 0.5,
    lag: float = 0.0,
    fds: int = 10,
    limit: int = 1000,
) -> list[ProcessSample]:
    return [
        ProcessSample(
            wall_s=float(i), cpu_s=cpu_per_s * i,
            wait_s=None if wait_per_s is None else wait_per_s * i,
            max_lag_s=lag, fds=fds, fd_limit=limit,
        )
        for i in range(n)
    ]  # fmt: skip


def test_importing_the_pure_core_does_not_patch_this_process():
    # A pytest process that gevent monkey-patched would break every asyncio test after it.
    assert "gevent" not in sys.modules or not _patched()


def _patched() -> bool:
    from gevent import monkey

    return bool(monkey.is_module_patched("socket"))


@pytest.mark.parametrize(
    ("cpu_per_s", "lag", "fds", "expected"),
    [
        (0.2, 0.0, 10, ()),  # healthy
        (0.95, 0.0, 10, ("cpu",)),  # a core's worth of work on its own
        (0.2, 1.5, 10, ("hub-lag",)),  # starved: its loop wakes late
        (0.2, 0.0, 950, ("descriptors",)),  # near RLIMIT_NOFILE
        (0.95, 2.0, 990, ("cpu", "hub-lag", "descriptors")),
    ],
)
def test_judge_names_each_limit(cpu_per_s, lag, fds, expected):
    v = judge(_samples(cpu_per_s, lag=lag, fds=fds), LIMITS)
    assert v.reasons == expected
    assert v.overloaded is bool(expected)


def test_run_queue_wait_alone_is_no_overload():
    # A loaded machine: the worker with 10-40 % of a core of work is ready and waiting
    # for a CPU most of the time (one short wait per wake-up); its loop is on time.
    for cpu, wait in ((0.1, 0.88), (0.38, 0.61)):
        v = judge(_samples(cpu, wait_per_s=wait), LIMITS)
        assert v.wait_share == pytest.approx(wait)
        assert not v.overloaded
    # Starved so that it falls behind: that shows as lag.
    assert judge(_samples(0.38, wait_per_s=0.61, lag=2.0), LIMITS).reasons == ("hub-lag",)


def test_cpu_needs_a_full_window():
    # One busy second (a spawn burst) is not an overload; a window of them is.
    burst = _samples(0.99, n=2)
    assert judge(burst, LIMITS).reasons == ()
    assert judge(_samples(0.99, n=4), LIMITS).reasons == ("cpu",)


def test_unlimited_descriptors_never_count():
    assert judge(_samples(0.1, fds=10**6, limit=-1), LIMITS).reasons == ()


def test_limits_refuse_nonsense():
    for bad in ({"max_cpu_share": 0}, {"max_fd_share": 1.5}, {"window_s": 0}):
        with pytest.raises(ValueError):
            GeneratorLimits(**bad)


@pytest.mark.parametrize(
    ("exc", "overloaded", "expected"),
    [
        # the generator's own resources: always its failure
        (OSError(errno.EMFILE, "Too many open files"), False, Blame.GENERATOR),
        (OSError(errno.EADDRNOTAVAIL, "no ephemeral port"), False, Blame.GENERATOR),
        # a late answer or a lost connection: the generator's only while it was overloaded
        (TimeoutError("no CONNACK"), True, Blame.GENERATOR),
        (TimeoutError("no CONNACK"), False, Blame.SYSTEM),
        (ConnectionResetError("reset"), True, Blame.GENERATOR),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), False, Blame.SYSTEM),
        # nothing listening is an answer, overloaded or not
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), True, Blame.SYSTEM),
    ],
)
def test_blame(exc, overloaded, expected):
    assert blame(exc, overloaded=overloaded) is expected


def test_blame_of_the_users_own_errors():
    # The error types the Locust users raise (imported, not run: no gevent patching).
    from scenarios.load.appserver import HttpStatus
    from scenarios.load.mqtt import ConnectionLost, NoAnswer, Refused

    # the server answered: the system under test spoke, overloaded or not
    assert blame(Refused("CONNACK refused: Not authorized"), overloaded=True) is Blame.SYSTEM
    assert blame(HttpStatus(503, b"busy"), overloaded=True) is Blame.SYSTEM
    # silence or a lost connection: the generator's while it was overloaded
    assert blame(NoAnswer("no PUBACK"), overloaded=True) is Blame.GENERATOR
    assert blame(NoAnswer("no PUBACK"), overloaded=False) is Blame.SYSTEM
    assert blame(ConnectionLost("lost"), overloaded=True) is Blame.GENERATOR


def test_exhausted_resource_names_it():
    assert exhausted_resource(OSError(errno.ENFILE, "x")) == "descriptors"
    assert exhausted_resource(OSError(errno.ECONNREFUSED, "x")) is None
    assert exhausted_resource(TimeoutError()) is None


# ---------------------------------------------------------------- worker reports


def _report(worker: str, **kw) -> WorkerReport:
    return WorkerReport(worker=worker, **kw)


def test_report_round_trips_through_a_message():
    r = _report("w1", users=3, overload_reasons=("cpu",), storm_last_back=12.5)
    assert WorkerReport.from_message(r.to_message()) == r
    # a newer worker's unknown field does not break an older master
    assert WorkerReport.from_message({**r.to_message(), "new_field": 1}) == r


def test_totals_descriptors_and_cpu_per_user():
    rs = [
        _report("a", users=1000, fds=1080, fds_at_start=20, cpu_s=10.0, wall_s=100.0),
        _report("b", users=1000, fds=1070, fds_at_start=10, cpu_s=30.0, wall_s=100.0),
    ]
    t = totals(rs)
    assert t.users == 2000
    assert t.fds_per_user == pytest.approx(2120 / 2000)
    assert t.cpu_per_user == pytest.approx((0.1 + 0.3) / 2000)
    assert t.mqtt_sockets is None  # not sampled by every worker: not summed
    assert t.overloaded_workers == ()


def test_totals_names_overloaded_workers():
    t = totals([_report("a", overloaded=True, overload_reasons=("cpu",)), _report("b")])
    assert t.overloaded_workers == ("a",)
    assert t.overload_reasons == ("cpu",)


def test_storm_is_complete_only_when_every_worker_and_client_is_back():
    a = _report("a", storm_round=1, storm_lost=5, storm_back=5, connected=5)
    b_late = _report("b", storm_round=1, storm_lost=5, storm_back=4, connected=4)
    b_old_round = _report("b", storm_round=0, storm_lost=5, storm_back=5, connected=5)
    b = _report("b", storm_round=1, storm_lost=5, storm_back=5, connected=5)
    assert not storm_complete([a, b_late], 1, 10)
    assert not storm_complete([a, b_old_round], 1, 10)
    assert storm_complete([a, b], 1, 10)
    assert not storm_complete([], 1, 0)


def test_storm_round_figures():
    kicked = 100.0
    rs = [
        _report("a", storm_round=2, storm_lost=5, storm_back=5, connected=5,
                storm_first_loss=100.05, storm_last_back=101.5),
        _report("b", storm_round=2, storm_lost=5, storm_back=5, connected=5,
                storm_first_loss=100.02, storm_last_back=102.25, storm_token_asks=1),
    ]  # fmt: skip
    fig = storm_round(
        rs, round_no=2, clients=10, lever="kick", kicked_at=kicked,
        appserver_token_requests=0, upstream_applies=0,
    )  # fmt: skip
    assert fig.complete
    assert fig.seconds_back == pytest.approx(2.25)  # kick -> the last CONNACK anywhere
    assert fig.first_loss_after_s == pytest.approx(0.02)
    assert fig.token_traffic == 1  # the devices' own count wins over the AppServer's 0
    incomplete = storm_round(rs[:1], round_no=2, clients=10, lever="kick", kicked_at=kicked)
    assert not incomplete.complete
    assert incomplete.seconds_back is None  # never a time for a storm not over
    assert incomplete.appserver_token_requests is None  # not measured, not 0
