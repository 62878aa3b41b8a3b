"""The broker's adversarial world: a real AuthServer, a broker following it over HTTP,
several accounts and instances, and a pool of tokens of every kind an attacker can get
hold of (SPEC §3c, §4).

Namespaces (docs/broker.md "Namespaces and sessions"):

* ``dev-ak`` / ``mqtt-dev``: the victim's, and the canary's;
* ``dev-ak`` / ``mqtt-two``: another instance of the same account;
* ``ak2`` / ``inst2``: another account;
* ``ak3`` / ``inst3``: an account disabled once its tokens were issued.

Every instance has the dev instance's parent topics, so that the suite's topics (all
under ``dev/``) stay valid under the provider profile (SPEC §4a).  Tokens are issued by
the AuthServer's own engine; revocations and the disabled account reach the broker
through its feed, as in production.
"""

from __future__ import annotations

import base64
import contextlib
import random
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mock_authserver.config import AccountSpec, AuthServerConfig, InstanceSpec
from mock_authserver.runner import AuthServerHandle, run_authserver
from mock_authserver.validation import ApplyRequest
from mock_broker.broker import BrokerHandle, run_broker
from mock_broker.config import BrokerConfig
from sim.shared.clock import ManualClock
from sim.shared.protocol import TokenType, actions_of, build_username, signature_password
from sim.shared.protocol.tokens import TokenClaims, TokenCodec, new_key
from sim.shared.waiting import wait_until

PARENT_TOPICS = ("dev", "demo", "test", "fleet", "devices", "locust", "bench", "rawrate")


@dataclass(frozen=True)
class Namespace:
    ak: str
    sk: str
    instance: str

    @property
    def name(self) -> str:
        return f"{self.ak}|{self.instance}"

    def username(self, mode: str = "Token") -> str:
        return build_username(self.ak, self.instance, mode=mode)  # type: ignore[arg-type]

    def signature(self, client_id: str) -> str:
        return signature_password(self.sk, client_id)


DEV = Namespace("dev-ak", "dev-sk", "mqtt-dev")
TWO = Namespace("dev-ak", "dev-sk", "mqtt-two")
OTHER = Namespace("ak2", "sk2", "inst2")
GONE = Namespace("ak3", "sk3", "inst3")
LIVE = (DEV, TWO, OTHER)


@dataclass
class TokenPool:
    """Genuine tokens by namespace and type, and the ones no CONNECT may use."""

    genuine: dict[tuple[Namespace, TokenType], list[str]] = field(default_factory=dict)
    expired: dict[TokenType, list[str]] = field(default_factory=dict)
    revoked: dict[TokenType, list[str]] = field(default_factory=dict)
    disabled: dict[TokenType, list[str]] = field(default_factory=dict)  # ak3's
    foreign_key: dict[TokenType, list[str]] = field(default_factory=dict)  # not our key
    edited: dict[TokenType, list[str]] = field(default_factory=dict)  # claims changed

    def get(self, ns: Namespace, kind: TokenType, rng: random.Random) -> str:
        return rng.choice(self.genuine[(ns, kind)])


@dataclass
class BrokerWorld:
    auth: AuthServerHandle
    broker: BrokerHandle
    clock: ManualClock
    tokens: TokenPool

    def issue(
        self, ns: Namespace, kind: TokenType, resources: Iterable[str] = ("dev/#",),
        ttl_s: float = 7200.0,
    ) -> str:  # fmt: skip
        expire_ms = self.clock.now_ms() + int(ttl_s * 1000)
        request = ApplyRequest(ns.ak, ns.instance, actions_of(kind), tuple(resources), expire_ms)
        return self.auth.engine.apply(request).token

    async def synced(self) -> None:
        """Until the broker has every event of the AuthServer's feed (a deadline, not a
        pace: the feed is a long poll that answers at once)."""
        authority, engine = self.broker.authority, self.auth.engine
        await wait_until(
            lambda: authority.seq >= engine.seq, timeout=10, what="the broker to follow the feed"
        )


def _foreign(kid: str, kind: TokenType) -> str:
    """A well-formed token for ``#``, signed under the AuthServer's key id with a key it
    never had."""
    claims = TokenClaims("forged-id", DEV.ak, DEV.instance, actions_of(kind), ("#",), 2**42, 0)
    return TokenCodec({kid: new_key()}, kid).encode(claims)


def _edited(token: str) -> str:
    """A genuine token whose expiry was pushed a decade on, its MAC left as it was (the
    Base64 spelled as the codec spells it: only the claims changed)."""
    raw = bytearray(base64.b64decode(token))
    at = raw.index(b'"exp":') + 6
    raw[at] = ord("2") if raw[at] != ord("2") else ord("3")
    return base64.b64encode(bytes(raw)).decode()


@contextlib.asynccontextmanager
async def broker_world(tmp_path: Path, seed: int) -> AsyncIterator[BrokerWorld]:
    rng = random.Random(f"{seed}/world")
    clock = ManualClock()
    accounts = (
        AccountSpec(DEV.ak, DEV.sk, (DEV.instance, TWO.instance)),
        AccountSpec(OTHER.ak, OTHER.sk, (OTHER.instance,)),
        AccountSpec(GONE.ak, GONE.sk, (GONE.instance,)),
    )
    instances = tuple(InstanceSpec(ns.instance, PARENT_TOPICS) for ns in (TWO, OTHER, GONE))
    config = AuthServerConfig(data_dir=tmp_path / "auth", accounts=accounts, instances=instances)
    async with (
        run_authserver(config, clock=clock) as auth,
        run_broker(BrokerConfig(port=0, authserver_url=auth.url), clock) as broker,
    ):
        world = BrokerWorld(auth, broker, clock, TokenPool())
        pool = world.tokens
        kinds = list(TokenType)
        # Expired: issued for the minimum life, then the shared clock moves past it.
        for kind in kinds:
            pool.expired[kind] = [world.issue(DEV, kind, ttl_s=61) for _ in range(3)]
        clock.advance(62)
        for ns in (*LIVE, GONE):
            for kind in kinds:
                resources = rng.choice([("dev/#",), ("#",), ("dev/+/x", "demo/#")])
                pool.genuine[(ns, kind)] = [world.issue(ns, kind, resources) for _ in range(4)]
        for kind in kinds:
            pool.revoked[kind] = [world.issue(DEV, kind) for _ in range(3)]
            for token in pool.revoked[kind]:
                auth.engine.revoke(DEV.ak, token)
            pool.disabled[kind] = pool.genuine[(GONE, kind)]
            pool.foreign_key[kind] = [_foreign(auth.engine.bootstrap().current_key, kind)]
            pool.edited[kind] = [_edited(t) for t in pool.genuine[(DEV, kind)]]
        auth.engine.put_account(AccountSpec(GONE.ak, GONE.sk, (GONE.instance,), False))
        await world.synced()
        yield world
