"""The loop's idle point (sim.harness.idle): it returns once nothing in the process can
progress without a timer or an outside peer -- however long the chain of wake-ups,
across sockets and thread-pool jobs -- and says so when the loop never rests."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sim.harness.errors import LoopNotIdle
from sim.harness.idle import track_loop, wait_idle


async def test_a_long_chain_of_wakeups_has_run() -> None:
    """Each task wakes the next through a future: 200 loop turns deep (the plugin's old
    ``settle=20`` yields would have stopped a tenth of the way)."""
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(201)]
    done: list[int] = []

    async def link(i: int) -> None:
        await futures[i]
        done.append(i)
        futures[i + 1].set_result(None)

    tasks = [asyncio.create_task(link(i)) for i in range(200)]
    await wait_idle()
    assert done == []  # everyone waits for the first
    futures[0].set_result(None)
    await wait_idle()
    assert done == list(range(200)) and all(t.done() for t in tasks)


async def test_in_process_socket_round_trips_have_run() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got: list[bytes] = []

    async def read() -> None:
        while data := await reader.read(100):
            got.append(data)

    reading = asyncio.create_task(read())
    try:
        for n in range(5):
            writer.write(b"ping %d" % n)
            await wait_idle()
            assert b"".join(got).endswith(b"ping %d" % n)
    finally:
        writer.close()
        await wait_idle()
        assert reading.done()  # the echo server's close reached us too
        server.close()
        await server.wait_closed()


async def test_thread_pool_jobs_have_handed_back_their_result() -> None:
    """A job of the default executor (token stores, password hashes) is in flight until
    its result reached the task that awaits it."""
    track_loop()  # as the stack does before its parts start
    release = threading.Event()
    results: list[str] = []

    def job() -> str:
        release.wait(30)
        return "done"

    async def caller() -> None:
        results.append(await asyncio.to_thread(job))

    task = asyncio.create_task(caller())
    await asyncio.sleep(0)  # the job is submitted
    threading.Timer(0.05, release.set).start()
    await wait_idle()
    assert results == ["done"] and task.done()


async def test_a_pending_timer_is_not_activity() -> None:
    sleeper = asyncio.create_task(asyncio.sleep(3600))
    await wait_idle()  # returns at once: the sleeper waits on a timer
    assert not sleeper.done()
    sleeper.cancel()


async def test_a_loop_that_never_rests_is_an_error() -> None:
    async def spin() -> None:
        while True:  # noqa: ASYNC110 - the point: a task that never waits on anything
            await asyncio.sleep(0)

    spinner = asyncio.create_task(spin())
    try:
        with pytest.raises(LoopNotIdle, match="did not go idle"):
            await wait_idle(timeout=0.2)
        # ... or, asked to, gives up after a number of loop turns (not of seconds).
        assert await wait_idle(timeout=30, max_turns=50) is False
    finally:
        spinner.cancel()
    assert await wait_idle(max_turns=50) is True
