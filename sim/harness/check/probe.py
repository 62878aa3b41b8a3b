"""Trying a token on the broker with a real MQTT client (the SDK's transport): CONNECT,
SUBSCRIBE and PUBLISH inside the resources asked, then outside them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from sim.customer.adapter import ClientIdentity, Credentials
from sim.customer.client.errors import ConnectFailed, NotConnected
from sim.customer.client.transport import BrokerAddress, Connection, IncomingMessage

from .verdicts import ProbeFacts

__all__ = ["concrete_topic", "probe_token"]

PAYLOAD = b"mqtt-token-sim check appserver"


def concrete_topic(topic_filter: str) -> str:
    """A topic the filter matches: wildcards become ``probe``."""
    return "/".join("probe" if level in ("+", "#") else level for level in topic_filter.split("/"))


class _Session:
    def __init__(self, client_id: str):
        self.messages: asyncio.Queue[IncomingMessage] = asyncio.Queue()
        self.conn = Connection(client_id, on_message=self.messages.put_nowait)

    async def open(self, address: BrokerAddress, creds: Credentials, timeout_s: float) -> None:
        await self.conn.open(
            address,
            username=creds.username,
            password=creds.password,
            keepalive=60,
            connect_timeout=timeout_s,
        )

    async def echoed(self, topic: str, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while True:
                    msg = await self.messages.get()
                    if msg.topic == topic and msg.payload == PAYLOAD:
                        return True
        return False


async def probe_token(
    address: BrokerAddress,
    client: ClientIdentity,
    creds: Credentials,
    *,
    outside: Sequence[str],
    timeout_s: float = 5.0,
) -> ProbeFacts:
    """What the broker lets ``client`` do with ``creds`` (``grant`` left empty)."""
    readable, writable = "R" in client.actions, "W" in client.actions
    s = _Session(client.client_id)
    try:
        await s.open(address, creds, timeout_s)
    except ConnectFailed as exc:
        return ProbeFacts(client.client_id, client.actions, connect=str(exc))
    facts: dict[str, object] = {}
    inside_filter = client.resources[0]
    inside_topic = concrete_topic(inside_filter)
    try:
        if readable:
            facts["inside_subscribe"] = await s.conn.subscribe(
                inside_filter, 1, ack_timeout=timeout_s
            )
        if writable:
            await s.conn.publish(inside_topic, PAYLOAD, qos=1, retain=False, ack_timeout=timeout_s)
            facts["inside_publish"] = "acked"
            if readable:
                facts["echoed"] = await s.echoed(inside_topic, timeout_s)
    except NotConnected as exc:
        facts.setdefault("inside_publish" if writable else "inside_subscribe", str(exc))
    if outside:
        if readable:
            facts["outside_subscribe"] = await _outside_subscribe(s, outside[0], timeout_s)
        if writable:
            if not s.conn.is_open:
                await s.conn.close()
                s = _Session(client.client_id)
                with contextlib.suppress(ConnectFailed):
                    await s.open(address, creds, timeout_s)
            facts["outside_publish"] = await _outside_publish(s, outside[0], timeout_s)
    await s.conn.close()
    return ProbeFacts(client.client_id, client.actions, **facts)  # type: ignore[arg-type]


async def _outside_subscribe(s: _Session, topic_filter: str, timeout_s: float) -> str:
    if not s.conn.is_open:
        return "disconnected"
    try:
        granted = await s.conn.subscribe(topic_filter, 1, ack_timeout=timeout_s)
    except NotConnected:
        return "disconnected"
    return "refused" if granted == 0x80 else "granted"


async def _outside_publish(s: _Session, topic_filter: str, timeout_s: float) -> str:
    if not s.conn.is_open:
        return "not connected"
    try:
        await s.conn.publish(
            concrete_topic(topic_filter), PAYLOAD, qos=1, retain=False, ack_timeout=timeout_s
        )
    except NotConnected:
        return "disconnected"
    # The provider's broker disconnects (SPEC §4); one in gentle mode acknowledges and
    # drops: the grant check (the token's resources) decides either way.
    return "acked"
