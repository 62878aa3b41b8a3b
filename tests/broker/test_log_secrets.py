"""No password, token or signature in the broker's log at INFO (docs/broker.md "Logs"),
whatever the clients do: every logger of the process is captured (ours, amqtt's,
websockets', asyncio's), while clients connect with tokens and signatures over TCP and
WebSocket, upload tokens, are refused, send garbage and resume with narrower tokens.
"""

from __future__ import annotations

import json
import logging

import aiomqtt
import pytest

from mock_broker.authority import TokenAuthority
from mock_broker.broker import run_broker
from mock_broker.config import BrokerConfig
from sim.shared.clock import ManualClock
from sim.shared.protocol import (
    TokenType,
    build_token_password,
    build_username,
    signature_password,
)

from .conftest import AK, INSTANCE, SK, USER, Minter, connect_raw
from .rawmqtt import PUBLISH, RawClient

pytestmark = pytest.mark.timeout(60)


async def test_no_credential_reaches_the_log_at_info(
    caplog: pytest.LogCaptureFixture,
    minter: Minter,
    clock: ManualClock,
    authority: TokenAuthority,
) -> None:
    caplog.set_level(logging.INFO)  # the root logger: every logger of the process
    secrets: list[str] = []

    def token(*args: object, **kw: object) -> str:
        value = minter.token(*args, **kw)  # type: ignore[arg-type]
        secrets.append(value)
        return value

    config = BrokerConfig(port=0, ws_port=0, profile="mqtt")  # topics a/...: no parent topics
    async with run_broker(config, clock, authority=authority) as broker:
        # Token mode over TCP: connect, upload a token, upload a wrong one.
        password = build_token_password({TokenType.R: token(("R",), ("a/#",))})
        client = await connect_raw(broker.port, "GID_logs@@@tcp", password, clean=False)
        assert await client.subscribe(("a/#", 1)) == [1]
        upload = json.dumps({"token": token(("R",), ("a/b",)), "type": "R"}).encode()
        await client.publish("$SYS/uploadToken", upload, qos=1)
        wrong = json.dumps({"token": token(("R", "W"), ("a/#",)), "type": "R"}).encode()
        await client.publish("$SYS/uploadToken", wrong, qos=1, wait=False)
        assert (await client.expect(PUBLISH)).topic == "$SYS/tokenInvalidNotice"
        assert await client.closed()
        # Resumed with a narrower token: subscriptions dropped (logged at INFO).
        narrower = build_token_password({TokenType.R: token(("R",), ("a/b",))})
        back, rc, present = await RawClient.connected(
            broker.port, "GID_logs@@@tcp", USER, narrower, clean=False
        )
        assert (rc, present) == (0, 1)
        await back.send(b"\xf0\x00")  # garbage: closed
        assert await back.closed()
        # Refused logins: a forged token, another account's, a malformed password.
        forged = token()[:-6] + "AAAAA="
        secrets.append(forged)
        for pw in (
            build_token_password({TokenType.RW: forged}),
            build_token_password({TokenType.RW: token(ak="ak2", instance="inst2")}),
            "RW|" + token() + "|R",
        ):
            _, rc, _ = await RawClient.connected(broker.port, "GID_logs@@@bad", USER, pw)
            assert rc in (4, 5)
        # Signature mode, right and wrong.
        sig_user = build_username(AK, INSTANCE, mode="Signature")
        for client_id in ("GID_logs@@@sig", "GID_logs@@@sig2"):
            signature = signature_password(SK, client_id)
            secrets.append(signature)
            _, rc, _ = await RawClient.connected(broker.port, "GID_logs@@@sig", sig_user, signature)
            assert rc == (0 if client_id == "GID_logs@@@sig" else 5)
        # A real client library over WebSocket.
        assert broker.ws_port is not None
        async with aiomqtt.Client(
            "127.0.0.1", broker.ws_port, identifier="GID_logs@@@ws", username=USER,
            password=build_token_password({TokenType.RW: token()}), transport="websockets",
        ) as ws:  # fmt: skip
            await ws.publish("a/ws", b"x", qos=1)

    assert caplog.records, "nothing was logged at INFO: the capture is not working"
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''} {r.stack_info or ''}" for r in caplog.records
    )
    for secret in secrets:
        for piece in (secret, secret[:20], secret[-20:]):
            assert piece not in logged, f"a credential is in the log: ...{piece[-8:]}"
