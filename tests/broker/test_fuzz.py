"""Hypothesis against a live broker: random usernames, passwords and upload payloads
never crash it and never authenticate without a valid token.

The broker runs in a thread with its own event loop, so that Hypothesis drives plain
blocking sockets, example after example, against one broker.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mock_broker.authority import TokenAuthority
from mock_broker.broker import run_broker
from mock_broker.config import BrokerConfig
from mock_broker.decision import AccountInfo
from sim.shared.clock import ManualClock
from sim.shared.protocol.tokens import TokenCodec, new_key

from .conftest import AK, INSTANCE, SK, USER, Minter
from .rawmqtt import CONNACK, PUBACK, PUBLISH, connect_packet, packet

pytestmark = pytest.mark.timeout(120)


@dataclass
class Live:
    port: int
    minter: Minter
    loop: asyncio.AbstractEventLoop


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    key = new_key()
    clock = ManualClock(1_800_000_000.0)
    authority = TokenAuthority()
    authority.set_keys({"k1": key}, "k1")
    authority.set_account(AccountInfo(AK, SK, frozenset({INSTANCE})))
    ready: dict[str, object] = {}
    started, stop = threading.Event(), None

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        async with run_broker(BrokerConfig(port=0), clock, authority=authority) as broker:
            ready["port"], ready["loop"] = broker.port, asyncio.get_running_loop()
            started.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10)
    loop = ready["loop"]
    assert isinstance(loop, asyncio.AbstractEventLoop)
    yield Live(int(ready["port"]), Minter(TokenCodec({"k1": key}, "k1"), clock), loop)  # type: ignore[call-overload]
    assert stop is not None
    loop.call_soon_threadsafe(stop.set)
    thread.join(20)


def _read_packet(sock: socket.socket) -> tuple[int, bytes] | None:
    first = sock.recv(1)
    if not first:
        return None
    mult, length = 1, 0
    while True:
        b = sock.recv(1)[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return first[0] >> 4, body


def _connect(
    port: int, client_id: bytes | str, username: bytes | str | None, password: bytes | str | None
) -> tuple[socket.socket, int | None]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(connect_packet(client_id, username, password))
    got = _read_packet(sock)
    if got is None:
        return sock, None  # closed without CONNACK (malformed input)
    kind, body = got
    assert kind == CONNACK
    return sock, body[1]


def _still_serving(live: Live) -> None:
    sock, rc = _connect(live.port, "GID_test@@@probe", USER, live.minter.password())
    assert rc == 0
    sock.close()


texts = st.one_of(st.text(max_size=120), st.binary(max_size=120))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    username=st.one_of(st.none(), texts, st.just(USER)),
    password=st.one_of(st.none(), texts),
    client_id=st.one_of(texts, st.just("GID_test@@@x")),
)
def test_random_credentials_never_authenticate(
    live: Live, username: object, password: object, client_id: object
) -> None:
    if password is not None and username is None:
        username = b""  # a password needs a username flag in MQTT 3.1.1
    sock, rc = _connect(live.port, client_id, username, password)  # type: ignore[arg-type]
    sock.close()
    assert rc != 0
    _still_serving(live)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda t, k: json.dumps({"token": t, "type": k}).encode(),
            st.text(max_size=60),
            st.sampled_from(["R", "W", "RW", "X", ""]),
        ),
    )
)
def test_random_uploads_are_refused_with_a_notice(live: Live, payload: bytes) -> None:
    sock, rc = _connect(live.port, "GID_test@@@up", USER, live.minter.password())
    assert rc == 0
    topic = b"$SYS/uploadToken"
    sock.sendall(
        packet(PUBLISH, 0x02, len(topic).to_bytes(2, "big") + topic + b"\x00\x01" + payload)
    )
    kinds = []
    while (got := _read_packet(sock)) is not None:
        kinds.append(got[0])
        if got[0] == PUBLISH:
            assert json.loads(got[1][2 + len("$SYS/tokenInvalidNotice") :])["code"] in (
                1,
                2,
                3,
                5,
                -1,
            )
    sock.close()
    assert PUBACK not in kinds and PUBLISH in kinds
    _still_serving(live)
