"""The broker stays a conforming MQTT 3.1.1 broker for what the token rules allow, and
serves the real client libraries: paho-mqtt (threads) and aiomqtt (asyncio), over TCP,
WebSocket and TLS; plus its metrics endpoint."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import queue
import ssl
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import aiomqtt
import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mock_broker.authority import TokenAuthority
from mock_broker.broker import BrokerHandle, run_broker
from mock_broker.config import BrokerConfig
from sim.shared.clock import ManualClock

from .conftest import USER, Minter, connect_raw
from .rawmqtt import PUBLISH, PUBREC, PUBREL, RawClient, connect_packet, packet

pytestmark = pytest.mark.timeout(30)


# -- MQTT behaviour ---------------------------------------------------------------------------


async def test_retained_messages(broker: BrokerHandle, minter: Minter) -> None:
    pub = await connect_raw(broker.port, "GID_test@@@pub", minter.password())
    await pub.publish("r/t", b"kept", qos=1, retain=True)
    sub = await connect_raw(broker.port, "GID_test@@@sub", minter.password())
    assert await sub.subscribe(("r/+", 1)) == [1]
    got = await sub.expect(PUBLISH)
    assert (got.topic, got.payload, got.retain, got.qos) == ("r/t", b"kept", True, 1)
    await sub.ack(got)
    await pub.publish("r/t", b"live", qos=0)
    got = await sub.expect(PUBLISH)
    assert (got.payload, got.retain) == (b"live", False)  # MQTT-3.3.1-9
    await pub.publish("r/t", b"", qos=1, retain=True)  # clears (MQTT-3.3.1-10)
    late = await connect_raw(broker.port, "GID_test@@@late", minter.password())
    assert await late.subscribe(("r/+", 1), ("marker", 0)) == [1, 0]
    await pub.publish("marker", b"m")
    assert (await late.expect(PUBLISH)).topic == "marker"


async def test_will_on_abnormal_close_only(broker: BrokerHandle, minter: Minter) -> None:
    watcher = await connect_raw(broker.port, "GID_test@@@w", minter.password())
    assert await watcher.subscribe(("will/+", 1)) == [1]
    polite = await connect_raw(
        broker.port, "GID_test@@@p", minter.password(), will=("will/p", b"p", 1, False)
    )
    await polite.disconnect()
    rude = await connect_raw(
        broker.port, "GID_test@@@r", minter.password(), will=("will/r", b"r", 1, False)
    )
    rude.close()
    got = await watcher.expect(PUBLISH)
    assert (got.topic, got.payload, got.qos) == ("will/r", b"r", 1)


async def test_overlapping_subscriptions_deliver_once_at_best_qos(
    broker: BrokerHandle, minter: Minter
) -> None:
    sub = await connect_raw(broker.port, "GID_test@@@o", minter.password())
    assert await sub.subscribe(("a/+", 0), ("a/#", 1), ("a/b", 0)) == [0, 1, 0]
    pub = await connect_raw(broker.port, "GID_test@@@pub", minter.password())
    await pub.publish("a/b", b"one", qos=1)
    await pub.publish("a/b", b"two", qos=1)
    first, second = await sub.expect(PUBLISH), await sub.expect(PUBLISH)
    assert (first.payload, first.qos, second.payload) == (b"one", 1, b"two")


async def test_qos2_both_ways(broker: BrokerHandle, minter: Minter) -> None:
    sub = await connect_raw(broker.port, "GID_test@@@s2", minter.password())
    assert await sub.subscribe(("q/2", 2)) == [2]
    pub = await connect_raw(broker.port, "GID_test@@@p2", minter.password())
    pid = await pub.publish("q/2", b"exactly once", qos=2)
    assert pid is not None
    rec = await pub.expect(PUBREC)
    assert rec.packet_id == pid
    await pub.send(packet(PUBLISH, 0x0C, b"\x00\x03q/2" + pid.to_bytes(2, "big") + b"exactly once"))
    await pub.send(packet(PUBREL, 0x02, pid.to_bytes(2, "big")))
    got = await sub.expect(PUBLISH)
    assert (got.payload, got.qos) == (b"exactly once", 2)
    await sub.ack(got)
    rel = await sub.expect(PUBREL)
    await sub.send(packet(7, 0, rel.body[:2]))  # PUBCOMP
    await pub.publish("q/2", b"marker", qos=0)
    assert (await sub.expect(PUBLISH)).payload == b"marker"  # the DUP was not delivered twice


@pytest.mark.parametrize(
    "broker_config", [BrokerConfig(port=0, auth_enabled=False, profile="mqtt")]
)
async def test_auth_off_accepts_anyone_and_zero_length_ids(broker: BrokerHandle) -> None:
    anon, rc, _ = await RawClient.connected(broker.port, "")
    assert rc == 0
    assert await anon.subscribe(("#", 0)) == [0]
    _, rc, _ = await RawClient.connected(broker.port, "", clean=False)
    assert rc == 2  # MQTT-3.1.3-8
    other, rc, _ = await RawClient.connected(broker.port, "any-id-at-all", "who", "ever")
    assert rc == 0
    await other.publish("x/y", b"open", qos=1)
    assert (await anon.expect(PUBLISH)).payload == b"open"


async def test_garbage_and_second_connect_close_the_connection(
    broker: BrokerHandle, minter: Minter
) -> None:
    junk = await RawClient.open(broker.port)
    await junk.send(b"\x10\xff\xff\xff\xff\x7f garbage")
    assert await junk.closed()
    client = await connect_raw(broker.port, "GID_test@@@twice", minter.password())
    await client.send(connect_packet("GID_test@@@twice", USER, minter.password()))
    assert await client.closed()  # MQTT-3.1.0-2
    fine = await connect_raw(broker.port, "GID_test@@@after", minter.password())
    assert await fine.subscribe(("a", 0)) == [0]


# -- real client libraries ---------------------------------------------------------------


class PahoClient:
    """paho-mqtt in its own network thread; the test awaits its events via threads."""

    def __init__(self, client_id: str, password: str, transport: str = "tcp") -> None:
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, transport=transport
        )
        self.client.username_pw_set(USER, password)
        self.connack: queue.Queue[int] = queue.Queue()
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.gone = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(rc.value)
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_disconnect = lambda c, u, f, rc, p: self.gone.set()

    async def connect(self, port: int) -> int:
        await asyncio.to_thread(self.client.connect, "127.0.0.1", port, 30)
        self.client.loop_start()
        return await asyncio.to_thread(self.connack.get, True, 5)

    async def message(self) -> paho.MQTTMessage:
        return await asyncio.to_thread(self.messages.get, True, 5)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


async def test_paho_client_gets_its_notices(
    broker: BrokerHandle, minter: Minter, clock: ManualClock
) -> None:
    client = PahoClient("GID_test@@@paho", minter.password("RW", ("p/#",), ttl=1000))
    try:
        assert await client.connect(broker.port) == 0
        client.client.subscribe("p/t", 1)
        client.client.publish("p/t", b"via paho", qos=1)
        assert (await client.message()).payload == b"via paho"
        clock.advance(1000)
        notice = await client.message()
        assert notice.topic == "$SYS/tokenExpireNotice"  # no subscription needed
        notice = await client.message()
        assert (notice.topic, json.loads(notice.payload)["code"]) == ("$SYS/tokenInvalidNotice", 2)
        assert await asyncio.to_thread(client.gone.wait, 5)
    finally:
        client.stop()


async def test_paho_refused_with_not_authorized(broker: BrokerHandle) -> None:
    client = PahoClient("GID_test@@@nope", "RW|not-a-token")
    try:
        assert await client.connect(broker.port) == 135  # paho's "not authorized"
    finally:
        client.stop()


async def test_aiomqtt_over_websocket(
    minter: Minter, clock: ManualClock, authority: TokenAuthority
) -> None:
    async with run_broker(
        BrokerConfig(port=0, ws_port=0, profile="mqtt"), clock, authority=authority
    ) as broker:
        assert broker.ws_port is not None
        async with aiomqtt.Client(
            "127.0.0.1", broker.ws_port, identifier="GID_test@@@ws", username=USER,
            password=minter.password(), transport="websockets",
        ) as client:  # fmt: skip
            await client.subscribe("w/s", qos=1)
            await client.publish("w/s", b"over ws", qos=1)
            async for message in client.messages:
                assert message.payload == b"over ws"
                break


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_aiomqtt_over_tls(
    minter: Minter, clock: ManualClock, authority: TokenAuthority, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    config = BrokerConfig(port=0, tls_port=0, tls_cert=cert, tls_key=key, profile="mqtt")
    async with run_broker(config, clock, authority=authority) as broker:
        assert broker.tls_port is not None
        context = ssl.create_default_context(cafile=str(cert))
        async with aiomqtt.Client(
            "127.0.0.1", broker.tls_port, identifier="GID_test@@@tls", username=USER,
            password=minter.password(), tls_context=context,
        ) as client:  # fmt: skip
            await client.subscribe("t/s", qos=0)
            await client.publish("t/s", b"over tls", qos=0)
            async for message in client.messages:
                assert message.payload == b"over tls"
                break
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client(
                "127.0.0.1", broker.tls_port, identifier="GID_test@@@tls2", username=USER,
                password="RW|forged", tls_context=context,
            ):  # fmt: skip
                pass


@pytest.fixture
async def metrics_broker(
    clock: ManualClock, authority: TokenAuthority
) -> AsyncIterator[BrokerHandle]:
    async with run_broker(
        BrokerConfig(port=0, metrics_port=0, profile="mqtt"), clock, authority=authority
    ) as broker:
        yield broker


async def test_metrics_over_http(metrics_broker: BrokerHandle, minter: Minter) -> None:
    client = await connect_raw(metrics_broker.port, "GID_test@@@m", minter.password())
    await RawClient.connected(metrics_broker.port, "GID_test@@@m2", USER, "RW|forged")
    url = f"http://127.0.0.1:{metrics_broker.metrics_port}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        text = await resp.text()
    assert resp.status == 200
    assert 'mqtt_broker_connects_total{outcome="accepted"} 1.0' in text
    assert 'mqtt_broker_connects_total{outcome="forged"} 1.0' in text
    assert "mqtt_broker_connections 1.0" in text
    client.close()
