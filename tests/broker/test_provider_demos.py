"""The provider's own demos (github.com/AliwareMQ/mqtt-demo), ported as facts, against the
whole stack (``run_stack``, the dev instance ``mqtt-dev`` and its parent topic ``demo``)
under the default, provider, profile; on the system clock and on a manual clock that
starts at the real now (the demos compute ``expireTime`` from their own wall clock).

* ``lmq-java-demo/.../MQ4IoTSendMessageToMQ4IoTUseTokenMode.java``: ApplyToken (OpenAPI
  ``onsmqtt`` 2020-04-20) for ``demo/testMq4Iot``, ``R,W``, one hour; Paho, MQTT 3.1.1,
  clean session, keep-alive 90, username ``Token|AK|instance``, password ``RW|token``;
  subscribe ``demo/testMq4Iot`` at QoS 0; ten times: publish to ``demo/testMq4Iot`` and
  P2P to ``demo/p2p/<its own client id>``, QoS 0.  (The demo subscribes from an executor
  while it publishes, racing its first pub/sub messages, at the provider too; the port
  waits for the SUBACK.)
* ``lmq-python-demo/MQTTSendP2PMessage.py``: paho with version-1 callbacks, signature
  mode (``Signature|AK|instance``, ``Base64(HMAC-SHA1(SK, clientId))``); in
  ``on_connect`` it subscribes to the bare parent topic and sends ten P2P messages
  (``1``..``10``) to itself at QoS 0: it receives all ten.  (The demo sleeps 0.1 s
  between publishes inside the callback; the port does not.)
"""

from __future__ import annotations

import asyncio
import queue
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import paho.mqtt.client as paho
import pytest

from sim.harness.stack import StackConfig, StackHandle, run_stack
from sim.shared.clock import ManualClock, SystemClock
from sim.shared.protocol import signature_password
from sim.shared.protocol.signing import rpc_sign

pytestmark = pytest.mark.timeout(60)

ACCESS_KEY, SECRET_KEY, INSTANCE = "dev-ak", "dev-sk", "mqtt-dev"
PARENT_TOPIC = "demo"


@pytest.fixture(params=["system", "manual"])
async def stack(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[StackHandle]:
    clock = SystemClock() if request.param == "system" else ManualClock(time.time())
    config = (
        StackConfig(data_dir=tmp_path, dev_client=False)
        .with_free_ports()
        .with_appserver(password_hash_cost=4)
    )
    async with run_stack(config, clock=clock) as handle:
        assert handle.broker is not None and handle.broker.config.profile == "provider"
        yield handle


async def _apply_token(stack: StackHandle, resources: list[str], actions: str) -> str:
    """TokenApiDemo.applyToken: resources sorted and joined, expireTime = the caller's
    wall clock + one hour, an RPC-signed ApplyToken call."""
    params = {
        "Action": "ApplyToken",
        "Version": "2020-04-20",
        "AccessKeyId": ACCESS_KEY,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": uuid.uuid4().hex,
        "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Format": "JSON",
        "InstanceId": INSTANCE,
        "Resources": ",".join(sorted(resources)),
        "Actions": actions,
        "ExpireTime": str(int(time.time() * 1000) + 3600 * 1000),
    }
    params["Signature"] = rpc_sign("GET", params, SECRET_KEY)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{stack.authserver_url}/", params=params) as resp,
    ):
        body = await resp.json()
    assert resp.status == 200, body
    return str(body["Token"])


def _broker_port(stack: StackHandle) -> int:
    port = urlsplit(stack.broker_url).port
    assert port is not None
    return port


class Received:
    """What a paho client's network thread received, awaited from the test."""

    def __init__(self) -> None:
        self.connack: queue.Queue[int] = queue.Queue()
        self.subacks: queue.Queue[object] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()

    async def take(self, n: int) -> list[tuple[str, bytes]]:
        return [await asyncio.to_thread(self.messages.get, True, 10) for _ in range(n)]


async def test_java_token_demo_pub_sub_and_p2p(stack: StackHandle) -> None:
    client_id = "GID_demo@@@device001"
    topic = f"{PARENT_TOPIC}/testMq4Iot"
    token = await _apply_token(stack, [topic], "R,W")
    got = Received()
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311,
        clean_session=True,
    )  # fmt: skip
    client.username_pw_set(f"Token|{ACCESS_KEY}|{INSTANCE}", f"RW|{token}")
    client.on_connect = lambda c, u, f, rc, p: got.connack.put(rc.value)
    client.on_subscribe = lambda c, u, mid, rcs, p: got.subacks.put([r.value for r in rcs])
    client.on_message = lambda c, u, m: got.messages.put((m.topic, m.payload))
    await asyncio.to_thread(client.connect, "127.0.0.1", _broker_port(stack), 90)
    client.loop_start()
    try:
        assert await asyncio.to_thread(got.connack.get, True, 10) == 0
        client.subscribe([(topic, 0)])
        assert await asyncio.to_thread(got.subacks.get, True, 10) == [0]
        p2p_topic = f"{PARENT_TOPIC}/p2p/{client_id}"
        for _ in range(10):
            client.publish(topic, b"hello mq4Iot pub sub msg", qos=0)
            client.publish(p2p_topic, b"hello mq4Iot p2p msg", qos=0)
        received = await got.take(20)
        assert received.count((topic, b"hello mq4Iot pub sub msg")) == 10
        assert received.count((p2p_topic, b"hello mq4Iot p2p msg")) == 10
        assert client.is_connected()  # no tokenInvalidNotice, no disconnect
    finally:
        client.loop_stop()
        client.disconnect()
    assert stack.broker is not None and not stack.broker.fidelity()


@pytest.mark.filterwarnings("ignore:Callback API version 1 is deprecated")  # the demo's
async def test_python_p2p_demo_receives_its_ten_messages(stack: StackHandle) -> None:
    group_id = "GID_demo"
    client_id = group_id + "@@@" + "device002"
    topic = PARENT_TOPIC
    got = Received()

    def on_connect(client: paho.Client, userdata: object, flags: object, rc: int) -> None:
        got.connack.put(rc)
        client.subscribe(topic, 0)
        for i in range(1, 11):
            client.publish(topic + "/p2p/" + client_id, str(i), qos=0)

    client = paho.Client(paho.CallbackAPIVersion.VERSION1, client_id)
    client.on_connect = on_connect
    client.on_message = lambda c, u, msg: got.messages.put((msg.topic, msg.payload))
    client.username_pw_set(
        "Signature" + "|" + ACCESS_KEY + "|" + INSTANCE, signature_password(SECRET_KEY, client_id)
    )
    await asyncio.to_thread(client.connect, "127.0.0.1", _broker_port(stack), 60)
    client.loop_start()
    try:
        assert await asyncio.to_thread(got.connack.get, True, 10) == 0
        received = await got.take(10)
        assert [payload for _, payload in received] == [str(i).encode() for i in range(1, 11)]
        assert {t for t, _ in received} == {f"{topic}/p2p/{client_id}"}
    finally:
        client.loop_stop()
        client.disconnect()
