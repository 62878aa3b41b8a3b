"""The SDK's clients obey the seed's client rules: a fleet that refreshes (by upload and by
reconnect), is kicked, comes back, restarts from its store and reconnects leaves the
audit clean -- while one device beside it that breaks a rule is found (so a clean audit
here means something).  And the five scenarios' SDK clients, each at a small size."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

import scenarios.base
from mock_broker.audit import AuditReport, Rule
from scenarios.base import ScenarioParams, run_scenario
from sim.customer.client.policy import Backoff
from sim.customer.fleet import Fleet
from sim.harness.pytest_plugin import SimStack
from sim.shared.protocol import build_username

from ..broker.rawmqtt import RawClient


async def test_an_sdk_fleet_leaves_the_audit_clean(
    mqtt_stack: SimStack, mqtt_fleet_factory: Any, tmp_path: Any
) -> None:
    n = 24
    store = tmp_path / "store"
    fleet: Fleet = await mqtt_fleet_factory(
        n, store_dir=store, subscribe_own=True, backoff=Backoff(base=0.5, cap=5)
    )
    # refresh: half by upload, half by reconnect (the fleet's "mixed" mode)
    expiry = min(c.token.expire_at for c in fleet.clients if c.token)
    await mqtt_stack.advance(expiry - mqtt_stack.clock.now() - 310)
    for _ in range(14):
        await mqtt_stack.advance(10)
    await mqtt_stack.eventually(
        lambda: fleet.counters().refreshes_upload + fleet.counters().refreshes_reconnect >= n,
        advance=1.0,
        what="all refreshed",
    )
    assert fleet.counters().refreshes_upload == n // 2
    # a kick: everyone lost at once, back with full jitter
    assert await mqtt_stack.kick_all() == n
    await mqtt_stack.eventually(lambda: fleet.connected_count == 0, what="all lost")
    await mqtt_stack.eventually(
        lambda: fleet.connected_count == n, advance=0.05, what="all back after the kick"
    )
    # a restart: the clients come back with their persisted tokens
    await fleet.close()
    again: Fleet = await mqtt_fleet_factory(n, store_dir=store)
    assert again.counters().tokens_from_store == n and again.counters().token_requests == 0

    report: AuditReport = await mqtt_stack.audit()
    assert report.clients == n  # it saw them all...
    report.assert_clean()  # ... and they broke no rule

    # the same stack finds a device beside them that retries at once, again and again
    user = build_username("dev-ak", "mqtt-dev")
    await mqtt_stack.create_account("GID_audit@@@hasty", "pw", ("test/#",))
    password = await _ask(mqtt_stack, "GID_audit@@@hasty", "pw")
    port = int(mqtt_stack.broker_url.rsplit(":", 1)[1])
    for _ in range(12):
        client, rc, _ = await RawClient.connected(port, "GID_audit@@@hasty", user, password)
        assert rc == 0
        client.writer.transport.abort()  # lost, and back at once
        await mqtt_stack.idle()
    (found,) = (await mqtt_stack.audit()).by_rule(Rule.TIGHT_RETRY)
    assert found.client_ids == ("GID_audit@@@hasty",)


async def _ask(stack: SimStack, client_id: str, secret: str) -> str:
    import aiohttp

    auth = aiohttp.encode_basic_auth(client_id, secret)
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            stack.appserver_url + "/v1/tokens",
            json={"resources": ["test/#"], "actions": "R,W"},
            headers={"Authorization": auth},
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()
        doc = await resp.json()
    return str(doc["password"])


# -- the five scenarios -------------------------------------------------------------------


@pytest.fixture
def audited_scenarios(monkeypatch: pytest.MonkeyPatch) -> list[AuditReport]:
    """Each embedded scenario stack's audit, read as the scenario ends (before its stack
    stops)."""
    real = scenarios.base.embedded_environment
    audits: list[AuditReport] = []

    @contextlib.asynccontextmanager
    async def embedded(*args: Any, **kw: Any) -> AsyncIterator[Any]:
        async with real(*args, **kw) as env:
            try:
                yield env
            finally:
                broker = env.stack.broker if env.stack is not None else None
                if broker is not None:
                    audits.append(broker.audit())

    monkeypatch.setattr(scenarios.base, "embedded_environment", embedded)
    return audits


@pytest.mark.parametrize(
    ("name", "params"),
    [
        (
            "reconnect-storm",
            ScenarioParams(clients=30, options={"slack_s": "2", "stack_process": "0"}),
        ),
        ("cache-reuse", ScenarioParams(clients=12)),
        (
            "outage-recovery",
            ScenarioParams(clients=10, options={"outage_s": "1.5", "new_clients": "30"}),
        ),
        ("expiry-refresh", ScenarioParams(clients=10, options={"lifetimes": "2"}, time_scale=60)),
        ("revocation", ScenarioParams(clients=12, options={"revoke": "4"})),
    ],
)
async def test_the_scenarios_sdk_clients_are_not_flagged(
    name: str, params: ScenarioParams, audited_scenarios: list[AuditReport]
) -> None:
    report = await run_scenario(name, params)
    assert report.error is None, report.error
    (audit,) = audited_scenarios
    assert audit.clients >= params.clients
    if name == "outage-recovery":
        # The scenario wipes the stores of half its cached clients (d0, d2, ...: devices
        # that lost their storage) and its AppServer renews a cached token 10 ms after
        # issuing it: those that got a new token while theirs was valid are flagged --
        # rightly, a lost store looks exactly like none (docs/your-appserver.md).
        wiped = {f"d{i}" for i in range(0, params.clients, 2)}
        for f in audit.findings:
            assert f.rule is Rule.NEW_TOKEN_WHILE_VALID, f.line()
            assert f.client_id.split("@@@")[1] in wiped, f.line()
        return
    audit.assert_clean()
