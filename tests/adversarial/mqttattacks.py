"""Mutated CONNECTs and ``$SYS/uploadToken`` payloads against the broker, and a canary
that must lose nothing meanwhile (SPEC §4).

A case is built from genuine credentials of a namespace of :mod:`.brokerworld`, then
zero, one or two forging mutations: a token's text changed (a flipped character, padding
added or removed, truncated, its case swapped), another namespace's genuine token, an
expired, revoked, disabled-account, foreign-key or claims-edited token, a token under the
wrong type, the username's account or instance swapped, a signature-mode password of
another client id or account, broken separators.  Packet-level faults (a client id the
provider refuses, an unknown protocol level, a reserved flag) must be refused too.  A
case with no mutation must be accepted: that keeps the oracle honest.  A refused CONNECT
may carry the canary's client id: it must not touch the canary's session (docs/broker.md
F1/F2).
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sim.shared.protocol import TokenType
from tests.broker.rawmqtt import (
    CONNACK,
    DISCONNECT,
    PUBACK,
    PUBLISH,
    RawClient,
    connect_packet,
    packet,
)

from .authserver_cases import forged_token
from .brokerworld import DEV, GONE, LIVE, OTHER, TWO, BrokerWorld, Namespace

CANARY_SUB, CANARY_PUB = "GID_canary@@@sub", "GID_canary@@@pub"
CANARY_IDS = (CANARY_SUB, CANARY_PUB)
TYPES = list(TokenType)
UPLOAD_TOPIC = "$SYS/uploadToken"
READ_WITHIN_S = 10.0  # a deadline for the broker's answer, not a pace


@dataclass
class ConnectCase:
    client_id: str
    username: str | None
    password: str | None
    must_refuse: bool
    labels: tuple[str, ...]
    clean: bool = True
    keep_alive: int = 0
    will: tuple[str, bytes, int, bool] | None = None
    level: int = 4
    reserved_flag: bool = False

    def render(self) -> bytes:
        data = bytearray(
            connect_packet(
                self.client_id, self.username, self.password, clean=self.clean,
                keep_alive=self.keep_alive, will=self.will,
            )
        )  # fmt: skip
        at = data.index(b"\x00\x04MQTT") + 6
        data[at] = self.level
        if self.reserved_flag:
            data[at + 1] |= 0x01
        return bytes(data)


def _password(pairs: list[tuple[str, str]]) -> str:
    return "|".join(f"{kind}|{token}" for kind, token in pairs)


def _bad_token(
    world: BrokerWorld, rng: random.Random, ns: Namespace, kind: TokenType
) -> tuple[str, str]:
    """A token no CONNECT of ``ns`` under ``kind`` may use, and its label."""
    pool = world.tokens
    choice = rng.choice(["text", "text", "namespace", "expired", "revoked", "disabled",
                         "foreign_key", "edited", "type"])  # fmt: skip
    genuine = pool.get(ns, kind, rng)
    if choice == "text":
        return forged_token(rng, genuine)
    if choice == "namespace":
        other = rng.choice([n for n in (*LIVE, GONE) if n != ns])
        return pool.get(other, kind, rng), f"token_of_{other.ak}_{other.instance}"
    if choice == "type":  # a genuine token of the namespace, of another type
        return pool.get(ns, rng.choice([t for t in TYPES if t != kind]), rng), "token_other_type"
    bucket = {"expired": pool.expired, "revoked": pool.revoked, "disabled": pool.disabled,
              "foreign_key": pool.foreign_key, "edited": pool.edited}[choice]  # fmt: skip
    return rng.choice(bucket[kind]), f"token_{choice}"


def connect_case(world: BrokerWorld, rng: random.Random, index: int) -> ConnectCase:
    ns = rng.choice([DEV, DEV, DEV, DEV, TWO, OTHER])
    mutations = rng.choice([0, 0, 1, 1, 1, 2])
    labels: list[str] = []
    client_id = f"GID_adv@@@c{index}"
    if mutations and rng.random() < 0.15:
        client_id = rng.choice(CANARY_IDS)  # refused: the canary must not notice
        labels.append("canary_client_id")
    signature = rng.random() < 0.15
    pairs: list[tuple[str, str]] = []
    if signature:
        username, password = ns.username("Signature"), ns.signature(client_id)
    else:
        combo = rng.choice([["RW"], ["R"], ["W"], ["R", "W"], ["W", "R"]])
        pairs = [(k, world.tokens.get(ns, TokenType(k), rng)) for k in combo]
        username, password = ns.username(), _password(pairs)
    case = ConnectCase(client_id, username, password, False, ())
    if rng.random() < 0.2:
        case.clean = False
    if rng.random() < 0.2:
        case.keep_alive = rng.choice([5, 60, 65535])
    if rng.random() < 0.1:
        case.will = (f"dev/will/{index}", b"gone", rng.choice([0, 1]), False)

    for _ in range(mutations):
        kind = rng.choice(["credential", "credential", "credential", "username", "packet"])
        if kind == "credential" and signature:
            labels.append(_forge_signature(rng, case, ns))
        elif kind == "credential":
            slot = rng.randrange(len(pairs))
            type_name = pairs[slot][0]
            choice = rng.choice(["token", "token", "token", "relabel", "duplicate", "separator"])
            if choice == "token":
                bad, label = _bad_token(world, rng, ns, TokenType(type_name))
                pairs[slot] = (type_name, bad)
            elif choice == "relabel":
                pairs[slot] = (
                    rng.choice([t for t in TYPE_NAMES if t != type_name]),
                    pairs[slot][1],
                )
                label = "type_relabelled"
            elif choice == "duplicate":
                pairs.append(pairs[slot])
                label = "type_twice"
            case.password = _password(pairs)
            if choice == "separator":
                case.password = rng.choice(
                    [case.password + "|", "|" + case.password, type_name + "||", "",
                     case.password.replace("|", "||", 1), "R|" + "Zm9yZ2Vk" * 7_500]
                )  # fmt: skip
                label = "separators"
            labels.append(label)
        elif kind == "username":
            case.username, label = _forge_username(rng, ns, signature)
            labels.append(label)
        else:
            labels.append(_break_packet(rng, case))
    case.labels = tuple(labels)
    mode = "Signature" if signature else "Token"
    owner = _genuine(world, case, mode, pairs)
    if owner is not None and case.client_id in CANARY_IDS:
        # Mutations that undid each other: genuine credentials must not take the canary
        # over (a take-over is right, and not the point).
        case.client_id = f"GID_adv@@@c{index}"
        if signature:
            case.password = owner.signature(case.client_id)
    case.must_refuse = owner is None
    return case


def _genuine(
    world: BrokerWorld, case: ConnectCase, mode: str, pairs: list[tuple[str, str]]
) -> Namespace | None:
    """Whether the CONNECT, as it will be sent, is some live namespace's own: its
    username, and its tokens (or its signature of this client id), with a valid packet.
    Mutations may undo each other, or turn one namespace's credentials into another's
    (dev-ak's token under dev-ak's other instance's username is that instance's)."""
    if case.level != 4 or case.reserved_flag or not _valid_client_id(case.client_id):
        return None
    for ns in LIVE:
        if case.username == ns.username(mode):
            if mode == "Signature":
                genuine = case.password == ns.signature(case.client_id)
            else:
                genuine = case.password == _password(pairs) and _genuine_pairs(world, ns, pairs)
            return ns if genuine else None
    return None


TYPE_NAMES = ("R", "W", "RW")


def _valid_client_id(client_id: str) -> bool:
    """SPEC §4: ``GID_``/``GID-`` Group ID of 7-64 characters, ``@@@``, a device id of
    letters, digits, ``-`` and ``_``; at most 64 characters in all."""
    group, sep, device = client_id.partition("@@@")
    return (
        bool(sep) and len(client_id) <= 64 and 7 <= len(group) <= 64
        and group[:4] in ("GID_", "GID-")
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in group + device)
        and bool(device)
    )  # fmt: skip


def _genuine_pairs(world: BrokerWorld, ns: Namespace, pairs: list[tuple[str, str]]) -> bool:
    kinds = [kind for kind, _ in pairs]
    return len(set(kinds)) == len(kinds) and all(
        kind in TYPE_NAMES and token in world.tokens.genuine[(ns, TokenType(kind))]
        for kind, token in pairs
    )


def _forge_signature(rng: random.Random, case: ConnectCase, ns: Namespace) -> str:
    """A signature-mode password that is not ``ns``'s for ``case.client_id``."""
    assert case.password is not None
    choice = rng.choice(["other_client", "other_secret", "pad", "flip", "case", "token"])
    if choice == "other_client":
        other = rng.choice([*CANARY_IDS, "GID_adv@@@other", case.client_id.upper()])
        if other == case.client_id:
            other += "x"
        case.password = ns.signature(other)
    elif choice == "other_secret":
        case.password = rng.choice([n for n in (*LIVE, GONE) if n.sk != ns.sk]).signature(
            case.client_id
        )
    elif choice == "pad":
        case.password = rng.choice(
            [case.password + "=", case.password.rstrip("="), " " + case.password]
        )
    elif choice == "flip":
        case.password, _ = forged_token(rng, case.password)
    elif choice == "case":
        case.password = case.password.swapcase()
    else:  # the signature as a token password, under the Signature username
        case.password = "RW|" + case.password
    return f"signature_{choice}"


