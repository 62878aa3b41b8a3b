"""The one stack: restart(part) on the same port and data dir, advance() and idle() that
return when what the clock woke has run, wait_feed() on the revocation feed position.

No test here waits on the wall clock: each decides on an event (the stack idle, the
feed applied up to a position); timeouts are hang guards only."""

from __future__ import annotations

import asyncio
from base64 import b64encode
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sim.customer.client.errors import NotAuthorized
from sim.customer.client.transport import Connection, parse_broker_url
from sim.harness.errors import AdminRefused, StackError
from sim.harness.pytest_plugin import SimStack
from sim.harness.stack import StackConfig, StackHandle, run_stack
from sim.shared.clock import ManualClock
from sim.shared.devaccount import DEV_CLIENT_ID, DEV_CLIENT_RESOURCES, DEV_CLIENT_SECRET

pytestmark = pytest.mark.timeout(60)

APPLIES = "mqtt_authserver_requests_total"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[StackHandle]:
    config = StackConfig(data_dir=tmp_path / "data").with_free_ports()
    async with run_stack(config.with_appserver(password_hash_cost=4), clock=ManualClock()) as s:
        yield s


async def _dev_token(stack: StackHandle) -> dict[str, Any]:
    auth = b64encode(f"{DEV_CLIENT_ID}:{DEV_CLIENT_SECRET}".encode()).decode()
    async with stack.admin.http.post(
        f"{stack.appserver_url}/v1/tokens",
        json={"resources": list(DEV_CLIENT_RESOURCES), "actions": "R,W"},
        headers={"Authorization": f"Basic {auth}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())


async def _connect(stack: StackHandle, token: dict[str, Any], client_id: str) -> Connection:
    conn = Connection(client_id, on_message=lambda _m: None)
    await conn.open(
        parse_broker_url(stack.broker_url), username=token["username"], password=token["password"]
    )
    return conn


async def _applies(stack: StackHandle) -> float:
    return (await stack.admin.authserver.metrics()).total(APPLIES, operation="apply")


async def test_restart_each_part_on_its_port_and_data_dir(stack: StackHandle) -> None:
    endpoints = stack.endpoints()
    token = await _dev_token(stack)
    conn = await _connect(stack, token, DEV_CLIENT_ID)

    # The broker: every client dropped; back on the same port, the same token connects
    # (the new broker bootstrapped from the AuthServer).
    old_broker = stack.broker
    await stack.restart("broker")
    assert stack.broker is not old_broker and stack.endpoints() == endpoints
    await stack.idle()
    assert not conn.is_open
    conn = await _connect(stack, token, DEV_CLIENT_ID)

    # The AppServer: its token cache survived (SQLite in the data dir): no new apply.
    await stack.restart("appserver")
    assert stack.endpoints() == endpoints
    assert (await _dev_token(stack))["token"] == token["token"]
    assert await _applies(stack) == 1

    # The AuthServer: the broker and the AppServer follow it to the same URL; a
    # revocation made on the restarted one reaches the broker (its feed position).
    await stack.restart("authserver")
    assert stack.endpoints() == endpoints
    report = await stack.admin.appserver.disable_account(DEV_CLIENT_ID)
    assert report["dropped"] == 1
    await stack.wait_feed()  # the revocation went out, the broker applied it
    assert not conn.is_open
    with pytest.raises(NotAuthorized):
        await _connect(stack, token, "GID_dev@@@probe")
    # The data dir is the one given, laid out per part.
    assert {p.name for p in stack.data_dir.iterdir()} >= {"authserver", "appserver"}


async def test_restart_refuses_what_the_stack_did_not_start(tmp_path: Path) -> None:
    config = StackConfig(data_dir=tmp_path, without=frozenset({"broker"})).with_free_ports()
    async with run_stack(config.with_appserver(password_hash_cost=4)) as stack:
        assert stack.broker is None and "broker" not in stack.endpoints()
        with pytest.raises(StackError, match="broker is left out"):
            await stack.restart("broker")
        with pytest.raises(StackError, match="broker is left out"):
            await stack.kick_all()
        with pytest.raises(StackError, match="not a manual one"):
            await stack.advance(1)


async def test_wait_feed_returns_once_the_broker_applied_the_revocation(
    stack: StackHandle,
) -> None:
    token = await _dev_token(stack)
    conn = await _connect(stack, token, DEV_CLIENT_ID)
    before = await stack.admin.authserver.feed_position()
    await stack.admin.appserver.disable_account(DEV_CLIENT_ID)
    seq = await stack.wait_feed()
    assert seq > before
    assert stack.broker is not None and stack.broker.authority.seq >= seq
    # What the broker does about it has happened too: no sleep, no deadline.
    assert not conn.is_open
    with pytest.raises(NotAuthorized):
        await _connect(stack, token, "GID_dev@@@probe")


async def test_disable_keeps_the_account_delete_removes_it(stack: StackHandle) -> None:
    app = stack.admin.appserver
    await _dev_token(stack)
    report = await app.disable_account(DEV_CLIENT_ID)
    assert report["enabled"] is False and report["dropped"] == 1
    assert (await app.account(DEV_CLIENT_ID))["enabled"] is False  # still there
    await app.enable_account(DEV_CLIENT_ID)
    assert (await app.account(DEV_CLIENT_ID))["enabled"] is True
    await app.delete_account(DEV_CLIENT_ID)
    with pytest.raises(AdminRefused) as err:
        await app.account(DEV_CLIENT_ID)
    assert err.value.status == 404


async def test_plugin_disable_account_disables(mqtt_stack: SimStack) -> None:
    """The plugin's ``disable_account`` used to DELETE the account."""
    await mqtt_stack.create_account("GID_test@@@dis", "pw", ("test/#",))
    await mqtt_stack.disable_account("GID_test@@@dis")
    account = await mqtt_stack.admin.appserver.account("GID_test@@@dis")
    assert account["enabled"] is False


async def test_advance_returns_once_what_it_woke_has_run(
    mqtt_stack: SimStack, mqtt_client_factory: Any
) -> None:
    """Into the refresh window: the SDK's timer fires, it asks the AppServer (which
    applies at the AuthServer), uploads the new token to the broker, gets the PUBACK
    and stores it -- all done when ``advance`` returns, without polling."""
    client = await mqtt_client_factory("GID_test@@@adv", resources=("test/#",), mode="upload")
    old = client.token
    assert old is not None
    fired = await mqtt_stack.advance(old.expire_at - mqtt_stack.clock.now() - 250)
    assert fired >= 1
    assert client.counters.refreshes_upload == 1
    assert client.token is not None and client.token.token != old.token
    assert client.counters.connects == 1  # refreshed in session


async def test_advance_returns_when_the_test_keeps_the_loop_busy(
    mqtt_stack: SimStack, mqtt_client_factory: Any
) -> None:
    """A publisher of the test's own never lets the loop rest: advance() still returns
    (after a bounded number of loop turns), and the refresh completes meanwhile."""
    client = await mqtt_client_factory("GID_test@@@busy", resources=("test/#",), mode="upload")
    old = client.token
    assert old is not None
    stop = asyncio.Event()

    async def publisher() -> None:
        while not stop.is_set():
            await client.publish("test/load", b"x", qos=0)
            await asyncio.sleep(0)

    task = asyncio.create_task(publisher())
    try:
        await mqtt_stack.advance(old.expire_at - mqtt_stack.clock.now() - 250)
        await mqtt_stack.eventually(lambda: client.counters.refreshes_upload == 1, what="upload")
    finally:
        stop.set()
        await task


async def test_advance_fires_timers_that_woken_tasks_set_for_now(tmp_path: Path) -> None:
    """A task the advance woke schedules a timer at the (new) current time, after the
    clock's own sweep: the stack's advance fires that one too, and runs what it wakes."""
    clock = ManualClock()
    config = StackConfig(data_dir=tmp_path, without=frozenset({"broker", "appserver"}))
    async with run_stack(config.with_free_ports(), clock=clock) as stack:
        seen: list[str] = []

        async def sleeper() -> None:
            await clock.sleep(10)
            seen.append("woke")
            clock.call_later(0, lambda: seen.append("due now"))

        task = asyncio.create_task(sleeper())
        await stack.idle()  # the sleeper is asleep on the clock
        await stack.advance(10)
        assert seen == ["woke", "due now"]
        assert task.done()
