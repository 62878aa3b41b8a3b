"""Randomised attacker moves across accounts, instances and sessions, and the escapes
they achieve (SPEC §4, docs/broker.md "Namespaces and sessions").

The victim lives in ``dev-ak``/``mqtt-dev``: a subscriber with a persistent session
(``GID_victim@@@sub``, R on ``dev/#``) and a publisher.  Each move picks an attacker:

* a token of another account, or of the same account's other instance (RW ``dev/#``);
* a signature-mode client of another account or instance ("everything" in its own);
* a narrowed token of the victim's own namespace (``dev/public/#`` only);

with its own client id or the victim's (a resume with clean session 0, while the victim
is away), then subscriptions (``dev/#``, ``dev/secret/#``, wildcards, P2P and ``$SYS``
filters, ``#``), and publishes into the victim's topics, its marker topic, its P2P topic
(``dev/p2p/GID_victim@@@sub``, SPEC §4a) and a retained topic.  Meanwhile the victim
publishes baits: secret, public, retained, and P2P to the attacker's client id.

An **escape** is a message the attacker should not have: one of another namespace, or of
its own namespace outside its read resources (P2P sent to its own client id aside: the
sender chose it); or one the victim got that the attacker should not have been able to
send: from another namespace, or outside the attacker's write resources (same-namespace
P2P aside: SPEC §4a lets any W token under the parent topic send it).  A session that
crosses namespaces (session present for an outsider's resume) is an escape too.

"Nothing more arrived" is decided by markers, never by waiting: after its moves the
attacker publishes a marker to itself, and the victim's publisher one to the victim;
whatever each read before its marker is judged.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sim.shared.protocol import TokenType
from sim.shared.protocol.topics import covers
from tests.broker.rawmqtt import PUBLISH, SUBACK, Packet, RawClient

from .brokerworld import DEV, OTHER, TWO, BrokerWorld, Namespace

VICTIM_SUB, VICTIM_PUB = "GID_victim@@@sub", "GID_victim@@@pub"
READ_WITHIN_S = 10.0  # a deadline for a marker to come back, not a pace

ATTACKERS = {
    # kind: (namespace, mode, read resources, write resources)
    "other_account_token": (OTHER, "Token", ("dev/#",), ("dev/#",)),
    "other_instance_token": (TWO, "Token", ("dev/#",), ("dev/#",)),
    "other_account_signature": (OTHER, "Signature", ("#",), ("#",)),
    "other_instance_signature": (TWO, "Signature", ("#",), ("#",)),
    "narrowed_token": (DEV, "Token", ("dev/public/#",), ("dev/public/#",)),
}
FILTERS = ["dev/#", "dev/secret/#", "dev/+/+", "dev/p2p/#", "dev/public/#", "dev/retained/#",
           "$SYS/#", "#", "+/#", "dev/marker/#"]  # fmt: skip


def _payload(origin: Namespace, by: str, move: int, what: str) -> bytes:
    return json.dumps({"o": origin.name, "by": by, "m": move, "k": what}).encode()


@dataclass
class Party:
    """A connected client and what it may do."""

    client: RawClient
    ns: Namespace
    reads: tuple[str, ...]
    writes: tuple[str, ...]

    def may_read(self, topic: str) -> bool:
        return any(covers(r, topic) for r in self.reads)

    def may_write(self, topic: str) -> bool:
        return any(covers(w, topic) for w in self.writes)


@dataclass
class EscapeFigures:
    moves: Counter[str] = field(default_factory=Counter)
    resumes: int = 0
    attacker_connacks: Counter[str] = field(default_factory=Counter)
    attacker_closed_by_broker: int = 0
    messages_judged: int = 0
    escapes: Counter[str] = field(default_factory=Counter)
    victim_lost: int = 0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "moves": sum(self.moves.values()),
            "moves_by_attacker": dict(sorted(self.moves.items())),
            "session_resume_attempts": self.resumes,
            "attacker_connack_codes": dict(sorted(self.attacker_connacks.items())),
            "attackers_closed_by_broker": self.attacker_closed_by_broker,
            "messages_judged": self.messages_judged,
            "escapes": sum(self.escapes.values()),
            "escapes_by_kind": dict(self.escapes),
            "victim_queued_messages_lost": self.victim_lost,
            "first_problems": self.problems[:20],
        }


class Arena:
    def __init__(self, world: BrokerWorld, figures: EscapeFigures):
        self.world, self.figures = world, figures
        self.port = world.broker.port
        self.victim_read = world.issue(DEV, TokenType.R, ("dev/#",))
        self.victim: Party | None = None
        self.publisher: Party | None = None
        self.attackers: dict[int, Party] = {}  # by move: what each attacker was allowed

    async def start(self) -> None:
        self.victim = await self._victim()
        write = self.world.issue(DEV, TokenType.RW, ("dev/#",))
        client = await self._connect(VICTIM_PUB, DEV.username(), f"RW|{write}", clean=True)
        self.publisher = Party(client, DEV, ("dev/#",), ("dev/#",))

    async def _connect(
        self, client_id: str, username: str, password: str, clean: bool
    ) -> RawClient:
        client, rc, _ = await RawClient.connected(
            self.port, client_id, username, password, clean=clean
        )
        assert rc == 0, f"{client_id}: CONNACK {rc}"
        return client

    async def _victim(self, back_after: int | None = None) -> Party:
        """The victim's subscriber, connected with its session (subscribing ``dev/#``
        again: a narrowed resume of its own device may have dropped it)."""
        client, rc, present = await RawClient.connected(
            self.port, VICTIM_SUB, DEV.username(), f"R|{self.victim_read}", clean=False
        )
        assert rc == 0, f"the victim was refused: CONNACK {rc}"
        if back_after is not None and not present:
            self.figures.problems.append(f"move {back_after}: the victim's session was gone")
        assert await client.subscribe(("dev/#", 1)) == [1]
        return Party(client, DEV, ("dev/#",), ())

    async def move(self, rng: random.Random, n: int) -> None:
        kind = rng.choice(sorted(ATTACKERS))
        ns, mode, reads, writes = ATTACKERS[kind]
        resume = rng.random() < 0.3
        self.figures.moves[kind] += 1
        assert self.victim is not None and self.publisher is not None
        pub = self.publisher
        away: list[bytes] = []
        if resume:  # the victim goes away, leaving a session with messages queued
            self.figures.resumes += 1
            await self.victim.client.disconnect()
            for what in ("secret", "public"):
                away.append(_payload(DEV, "victim", n, f"away-{what}"))
                await pub.client.publish(f"dev/{what}/{n}", away[-1], qos=1)

        client_id = VICTIM_SUB if resume else f"GID_attack@@@m{n}"
        username = ns.username(mode)
        if mode == "Signature":
            password = ns.signature(client_id)
        elif kind == "narrowed_token" and rng.random() < 0.5:  # two tokens, R and W
            password = (f"R|{self.world.issue(ns, TokenType.R, reads)}"
                        f"|W|{self.world.issue(ns, TokenType.W, writes)}")  # fmt: skip
        else:
            password = f"RW|{self.world.issue(ns, TokenType.RW, reads)}"
        clean = False if resume else rng.random() < 0.5
        client, rc, present = await RawClient.connected(
            self.port, client_id, username, password, clean=clean
        )
        self.figures.attacker_connacks[str(rc)] += 1
        attacker = self.attackers[n] = Party(client, ns, reads, writes)
        if rc != 0:  # every attacker here holds genuine credentials of its own namespace
            self.figures.problems.append(f"move {n} ({kind}): attacker refused, CONNACK {rc}")
        if resume and present and ns != DEV:
            self.figures.escapes["session_resumed_across_namespaces"] += 1
            self.figures.problems.append(f"move {n} ({kind}): resumed the victim's session")

        marker_topic = f"dev/public/attmark/{n}" if ns == DEV else f"dev/attmark/{n}"
        alive = rc == 0
        if alive:
            filters = rng.sample(FILTERS, rng.randrange(1, 4))
            alive = await _subscribe(client, [*filters, marker_topic])
        # The victim's baits, while the attacker is subscribed (or away with a session).
        await pub.client.publish(f"dev/secret/{n}", _payload(DEV, "victim", n, "secret"), qos=1)
        await pub.client.publish(f"dev/public/{n}", _payload(DEV, "victim", n, "public"), qos=1)
        await pub.client.publish(
            f"dev/retained/{n}", _payload(DEV, "victim", n, "retained"), qos=1, retain=True
        )
        await pub.client.publish(f"dev/p2p/{client_id}", _payload(DEV, "victim", n, "p2p"), qos=1)
        if alive:
            targets = rng.sample(
                [f"dev/secret/{n}", f"dev/public/x{n}", f"dev/marker/{n}", f"dev/p2p/{VICTIM_SUB}",
                 f"dev/retained/x{n}", f"dev/{n}"],
                rng.randrange(1, 4),
            )  # fmt: skip
            for topic in targets:
                alive = await _publish(
                    client,
                    topic,
                    _payload(ns, "attacker", n, topic),
                    topic.startswith("dev/retained"),
                )
                if not alive:
                    break
        marker = _payload(ns, "marker", n, "attacker")
        if alive:
            alive = await _publish(client, marker_topic, marker, False)
        seen = await _until(client, marker) if rc == 0 else []
        if seen is None:
            self.figures.problems.append(f"move {n} ({kind}): the attacker's marker never came")
            seen = []
        self.figures.attacker_closed_by_broker += rc == 0 and not alive
        for packet in seen:
            self._judge_attacker(n, kind, attacker, client_id, packet)
        await _leave(client)
        if resume and ns != DEV:
            # Forget the outsider's own session of that client id (in its namespace), so
            # that a later outsider's "session present" can only be the victim's.
            again, rc, _ = await RawClient.connected(
                self.port, client_id, username, password, clean=True
            )
            await _leave(again)

        if resume:  # the victim comes back to its session
            self.victim = await self._victim(back_after=n)
        victim_marker = _payload(DEV, "marker", n, "victim")
        await pub.client.publish(f"dev/marker/{n}", victim_marker, qos=1)
        seen = await _until(self.victim.client, victim_marker)
        if seen is None:
            self.figures.problems.append(f"move {n} ({kind}): the victim's marker never came")
            seen = []
        got = set()
        for packet in seen:
            got.add(packet.payload)
            self._judge_victim(n, kind, packet)
        if ns != DEV:  # an outsider took nothing from the victim's session
            lost = [p for p in away if p not in got]
            self.figures.victim_lost += len(lost)
            if lost:
                self.figures.problems.append(f"move {n} ({kind}): the victim lost {lost}")

    def _judge_attacker(
        self, n: int, kind: str, attacker: Party, client_id: str, packet: Packet
    ) -> None:
        message = _message(packet)
        if message is None:
            return
        self.figures.messages_judged += 1
        if message["o"] != attacker.ns.name:
            self._escape(n, kind, "attacker_saw_another_namespace", packet)
        elif not attacker.may_read(packet.topic) and packet.topic != f"dev/p2p/{client_id}":
            self._escape(n, kind, "attacker_read_outside_its_resources", packet)

    def _judge_victim(self, n: int, kind: str, packet: Packet) -> None:
        message = _message(packet)
        if message is None:
            return
        self.figures.messages_judged += 1
        if message["o"] != DEV.name:
            self._escape(n, kind, "victim_got_another_namespace", packet)
        elif message["by"] == "attacker":  # a narrowed token of the victim's namespace
            sender = self.attackers[message["m"]]
            if not (sender.may_write(packet.topic) or packet.topic.startswith("dev/p2p/")):
                self._escape(n, kind, "attacker_wrote_outside_its_resources", packet)

    def _escape(self, n: int, kind: str, what: str, packet: Packet) -> None:
        self.figures.escapes[what] += 1
        self.figures.problems.append(
            f"ESCAPE move {n} ({kind}): {what}: {packet.topic} {packet.payload[:120]!r}"
        )

    async def close(self) -> None:
        for party in (self.victim, self.publisher):
            if party is not None:
                await _leave(party.client)


def _message(packet: Packet) -> dict[str, Any] | None:
    if packet.topic.startswith("$SYS/"):
        return None  # a notice about the client's own token
    return dict(json.loads(packet.payload))


async def _leave(client: RawClient) -> None:
    """DISCONNECT, unless the broker closed the connection already."""
    try:
        await client.disconnect()
    except ConnectionError:
        client.close()


async def _subscribe(client: RawClient, filters: list[str]) -> bool:
    """Subscribe; ``False`` if the broker closed the connection instead of a SUBACK."""
    try:
        await client.subscribe(*((f, 1) for f in filters), wait=False)
        await client.expect(SUBACK, READ_WITHIN_S)
    except (ConnectionError, TimeoutError):
        return False
    return True


async def _publish(client: RawClient, topic: str, payload: bytes, retain: bool) -> bool:
    """Publish at QoS 1; ``False`` if the broker closed the connection instead of a PUBACK."""
    try:
        await client.publish(topic, payload, qos=1, retain=retain)
    except (ConnectionError, TimeoutError):
        return False
    return True


async def _until(client: RawClient, marker: bytes) -> list[Packet] | None:
    """Every PUBLISH read before ``marker`` (acknowledged) or the connection's end;
    ``None`` if neither came in time."""
    seen: list[Packet] = []
    try:
        while True:
            packet = await client.read(READ_WITHIN_S)
            if packet is None:
                return seen
            if packet.kind != PUBLISH:
                continue
            await client.ack(packet)
            if packet.payload == marker:
                return seen
            seen.append(packet)
    except TimeoutError:
        return None
    except ConnectionError:
        return seen