def _forge_username(rng: random.Random, ns: Namespace, signature: bool) -> tuple[str, str]:
    mode = "Signature" if signature else "Token"
    # A token names its instance: another instance of the same account is refused.  A
    # signature does not (it signs the client id): dev-ak's signature is genuine in either
    # of dev-ak's instances, so the forged one names an instance dev-ak does not own.
    other_instance = ({DEV: OTHER, TWO: OTHER, OTHER: DEV} if signature
                      else {DEV: TWO, TWO: DEV, OTHER: DEV})[ns]  # fmt: skip
    choice = rng.choice(["other_account", "other_instance", "swapped", "mode", "shape", "gone"])
    if choice == "other_account":
        other = OTHER if ns.ak != OTHER.ak else DEV
        return f"{mode}|{other.ak}|{ns.instance}", "username_other_account"
    if choice == "other_instance":
        return f"{mode}|{ns.ak}|{other_instance.instance}", "username_other_instance"
    if choice == "swapped":
        return f"{mode}|{ns.instance}|{ns.ak}", "username_swapped"
    if choice == "mode":
        return f"{'Token' if signature else 'Signature'}|{ns.ak}|{ns.instance}", "username_mode"
    if choice == "gone":
        return f"{mode}|{GONE.ak}|{GONE.instance}", "username_disabled_account"
    return rng.choice(
        [f"{mode.lower()}|{ns.ak}|{ns.instance}", f"{mode}|{ns.ak}|{ns.instance}|x",
         f"{mode}|{ns.ak}", f"{mode}|{ns.ak} |{ns.instance}", ""]
    ), "username_shape"  # fmt: skip


