"""A broker following an AuthServer that goes down and comes back, for the outage tests
(tests/broker/test_outage.py, tests/adversarial/test_revocation_outage.py).

:func:`outage_rig` runs an AuthServer (restartable on its port and data), a broker whose
feed follower sleeps through :func:`recording_sleep` (every wait it chose is recorded),
and an HTTP session; :func:`revocation_after_outage` is one round: a client connected
with a fresh token, the AuthServer down for :data:`OUTAGE_RETRIES` of the follower's
retries, back, the token revoked at once, the session's invalid notice awaited.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from mock_authserver.config import AuthServerConfig
from mock_authserver.ratelimit import RateLimits
from mock_authserver.runner import AuthServerHandle, run_authserver
from mock_broker.authority import TokenAuthority
from mock_broker.broker import BrokerHandle, run_broker
from mock_broker.config import BrokerConfig
from mock_broker.follower import FeedFollower
from sim.shared.clock import ManualClock
from sim.shared.protocol import TokenType, build_token_password

from .authapi import apply_token, revoke_token
from .conftest import connect_raw, until
from .rawmqtt import PUBLISH, RawClient

OUTAGE_RETRIES = 12  # how long the AuthServer stays down, in the follower's own retries

# The provider lets an account revoke one token a minute on the legacy API (SPEC §3b);
# these tests are about the broker, and revoke twenty in a row.
_LIMITS = RateLimits().with_overrides({"legacy_revoke": "off"})


@asynccontextmanager
async def authserver(
    data_dir: Path, clock: ManualClock, port: int = 0
) -> AsyncIterator[AuthServerHandle]:
    config = AuthServerConfig(data_dir=data_dir, port=port, rate_limits=_LIMITS)
    async with run_authserver(config, clock=clock) as handle:
        yield handle


def recording_sleep(waits: list[float]) -> Callable[[float], object]:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    return sleep


@dataclass
class OutageRig:
    clock: ManualClock
    data_dir: Path
    authority: TokenAuthority
    broker: BrokerHandle
    http: aiohttp.ClientSession
    auth: AuthServerHandle
    #: the AuthServer's own exit stack: closing it is the outage
    down: AsyncExitStack
    #: every wait the follower chose between its retries
    waits: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class OutageRound:
    client: RawClient
    password: str
    latency_s: float  # from the revoke request to the broker's feed position past it
    notice_latency_s: float  # ... to the session's invalid notice
    retries_during_outage: int
    retries_after_return: int


@asynccontextmanager
async def outage_rig(
    data_dir: Path, clock: ManualClock, config: BrokerConfig
) -> AsyncIterator[OutageRig]:
    waits: list[float] = []
    authority = TokenAuthority()
    rig: OutageRig | None = None
    down = AsyncExitStack()
    try:
        auth = await down.enter_async_context(authserver(data_dir, clock))
        async with AsyncExitStack() as stack:
            follower = FeedFollower(
                auth.url, authority, clock=clock, poll_timeout=30, sleep=recording_sleep(waits)
            )  # type: ignore[arg-type]
            stack.push_async_callback(follower.stop)
            assert await follower.start(wait=10)
            broker = await stack.enter_async_context(run_broker(config, clock, authority=authority))
            http = await stack.enter_async_context(aiohttp.ClientSession())
            rig = OutageRig(clock, data_dir, authority, broker, http, auth, down, waits)
            yield rig
    finally:
        await (down if rig is None else rig.down).aclose()


async def revocation_after_outage(
    rig: OutageRig, client_id: str, resources: str, topic: str
) -> OutageRound:
    """One round (module docstring) with a token for ``resources``, the client
    subscribed to ``topic``; the session's notice is checked to be code 3."""
    loop = asyncio.get_running_loop()
    expire_ms = rig.clock.now_ms() + 3_600_000
    token = await apply_token(rig.http, rig.auth.url, expire_ms, resources=resources)
    password = build_token_password({TokenType.RW: token})
    client = await connect_raw(rig.broker.port, client_id, password)
    assert await client.subscribe((topic, 1)) == [1]

    port = rig.auth.port
    await rig.down.aclose()  # the outage
    rig.down = AsyncExitStack()
    enough = len(rig.waits) + OUTAGE_RETRIES
    await until(lambda: len(rig.waits) >= enough, within=30)
    rig.auth = await rig.down.enter_async_context(authserver(rig.data_dir, rig.clock, port))
    back_at = len(rig.waits)
    revoked_at = loop.time()
    await revoke_token(rig.http, rig.auth.url, token)
    seq = rig.auth.engine.seq
    await until(lambda: rig.authority.seq >= seq, within=30)
    latency = loop.time() - revoked_at
    notice = await client.expect(PUBLISH, within=10)
    notice_latency = loop.time() - revoked_at
    assert (notice.topic, json.loads(notice.payload)) == (
        "$SYS/tokenInvalidNotice",
        {"code": 3, "type": "RW"},
    )
    return OutageRound(
        client,
        password,
        latency,
        notice_latency,
        retries_during_outage=back_at - (enough - OUTAGE_RETRIES),
        retries_after_return=len(rig.waits) - back_at,
    )
