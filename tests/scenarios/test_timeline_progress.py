"""The timeline sampler (real loop, fake monotonic time where it matters) and the progress bar."""

from __future__ import annotations

import asyncio
import io

from scenarios.progress import Progress, render_bar
from scenarios.timeline import TimelineSampler


async def test_sampler_records_at_start_during_and_end():
    state = {"connected": 0}
    ticks = asyncio.Event()
    calls = 0

    def probe():
        nonlocal calls
        calls += 1
        if calls >= 4:
            ticks.set()
        return dict(state)

    async with TimelineSampler(probe, interval_s=0.01) as tl:
        state["connected"] = 5
        tl.mark("kick")
        await asyncio.wait_for(ticks.wait(), 5)
        state["connected"] = 7
    assert tl.points[0].values == {"connected": 0.0}
    assert tl.points[-1].values == {"connected": 7.0}
    assert len(tl.points) >= 5
    ts = [p.t for p in tl.points]
    assert ts == sorted(ts)
    assert [m.label for m in tl.marks] == ["kick"]


async def test_sampler_accepts_async_probe_and_survives_errors():
    n = 0

    async def probe():
        nonlocal n
        n += 1
        if n == 1:
            raise ConnectionError("metrics not up yet")
        return {"applies": n}

    async with TimelineSampler(probe, interval_s=1000) as tl:
        pass
    assert tl.probe_errors == 1
    assert [p.values["applies"] for p in tl.points] == [2.0]


def test_render_bar():
    assert render_bar("storm", 5, 10, "back", width=10) == "storm [#####.....] 5/10  back"
    assert render_bar("wait", 3, None) == "wait 3"
    assert render_bar("teardown", 0, None) == "teardown"  # not "teardown 0"


def test_progress_on_a_pipe_is_throttled_but_shows_completion():
    now = [0.0]
    out = io.StringIO()
    p = Progress(out, tty=False, log_every_s=5.0, monotonic=lambda: now[0])
    p.phase("connect", total=100)
    for i in range(1, 100):
        now[0] += 0.01
        p.update(i)
    p.update(100)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("connect [") and lines[0].endswith("0/100")
    assert lines[-1].endswith("100/100")
    assert len(lines) == 2


def test_progress_on_a_terminal_redraws_one_line():
    now = [0.0]
    out = io.StringIO()
    p = Progress(out, tty=True, redraw_every_s=0.0, monotonic=lambda: now[0])
    p.phase("storm", total=4)
    for i in range(1, 5):
        now[0] += 1
        p.update(i)
    p.close()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.count("\r") == 5
    assert text.rstrip().endswith("4/4")
