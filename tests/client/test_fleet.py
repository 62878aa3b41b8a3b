"""Fleet: many SDK clients in one process, against the real stack."""

from __future__ import annotations

from collections import Counter

import pytest

from sim.customer.client import EventKind
from sim.customer.fleet import Fleet, FleetConfig, make_identities
from sim.harness.pytest_plugin import SimStack
from sim.shared.protocol import validate_client_id

pytestmark = pytest.mark.timeout(90)


def test_identities_are_faker_made_valid_and_repeatable() -> None:
    a = make_identities(200, group="fleet", prefix="fleet", seed=3)
    b = make_identities(200, group="fleet", prefix="fleet", seed=3)
    c = make_identities(200, group="fleet", prefix="fleet", seed=4)
    assert a == b and a != c
    assert len({i.client_id for i in a}) == 200
    for ident in a:
        validate_client_id(ident.client_id)
        assert ident.resources == (f"fleet/{ident.client_id.split('@@@')[1]}/#",)
        assert len(ident.secret) == 20


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="mode"):
        FleetConfig(clients=1, appserver_url="http://x", broker_url="mqtt://x", mode="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clients"):
        FleetConfig(clients=0, appserver_url="http://x", broker_url="mqtt://x")


async def test_fleet_starts_restarts_from_store_and_refreshes_spread_out(
    mqtt_stack: SimStack, mqtt_fleet_factory, tmp_path
) -> None:
    store = tmp_path / "fleet-store"
    fleet: Fleet = await mqtt_fleet_factory(20, store_dir=store, subscribe_own=True)
    assert fleet.connected_count == 20
    totals = fleet.counters()
    assert totals.token_requests == 20 and totals.connects == 20
    assert len(fleet.connect_latencies) == 20
    assert await mqtt_stack.metric("appserver", "appserver_accounts") >= 20

    # every client talks on its own topic space
    c0 = fleet.clients[0]
    await c0.publish(c0.config.resources[0].removesuffix("#") + "x", b"ping", qos=1)
    await mqtt_stack.eventually(lambda: fleet.received == 1, what="echo")

    # refresh: mixed modes, spread over [expiry - 300, expiry - 180]
    def settled() -> bool:
        t = fleet.counters()
        return t.token_requests == t.tokens_received + t.token_request_failures

    expiry = min(c.token.expire_at for c in fleet.clients if c.token)
    await mqtt_stack.advance(expiry - mqtt_stack.clock.now() - 310)
    for _ in range(14):
        await mqtt_stack.advance(10)
        await mqtt_stack.eventually(settled, what=f"refresh answers {fleet.counters()}")
    await mqtt_stack.eventually(
        lambda: fleet.counters().refreshes_upload + fleet.counters().refreshes_reconnect >= 20,
        what="all refreshed",
    )
    await mqtt_stack.eventually(lambda: fleet.counters().connects == 30, what="reconnects")
    totals = fleet.counters()
    assert totals.refreshes_upload == 10 and totals.refreshes_reconnect == 10
    times = sorted(
        e.at
        for c in fleet.clients
        for e in c.events.events
        if e.kind in (EventKind.REFRESH_UPLOAD, EventKind.REFRESH_RECONNECT)
    )
    # spread out over the window (10 s steps), not one stampede at the notice
    assert len(set(times)) >= 4 and max(Counter(times).values()) <= 12
    assert totals.connects == 30  # reconnect-mode clients came back once each
    await fleet.close()

    again: Fleet = await mqtt_fleet_factory(20, store_dir=store)
    totals = again.counters()
    assert totals.tokens_from_store == 20
    assert totals.token_requests == 0
    assert again.connected_count == 20
