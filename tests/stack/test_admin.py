"""The one admin client (sim.harness.admin) against a real AuthServer and AppServer:
every call it offers, and clear errors when a part is down or refuses."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sim.harness.admin import AdminClient, ClientAccount
from sim.harness.errors import AdminError, AdminRefused, AdminUnreachable
from sim.harness.stack import StackConfig, StackHandle, run_stack
from sim.shared.clock import ManualClock
from sim.shared.devaccount import DEV_ACCESS_KEY, DEV_INSTANCE

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[StackHandle]:
    config = StackConfig(data_dir=tmp_path, without=frozenset({"broker"})).with_free_ports()
    async with run_stack(config.with_appserver(password_hash_cost=1), clock=ManualClock()) as s:
        yield s


async def test_authserver_calls(stack: StackHandle) -> None:
    auth = stack.admin.authserver
    assert (await auth.health())["status"] == "ok"
    clock = await auth.clock()
    assert clock.mode == "manual"
    after = await auth.advance_clock(60)
    assert after.now_ms == clock.now_ms + 60_000
    fid = await auth.add_fault({"operation": "revoke", "kind": "status", "status": 503})
    assert [f["id"] for f in await auth.faults()] == [fid]
    await auth.remove_fault(fid)
    assert await auth.faults() == []
    await auth.add_fault({"operation": "apply", "kind": "latency", "ms": 1})
    await auth.clear_faults()
    assert await auth.faults() == []
    await auth.seed_faults(7)
    assert [a["access_key_id"] for a in await auth.accounts()] == [DEV_ACCESS_KEY]
    await auth.put_account("ak2", secret="sk2", instances=["i2"])
    assert (await auth.account("ak2"))["instances"] == ["i2"]
    seq = await auth.feed_position()
    await auth.put_account("ak2", enabled=False)  # an account event on the feed
    assert await auth.feed_position() > seq
    assert (await auth.account("ak2"))["enabled"] is False
    await auth.delete_account("ak2")
    await auth.set_parent_topics(DEV_INSTANCE, ["dev", "fleet"])
    await auth.add_parent_topic(DEV_INSTANCE, "extra")
    assert (await auth.instance(DEV_INSTANCE))["parent_topics"] == ["dev", "extra", "fleet"]
    await auth.remove_parent_topic(DEV_INSTANCE, "extra")
    [dev] = [i for i in await auth.instances() if i["instance_id"] == DEV_INSTANCE]
    assert sorted(dev["parent_topics"]) == ["dev", "fleet"]
    assert (await auth.bootstrap())["accounts"][0]["instances"] == [DEV_INSTANCE]
    metrics = await auth.metrics()
    assert "mqtt_authserver_requests_total" in metrics.names() or metrics.names()


async def test_appserver_calls_import_in_chunks(stack: StackHandle) -> None:
    app = stack.admin.appserver
    accounts = [ClientAccount(f"GID_a@@@d{i}", "pw", (f"a/d{i}/#",)) for i in range(2500)]
    counts = await app.import_accounts(accounts)  # 1,000 per request: three requests
    assert sum(counts.values()) >= 2500
    assert len(await app.accounts()) == 2500 + 1  # and the dev client
    view = await app.put_account("GID_a@@@d1", grants=[{"resources": ["b/#"], "actions": "R"}])
    assert view["grants"] == [{"resources": ["b/#"], "actions": "R"}]
    assert (await app.health())["accounts"] == 2501
    assert (await app.metrics()).names()


async def test_a_refusal_names_the_call_the_status_and_the_part_s_message(
    stack: StackHandle,
) -> None:
    with pytest.raises(AdminRefused) as err:
        await stack.admin.authserver.add_fault({"operation": "apply", "kind": "bogus"})
    assert err.value.status == 400
    assert "AuthServer POST /admin/faults answered 400" in str(err.value)
    assert "kind" in err.value.message
    with pytest.raises(AdminRefused, match="AppServer GET /admin/accounts/GID_x@@@nobody") as e:
        await stack.admin.appserver.account("GID_x@@@nobody")
    assert e.value.status == 404


async def test_a_part_that_is_down_is_unreachable_not_a_stack_trace(tmp_path: Path) -> None:
    config = StackConfig(data_dir=tmp_path, without=frozenset({"broker", "appserver"}))
    async with run_stack(config.with_free_ports()) as stack:
        url = stack.authserver_url
    async with AdminClient(url) as admin:
        with pytest.raises(AdminUnreachable, match=re.escape(f"the AuthServer at {url} is not")):
            await admin.authserver.health()
        with pytest.raises(AdminError, match="no AppServer URL"):
            admin.appserver  # noqa: B018 - the property raises
