"""The SDK's shell carries out the planner's plans (SPEC §6), on a manual clock, with an
injected transport (``ClientConfig.transport``) and a scripted AppServer."""

from __future__ import annotations

from typing import Any

import pytest

from sim.customer.client import ClientConfig, EventKind, RefreshPolicy, TokenClient
from sim.customer.client.errors import NetworkError
from sim.shared.clock import ManualClock

from .fakes import EventFeed, FakeBroker, grant, scripted_appserver, unavailable

pytestmark = pytest.mark.timeout(30)


async def _client(
    aiohttp_server: Any, answers: list[Any], broker: FakeBroker, clock: ManualClock, **kw: Any
) -> TokenClient:
    server = await aiohttp_server(scripted_appserver(answers))
    cfg = ClientConfig(
        client_id="GID_test@@@shell",
        secret="s",
        appserver_url=str(server.make_url("")),
        broker_url="mqtt://127.0.0.1:1",  # never dialled: the broker is the fake
        resources=("test/#",),
        transport=broker,
        seed=0,
        **kw,
    )
    return TokenClient(cfg, clock=clock)


async def test_network_errors_back_off_further_each_time_then_connect(aiohttp_server) -> None:
    clock, broker = ManualClock(), FakeBroker()
    broker.refusals = [NetworkError("refused")] * 3
    expire = clock.now() + 3600
    client = await _client(aiohttp_server, [lambda: grant("tok-1", expire)], broker, clock)
    feed = EventFeed(client)
    await client.start()
    try:
        for step in range(3):
            backoff = await feed.next(EventKind.BACKOFF)
            assert backoff.detail["attempt"] == step
            assert 0 <= backoff.detail["delay"] <= 0.5 * 2**step  # full jitter, Backoff()
            clock.advance(backoff.detail["delay"])
        await feed.next(EventKind.CONNECTED)
        assert len(broker.connections) == 4
        assert client.counters.connect_failures == 3
        assert client.counters.token_requests == 1  # the token was fine: not asked again
        assert broker.connections[-1].password == "RW|tok-1"
    finally:
        await client.close()


async def test_a_refresh_put_off_past_expiry_ends_the_session_at_expiry(aiohttp_server) -> None:
    # The AppServer is down when the refresh is due (Retry-After 5 s, more than the token
    # has left) and this broker never ends a session by itself: the client does, at expiry.
    clock, broker = ManualClock(), FakeBroker()
    expire = clock.now() + 100
    client = await _client(
        aiohttp_server,
        [lambda: grant("tok-1", expire), unavailable(5)],
        broker,
        clock,
        refresh=RefreshPolicy(margin=1, min_validity=0),
    )
    feed = EventFeed(client)
    async with client:
        conn = broker.connections[0]
        clock.advance(99)  # the refresh is due: its ask fails
        backoff = await feed.next(EventKind.BACKOFF)
        assert backoff.detail["delay"] >= 5
        assert conn.is_open
        clock.advance(1)
        ended = await feed.next(EventKind.DISCONNECTED)
        assert ended.at == expire
        assert conn.lost.result() == "closed by client"
        clock.advance((await feed.next(EventKind.BACKOFF)).detail["delay"])
        asked = await feed.next(EventKind.TOKEN_REQUESTED)
        assert asked.detail["reason"] == "reapply: expired in session"
