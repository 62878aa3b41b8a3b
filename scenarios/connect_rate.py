"""The raw CONNECT/CONNACK rate of a broker, measured with the SDK's own MQTT transport.

The baseline of the reconnect storm (docs/scenarios.md: "all back within 1.3 x N / the
raw connect rate of the same broker, measured first in the same run"): N plain connections
with one valid token, opened through :class:`sim.customer.client.transport.Connection` (the same
client library and code path as the SDK's), no AppServer, no store, no backoff, at most
``concurrency`` in flight.  Rate = N ÷ (first TCP open → last CONNACK).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sim.harness.admin import ClientAccount

from .env import Environment
from .errors import StackUnavailable

__all__ = ["ConnectRate", "fetch_token", "measure_connect_rate"]


@dataclass(frozen=True)
class ConnectRate:
    connects: int
    failures: int
    seconds: float
    latencies_s: tuple[float, ...]

    @property
    def rate(self) -> float:
        return self.connects / self.seconds if self.seconds > 0 else 0.0


async def fetch_token(
    env: Environment, client_id: str, secret: str, resources: list[str], actions: str = "R,W"
) -> dict[str, Any]:
    """Create (or update) an AppServer account and ask it for a token; the answer has
    ``username``/``password`` ready for CONNECT (SPEC §5)."""
    await env.admin.appserver.import_accounts(
        [ClientAccount(client_id, secret, tuple(resources), actions)]
    )
    auth = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    async with env.http.post(
        f"{env.endpoints.appserver_url}/v1/tokens",
        json={"resources": resources, "actions": actions},
        headers={"Authorization": f"Basic {auth}"},
    ) as resp:
        body = await resp.json(content_type=None)
        if resp.status != 200:
            raise StackUnavailable(f"the AppServer refused a token: {resp.status} {body}")
        return dict(body)


async def measure_connect_rate(
    env: Environment,
    n: int,
    *,
    concurrency: int = 256,
    client_prefix: str = "GID_rawrate@@@c",
    on_progress: Callable[[int], None] | None = None,
    credentials: tuple[str, str] | None = None,
) -> ConnectRate:
    """``credentials``: the (username, password) every connection uses; by default a
    token of our AppServer's, for an account of its own (tokens are not bound to a
    client id, SPEC §4)."""
    from sim.customer.client.transport import Connection, parse_broker_url

    if credentials is None:
        token = await fetch_token(env, "GID_rawrate@@@owner", "raw-rate-secret", ["rawrate/#"])
        credentials = (str(token["username"]), str(token["password"]))
    username, password = credentials
    address = parse_broker_url(env.endpoints.broker_url)
    sem = asyncio.Semaphore(concurrency)
    conns: list[Any] = []
    latencies: list[float] = []
    failures = 0
    done = 0

    async def one(i: int) -> None:
        nonlocal failures, done
        async with sem:
            conn = Connection(f"{client_prefix}{i}", on_message=lambda _m: None)
            t = time.perf_counter()
            try:
                await conn.open(address, username=username, password=password)
            except Exception:
                failures += 1
                return
            latencies.append(time.perf_counter() - t)
            conns.append(conn)
            done += 1
            if on_progress is not None:
                on_progress(done)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    seconds = time.perf_counter() - t0
    # Close outside the measurement, in batches (a close costs the broker work too).
    for i in range(0, len(conns), 500):
        await asyncio.gather(*(c.close() for c in conns[i : i + 500]), return_exceptions=True)
    return ConnectRate(len(latencies), failures, seconds, tuple(latencies))