def _break_packet(rng: random.Random, case: ConnectCase) -> str:
    choice = rng.choice(["client_id", "level", "reserved"])
    if choice == "client_id":
        case.client_id = rng.choice(
            ["adv-1", "GID_adv@@@", "GID_@@@x", "GID_adv@@@" + "x" * 60, "GID_a b@@@c", "",
             "GID_ab@@@x", "GID_adv@@@x.y", "GID_adv@@@x:y", "gid_adv@@@x"]
        )  # fmt: skip
        return "client_id_invalid"
    if choice == "level":
        case.level = rng.choice([3, 5, 0, 255])
        return "protocol_level"
    case.reserved_flag = True
    return "reserved_flag"


async def attempt_connect(port: int, case: ConnectCase) -> int | None:
    """The CONNACK code, or ``None`` if the broker closed without one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(case.render())
        await writer.drain()
        ack = await asyncio.wait_for(reader.readexactly(4), READ_WITHIN_S)
        assert ack[0] >> 4 == CONNACK, ack
        if ack[3] == 0:
            writer.write(packet(DISCONNECT, 0, b""))
            await writer.drain()
        return ack[3]
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    finally:
        writer.close()


# -- uploads ----------------------------------------------------------------------------------


@dataclass
class UploadCase:
    payload: bytes
    must_refuse: bool
    labels: tuple[str, ...]


def upload_case(world: BrokerWorld, rng: random.Random) -> UploadCase:
    kind = rng.choice(TYPES)
    token = world.tokens.get(DEV, kind, rng)
    key = rng.choice(["token", "token", "Token"])  # the provider's English docs say Token
    body: dict[str, Any] = {key: token, "type": kind.value}
    if rng.random() < 0.3:
        return UploadCase(json.dumps(body).encode(), False, ())
    choice = rng.choice(["token", "token", "token", "type", "shape"])
    if choice == "token":
        body[key], label = _bad_token(world, rng, DEV, kind)
    elif choice == "type":
        body["type"] = rng.choice([t.value for t in TYPES if t != kind] + ["X", "", "rw", None])
        label = "type_mismatch"
    else:
        raw, label = rng.choice(
            [
                (b"not json", "not_json"), (b"[]", "array"), (b"", "empty"),
                (json.dumps({"token": token}).encode(), "no_type"),
                (json.dumps({"token": [token], "type": kind.value}).encode(), "token_not_text"),
                (json.dumps({"token": "", "type": kind.value}).encode(), "token_empty"),
                (b'{"a":' * 40 + b"1" + b"}" * 40, "deep"),
                (json.dumps({"token": token + "A" * 70_000, "type": kind.value}).encode(), "huge"),
                (b"\xff\xfe" + json.dumps(body).encode(), "not_utf8"),
            ]
        )  # fmt: skip
        return UploadCase(raw, True, (label,))
    return UploadCase(json.dumps(body).encode(), True, (label,))


class UploadSession:
    """A genuine session of the dev namespace that uploads until an upload is refused."""

    def __init__(self, world: BrokerWorld, name: str):
        self.world, self.name = world, name
        self.client: RawClient | None = None
        self.sessions = 0

    async def upload(self, payload: bytes) -> tuple[bool, int | None]:
        """(accepted: PUBACK came, notice code if one came before the close)."""
        if self.client is None:
            self.sessions += 1
            password = _password([("RW", self.world.tokens.genuine[(DEV, TokenType.RW)][0])])
            self.client, rc, _ = await RawClient.connected(
                self.world.broker.port, f"GID_adv@@@{self.name}-{self.sessions}", DEV.username(),
                password,
            )  # fmt: skip
            assert rc == 0, f"the uploading session itself was refused: CONNACK {rc}"
        client = self.client
        pid = client.next_id()
        topic = UPLOAD_TOPIC.encode()
        body = struct.pack("!H", len(topic)) + topic + struct.pack("!H", pid) + payload
        await client.send(packet(PUBLISH, 0x02, body))
        code = None
        while True:
            got = await client.read(READ_WITHIN_S)
            if got is None:
                self.client = None
                client.close()
                return False, code
            if got.kind == PUBACK and got.packet_id == pid:
                return True, code
            if got.kind == PUBLISH and got.topic == "$SYS/tokenInvalidNotice":
                code = json.loads(got.payload)["code"]

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


# -- the canary -------------------------------------------------------------------------------


@dataclass
class Canary:
    """A subscriber (QoS 1, persistent session) and a publisher of the dev namespace,
    ordinary clients during the flood.  Every acknowledged message must arrive, in order,
    once (MQTT 3.1.1 §4.3.2, §4.6: at least once, ordered; a duplicate only as a DUP
    re-send, and nothing here makes the broker re-send)."""

    world: BrokerWorld
    sent: list[int] = field(default_factory=list)
    received: list[tuple[int, bool]] = field(default_factory=list)
    sub: RawClient | None = None
    pub: RawClient | None = None
    reader: asyncio.Task[None] | None = None
    lost: bool = False

    async def start(self) -> None:
        read = self.world.issue(DEV, TokenType.R, ("dev/canary/#",))
        write = self.world.issue(DEV, TokenType.W, ("dev/canary/#",))
        self.sub = await self._connect(CANARY_SUB, _password([("R", read)]), clean=False)
        assert await self.sub.subscribe(("dev/canary/#", 1)) == [1]
        self.pub = await self._connect(CANARY_PUB, _password([("W", write)]), clean=True)
        self.reader = asyncio.create_task(self._read())

    async def _connect(self, client_id: str, password: str, clean: bool) -> RawClient:
        client, rc, _ = await RawClient.connected(
            self.world.broker.port, client_id, DEV.username(), password, clean=clean
        )
        assert rc == 0, f"canary {client_id}: CONNACK {rc}"
        return client

    async def _read(self) -> None:
        assert self.sub is not None
        while True:
            got = await self.sub.read(3600)
            if got is None:  # taken over, or closed: what it missed is counted as lost
                self.lost = True
                return
            if got.kind != PUBLISH:
                continue
            await self.sub.ack(got)
            if got.payload == b"end":
                return
            self.received.append((int(got.payload), got.dup))

    async def publish(self) -> None:
        assert self.pub is not None
        n = len(self.sent)
        await self.pub.publish(f"dev/canary/{n % 7}", str(n).encode(), qos=1)
        self.sent.append(n)  # acknowledged by the broker: it must arrive

    async def finish(self) -> dict[str, Any]:
        assert self.pub is not None and self.reader is not None
        await self.pub.publish("dev/canary/end", b"end", qos=1)
        await asyncio.wait_for(self.reader, READ_WITHIN_S)
        first = [n for n, _ in self.received]
        seen = Counter(first)
        figures = {
            "canary_sent": len(self.sent),
            "canary_received": len(self.received),
            "canary_lost": len(set(self.sent) - set(seen)),
            "canary_unexpected": len(set(seen) - set(self.sent)),
            "canary_duplicates": sum(c - 1 for c in seen.values()),
            "canary_duplicates_without_dup_flag": sum(
                1 for i, (n, dup) in enumerate(self.received) if not dup and n in first[:i]
            ),
            "canary_in_order": first == sorted(first),
            "canary_connection_lost": self.lost,
        }
        for client in (self.sub, self.pub):
            if client is not None and not client.writer.is_closing():
                await client.disconnect()
        return figures
