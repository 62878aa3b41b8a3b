"""The shared bottom's small runtime helpers: wait_until, the stop signals, the
process-stats reader, the dev account's one home."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from sim.shared.procstats import cpu_seconds, rss_kb
from sim.shared.shutdown import stop_requested
from sim.shared.waiting import WaitTimeout, wait_until


async def test_wait_until_returns_once_true_and_names_what_it_waited_for() -> None:
    box = {"n": 0}

    def bump() -> None:
        box["n"] += 1

    await wait_until(lambda: box["n"] >= 3, timeout=10, what="three bumps", between=bump)
    assert box["n"] == 3

    async def never() -> bool:
        return False

    with pytest.raises(WaitTimeout, match=r"timed out after 0\.05 s waiting for the moon") as e:
        await wait_until(never, timeout=0.05, what="the moon")
    assert isinstance(e.value, AssertionError)  # a test fails on it, it does not error
    assert e.value.what == "the moon"
    with pytest.raises(ValueError, match="timeout"):
        await wait_until(lambda: True, timeout=0, what="x")


async def test_stop_requested_is_set_by_sigterm_and_the_handler_is_removed() -> None:
    async with stop_requested() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(stop.wait(), 10)
    # Outside the block our handler is gone: the loop has no handler for it any more.
    loop = asyncio.get_running_loop()
    assert loop.remove_signal_handler(signal.SIGTERM) is False


async def test_a_stop_wait_also_ends_when_another_awaitable_does() -> None:
    async with stop_requested() as stop:
        assert await stop.wait(asyncio.sleep(0)) == "done"
        stop.set()
        assert await stop.wait(asyncio.sleep(3600)) == "signal"


def test_a_process_stopped_by_sigterm_exits_cleanly(tmp_path) -> None:
    code = (
        "import asyncio, sys\n"
        "from sim.shared.shutdown import stop_requested\n"
        "async def main():\n"
        "    async with stop_requested() as stop:\n"
        "        print('ready', flush=True)\n"
        "        print(await stop.wait(), flush=True)\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert proc.stdout.read().strip() == "signal"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_process_stats_of_this_and_another_process() -> None:
    assert rss_kb() > 1000  # an interpreter holds more than a megabyte
    assert rss_kb(os.getpid()) > 1000
    assert cpu_seconds() > 0
    mine = cpu_seconds(os.getpid())
    assert 0 < mine <= cpu_seconds() + 0.05  # /proc ticks vs getrusage: same process
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with pytest.raises(OSError):
        cpu_seconds(gone.pid)
    with pytest.raises(OSError):
        rss_kb(gone.pid)


async def test_the_dev_account_has_one_home(tmp_path) -> None:
    """The AuthServer's fresh data dir, the AppServer's defaults and ``up``'s banner all
    take it from sim.shared.devaccount."""
    from mock_authserver.config import DEV_ACCOUNT
    from sim.customer.appserver.config import AppServerConfig
    from sim.shared import devaccount as dev

    assert DEV_ACCOUNT.access_key_id == dev.DEV_ACCESS_KEY
    assert DEV_ACCOUNT.secret == dev.DEV_SECRET_KEY
    assert DEV_ACCOUNT.instances == (dev.DEV_INSTANCE,)
    app = AppServerConfig()
    assert (app.access_key, app.secret_key, app.instance_id) == (
        dev.DEV_ACCESS_KEY,
        dev.DEV_SECRET_KEY,
        dev.DEV_INSTANCE,
    )
