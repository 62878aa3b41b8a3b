"""Fixtures of the broker tests: a manual clock, a token authority fed in-process, a
minter of genuine tokens, and brokers on free ports.

Importing the broker imports :mod:`mock_broker.hardened.amqtt_boundary`, which checks the
installed amqtt: a drift fails the collection of every broker test, loudly.  And any
ERROR the broker logs during a test (a bug inside a connection, which the client never
sees) fails that test.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass

import pytest

import mock_broker.hardened.amqtt_boundary  # noqa: F401  (checked at import)
from mock_broker.authority import TokenAuthority
from mock_broker.broker import BrokerHandle, run_broker
from mock_broker.config import BrokerConfig
from mock_broker.decision import AccountInfo
from sim.shared.clock import ManualClock
from sim.shared.protocol import TokenType, build_token_password, build_username
from sim.shared.protocol.tokens import TokenClaims, TokenCodec, new_key, new_token_id
from sim.shared.waiting import wait_until

from .rawmqtt import RawClient

AK, SK, INSTANCE = "dev-ak", "dev-sk", "mqtt-dev"
USER = build_username(AK, INSTANCE)


@dataclass
class Minter:
    codec: TokenCodec
    clock: ManualClock

    def claims(
        self,
        actions: Iterable[str] = ("R", "W"),
        resources: Iterable[str] = ("#",),
        ttl: float = 3600.0,
        ak: str = AK,
        instance: str = INSTANCE,
    ) -> TokenClaims:
        now = self.clock.now_ms()
        return TokenClaims(
            new_token_id(), ak, instance, frozenset(actions), tuple(resources),
            now + int(ttl * 1000), now,
        )  # fmt: skip

    def token(self, *args: object, **kw: object) -> str:
        return self.codec.encode(self.claims(*args, **kw))  # type: ignore[arg-type]

    def password(
        self, kind: str = "RW", resources: Iterable[str] = ("#",), ttl: float = 3600.0
    ) -> str:
        actions = {"R": ("R",), "W": ("W",), "RW": ("R", "W")}[kind]
        return build_token_password({TokenType(kind): self.token(actions, resources, ttl)})


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_broker_errors() -> Iterator[None]:
    """The broker logs ERROR only for its own bugs: none may happen in a test."""
    handler = _Errors()
    logger = logging.getLogger("mock_broker")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.records, [handler.format(r) for r in handler.records]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000.0)


@pytest.fixture
def key() -> bytes:
    return new_key()


@pytest.fixture
def authority(key: bytes) -> TokenAuthority:
    authority = TokenAuthority()
    authority.set_keys({"k1": key}, "k1")
    authority.set_account(AccountInfo(AK, SK, frozenset({INSTANCE})))
    authority.set_account(AccountInfo("ak2", "sk2", frozenset({"inst2"})))
    return authority


@pytest.fixture
def minter(key: bytes, clock: ManualClock) -> Minter:
    return Minter(TokenCodec({"k1": key}, "k1"), clock)


@pytest.fixture
def broker_config() -> BrokerConfig:
    """Plain MQTT 3.1.1 (``profile="mqtt"``): the SPEC §4 token rules and the MQTT
    conformance tests hold in both profiles, and their topics (``a/b``) are no parent
    topics.  The provider profile's tests (``test_provider_profile.py``) ask for it."""
    return BrokerConfig(port=0, profile="mqtt")


@pytest.fixture
async def broker(
    broker_config: BrokerConfig, clock: ManualClock, authority: TokenAuthority
) -> AsyncIterator[BrokerHandle]:
    async with run_broker(broker_config, clock, authority=authority) as handle:
        yield handle


async def connect_raw(port: int, client_id: str, password: str, **kw: object) -> RawClient:
    client, rc, _ = await RawClient.connected(port, client_id, USER, password, **kw)  # type: ignore[arg-type]
    assert rc == 0, f"CONNACK {rc}"
    return client


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``within`` real seconds (a deadline
    for a condition the broker reaches on its own, never a synchronising sleep): the
    shared :func:`~sim.shared.waiting.wait_until`."""
    await wait_until(predicate, timeout=within, what="a condition the broker reaches")
