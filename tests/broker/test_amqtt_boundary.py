"""The one module that knows amqtt's insides checks them, and a drift is loud: the import
fails (so does the collection of the broker's tests), naming what changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from amqtt.broker import Broker
from amqtt.mqtt.publish import PublishPacket

from mock_broker.hardened.amqtt_boundary import AmqttDrift, check_amqtt

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_amqtt_is_the_expected_one() -> None:
    check_amqtt()


async def _ws_connected_elsewhere(self: Any, websocket: Any, listener_name: str) -> None:
    await self.handle_somehow(websocket)  # amqtt renamed its hand-over: ours is bypassed


@pytest.mark.parametrize(
    ("owner", "name", "replacement", "message"),
    [
        (Broker, "_client_connected", None, "Broker._client_connected is gone"),
        (Broker, "_create_server_instance", None, "Broker._create_server_instance is gone"),
        (
            PublishPacket,
            "build",
            classmethod(lambda cls, topic_name, message, qos: None),
            "PublishPacket.build takes ('topic_name', 'message', 'qos')",
        ),
        (Broker, "ws_connected", _ws_connected_elsewhere, "no longer uses _client_connected"),
    ],
)
def test_a_drift_is_named(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, replacement: Any, message: str
) -> None:
    if replacement is None:
        monkeypatch.delattr(owner, name)
    else:
        monkeypatch.setattr(owner, name, replacement)
    with pytest.raises(AmqttDrift, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_amqtt()


def test_a_drift_fails_the_collection_of_the_broker_tests() -> None:
    # A fresh interpreter whose amqtt lacks one private method, collecting one broker test
    # file: the conftest import fails, so pytest reports an error and collects nothing.
    script = (
        "import amqtt.broker, sys, pytest\n"
        "del amqtt.broker.Broker._client_connected\n"
        "sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider',"
        " 'tests/broker/test_decision.py']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0, proc.stdout
    assert "AmqttDrift" in proc.stdout + proc.stderr
    assert "Broker._client_connected is gone" in proc.stdout + proc.stderr
