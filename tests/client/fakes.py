"""Stand-ins for the SDK's tests of its shell: a broker behind ``ClientConfig.transport``
(no socket) and a scripted AppServer (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from sim.customer.client import ClientEvent, EventKind, TokenClient
from sim.customer.client.errors import NotConnected
from sim.customer.client.transport import BrokerAddress, IncomingMessage, Will


class FakeConnection:
    """One session with :class:`FakeBroker`: every publish and subscribe is acknowledged
    at once; the session ends only when the client closes it or :meth:`end` is called."""

    def __init__(self, broker: FakeBroker, client_id: str) -> None:
        self.broker = broker
        self.client_id = client_id
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.published: list[tuple[str, bytes]] = []
        self.password: str | None = None
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open and not self.lost.done()

    async def open(
        self,
        address: BrokerAddress,
        *,
        username: str | None,
        password: str | None,
        keepalive: int,
        connect_timeout: float,
    ) -> bool:
        self.password = password
        if self.broker.refusals:
            raise self.broker.refusals.pop(0)
        self._open = True
        return False

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool, ack_timeout: float
    ) -> None:
        if not self.is_open:
            raise NotConnected("not connected")
        self.published.append((topic, payload))

    async def subscribe(self, topic: str, qos: int, *, ack_timeout: float) -> int:
        if not self.is_open:
            raise NotConnected("not connected")
        return qos

    async def close(self) -> None:
        self.end("closed by client")

    def end(self, reason: str) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)
        self._open = False


class FakeBroker:
    """A :class:`~sim.customer.client.transport.ConnectionFactory`: accepts every CONNECT
    except those told to fail (``refusals``, raised by the next opens in order)."""

    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []
        self.refusals: list[BaseException] = []

    def __call__(
        self,
        client_id: str,
        *,
        on_message: Callable[[IncomingMessage], object],
        clean_session: bool,
        will: Will | None,
    ) -> FakeConnection:
        conn = FakeConnection(self, client_id)
        self.connections.append(conn)
        return conn


def grant(token: str, expire_at: float) -> web.Response:
    """A 200 answer of ``POST /v1/tokens`` (SPEC §5)."""
    return web.json_response(
        {
            "token": token,
            "type": "RW",
            "expireTime": int(expire_at * 1000),
            "instanceId": "mqtt-test",
            "username": "Token|test-ak|mqtt-test",
            "password": f"RW|{token}",
        }
    )


def scripted_appserver(answers: list[Callable[[], web.Response]]) -> web.Application:
    """Answers ``POST /v1/tokens`` with the next of ``answers``; the last one repeats."""
    asked: list[int] = []

    async def tokens(request: web.Request) -> web.Response:
        asked.append(1)
        return answers[min(len(asked), len(answers)) - 1]()

    app = web.Application()
    app.router.add_post("/v1/tokens", tokens)
    return app


class EventFeed:
    """A client's events as they come, to wait on one kind (no polling)."""

    def __init__(self, client: TokenClient) -> None:
        self._queue: asyncio.Queue[ClientEvent] = asyncio.Queue()
        client.events.subscribe(self._queue.put_nowait)

    async def next(self, kind: EventKind, *, within: float = 10.0) -> ClientEvent:
        async def first() -> ClientEvent:
            while True:
                event = await self._queue.get()
                if event.kind is kind:
                    return event

        return await asyncio.wait_for(first(), within)


def unavailable(retry_after: int) -> Callable[[], web.Response]:
    return lambda: web.json_response(
        {"message": "upstream down"}, status=503, headers={"Retry-After": str(retry_after)}
    )
