import asyncio

import pytest

from sim.shared.clock import ClockSpec, ManualClock, ScaledClock, SystemClock, clock_from_spec


def test_manual_clock_fires_due_timers_in_order_at_their_time():
    clock = ManualClock(start=1000.0)
    seen = []
    clock.call_later(10, lambda: seen.append(("b", clock.now())))
    clock.call_later(5, lambda: seen.append(("a", clock.now())))
    h = clock.call_later(7, lambda: seen.append(("x", clock.now())))
    h.cancel()
    assert clock.advance(4) == 0 and seen == []
    assert clock.advance(100) == 2
    assert seen == [("a", 1005.0), ("b", 1010.0)]
    assert clock.now() == 1104.0 and clock.now_ms() == 1_104_000


def test_manual_clock_timer_scheduled_by_timer_fires_within_same_advance():
    clock = ManualClock(start=0.0)
    seen = []
    clock.call_later(1, lambda: clock.call_later(1, lambda: seen.append(clock.now())))
    clock.advance(5)
    assert seen == [2.0]


def test_manual_clock_never_goes_back():
    with pytest.raises(ValueError):
        ManualClock().advance(-1)


async def test_manual_sleep_wakes_on_advance():
    clock = ManualClock(start=0.0)
    task = asyncio.create_task(clock.sleep(30))
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(29.9)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.1)
    await asyncio.wait_for(task, 1)


def test_scaled_clocks_agree_given_the_same_numbers():
    a = ScaledClock(60, epoch=1_000.0, wall0=500.0)
    b = ScaledClock(60, epoch=1_000.0, wall0=500.0)
    assert abs(a.now() - b.now()) < 1.0
    assert a.scale == 60


async def test_scaled_clock_timer_runs_scaled():
    clock = ScaledClock(1000.0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await clock.sleep(50)  # 50 virtual seconds = 50 ms real
    assert 0.04 <= loop.time() - t0 < 2.0


def test_clock_spec():
    assert isinstance(clock_from_spec(ClockSpec()), SystemClock)
    assert isinstance(clock_from_spec(ClockSpec(mode="manual")), ManualClock)
    assert isinstance(clock_from_spec(ClockSpec(mode="scaled", scale=10)), ScaledClock)
    with pytest.raises(ValueError):
        ClockSpec(mode="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ClockSpec(scale=0)


def test_clock_flags_parse_into_one_spec():
    import argparse

    from sim.shared.clock import add_clock_arguments, clock_spec_from_args

    parser = argparse.ArgumentParser()
    add_clock_arguments(parser, manual_help="manual")

    def spec(*argv):
        return clock_spec_from_args(parser.parse_args(argv))

    assert spec() == ClockSpec()
    assert spec("--clock", "manual", "--clock-epoch", "5") == ClockSpec(mode="manual", epoch=5.0)
    assert spec("--time-scale", "60", "--clock-epoch", "1", "--clock-wall0", "2") == ClockSpec(
        mode="scaled", scale=60.0, epoch=1.0, wall0=2.0
    )
    for bad in (
        ("--clock", "manual", "--time-scale", "2"),
        ("--time-scale", "0"),
        ("--clock-epoch", "5"),
    ):
        with pytest.raises(ValueError):
            spec(*bad)

    no_manual = argparse.ArgumentParser()
    add_clock_arguments(no_manual, manual_help=None)
    with pytest.raises(SystemExit):
        no_manual.parse_args(["--clock", "manual"])


def test_raise_nofile_limit_lifts_the_soft_limit_within_the_hard_one():
    import resource

    from sim.shared.limits import raise_nofile_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 600:
        pytest.skip("hard limit too low to test")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert raise_nofile_limit(512) == 512
        assert raise_nofile_limit(300) == 512  # never down
        if hard != resource.RLIM_INFINITY:
            assert raise_nofile_limit(hard + 10) == hard
            assert raise_nofile_limit() == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
