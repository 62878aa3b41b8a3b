"""Locust load for mqtt-token-sim: an MQTT-with-token user and an AppServer HTTP user.

    locust -f scenarios/locustfile.py --headless -u 200 -r 50 --run-time 1m \\
        --host http://127.0.0.1:18081 --broker mqtt://127.0.0.1:1883

``--host`` is the AppServer; ``--broker`` the token broker.  Each user creates its own
AppServer account (``PUT /admin/accounts/{id}``, idempotent, so it works the same on
every worker of a distributed run), then:

* :class:`MqttTokenUser` -- asks for a token (``token:apply``), connects with it
  (``connect:fresh-token``), subscribes to its topic, then publishes QoS 1 messages
  (``publish:qos1``, timed to the PUBACK), reconnects with the token it already holds
  (``connect:cached-token``) and refreshes in session (``token:upload``: a new ask plus
  ``$SYS/uploadToken``, timed to the PUBACK).  Connects are timed from TCP open to
  CONNACK (paho's ``connect()`` opens the socket and sends CONNECT; the CONNACK is read by
  the same call path below), never reported as 0 ms.
* :class:`AppServerUser` -- only asks the AppServer for tokens (``token:apply``):
  the cache-hit path under load.

Every timing goes through ``events.request`` (``events.request.measure()``), so the
stats, the CSV and the distributed master see them like HTTP requests.
"""

# Locust first: it monkey-patches the standard library (gevent) before anything else
# imports socket or ssl.
import locust  # noqa: I001  (must stay first)
from locust import HttpUser, User, between, events, task
from locust.clients import HttpSession

import base64
import itertools
import json
import os
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

__all__ = ["AppServerUser", "MqttTokenUser"]

_ids = itertools.count()
_SECRET = "locust-secret-0"
CONNECT_TIMEOUT_S = 10.0
PUBACK_TIMEOUT_S = 10.0


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--broker",
        default="mqtt://127.0.0.1:1883",
        help="token broker of mqtt-token-sim (mqtt://host:port)",
        include_in_web_ui=True,
    )
    parser.add_argument(
        "--mqtt-qos1-payload",
        type=int,
        default=64,
        help="bytes per QoS 1 publish",
    )


def _new_client_id(kind: str) -> str:
    # Unique across the processes of a distributed run: pid plus a counter.
    return f"GID_locust@@@{kind}-{os.getpid()}-{next(_ids)}-{uuid.uuid4().hex[:6]}"


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


class _TokenAsker:
    """The AppServer calls shared by both users (on Locust's HTTP session)."""

    def __init__(self, user: HttpUser | User, client: Any):
        self.user = user
        self.http = client
        self.client_id = _new_client_id(type(user).__name__.lower())
        device = self.client_id.split("@@@", 1)[1]
        self.topic = f"locust/{device}/data"
        self.resources = [f"locust/{device}/+"]

    def create_account(self) -> None:
        body = {
            "secret": _SECRET,
            "grants": [{"resources": self.resources, "actions": "R,W"}],
            "enabled": True,
        }
        with self.http.put(
            f"/admin/accounts/{self.client_id}",
            json=body,
            name="admin:account",
            catch_response=True,
        ) as resp:
            if resp.status_code not in (200, 201, 204):
                resp.failure(f"account creation answered {resp.status_code}")

    def ask(self) -> dict[str, Any] | None:
        with self.http.post(
            "/v1/tokens",
            json={"resources": self.resources, "actions": "R,W"},
            headers={"Authorization": _basic(self.client_id, _SECRET)},
            name="token:apply",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"{resp.status_code}: {resp.text[:120]}")
                return None
            try:
                doc = resp.json()
                assert isinstance(doc.get("password"), str)
            except (ValueError, AssertionError):
                resp.failure("200 without a token document")
                return None
            return dict(doc)


class AppServerUser(HttpUser):
    """Asks the AppServer for tokens: the cached path, as a fleet restarting would."""

    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.asker = _TokenAsker(self, self.client)
        self.asker.create_account()

    @task
    def apply(self) -> None:
        self.asker.ask()


class _Mqtt:
    """A paho client run by hand (no background thread): connect, publish, wait.

    Locust users are greenlets; a paho network loop driven from the user itself keeps
    every wait inside the measured block and needs no thread.
    """

    def __init__(self, client_id: str):
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311
        )
        self.connack: Any = None
        self.acked: set[int] = set()
        self.received = 0
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.suback: Any = None

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connack = reason

    def _on_publish(self, _c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        self.acked.add(mid)

    def _on_message(self, _c: Any, _u: Any, _m: Any) -> None:
        self.received += 1

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, codes: Any, _p: Any) -> None:
        self.suback = codes

    def _pump_until(self, done: Any, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not done():
            if time.monotonic() > end:
                raise TimeoutError(f"no {what} within {timeout:.0f} s")
            rc = self.client.loop(timeout=0.05)
            if rc not in (paho.MQTT_ERR_SUCCESS,) and not done():
                raise ConnectionError(f"connection lost waiting for {what} (rc {rc})")

    def connect(self, host: str, port: int, username: str, password: str) -> None:
        self.connack = None
        self.client.username_pw_set(username, password)
        self.client.connect(host, port, keepalive=60)  # TCP open + CONNECT sent
        self._pump_until(lambda: self.connack is not None, CONNECT_TIMEOUT_S, "CONNACK")
        if self.connack.is_failure:
            raise ConnectionRefusedError(f"CONNACK refused: {self.connack}")

    def subscribe(self, topic: str) -> None:
        self.suback = None
        self.client.subscribe(topic, qos=1)
        self._pump_until(lambda: self.suback is not None, PUBACK_TIMEOUT_S, "SUBACK")
        if any(getattr(c, "is_failure", False) for c in self.suback):
            raise PermissionError(f"SUBACK refused: {self.suback}")

    def publish_qos1(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish failed (rc {info.rc})")
        self._pump_until(lambda: info.mid in self.acked, PUBACK_TIMEOUT_S, "PUBACK")
        self.acked.discard(info.mid)

    def disconnect(self) -> None:
        try:
            self.client.disconnect()
            self.client.loop(timeout=0.01)
        except (OSError, ValueError):
            pass


class MqttTokenUser(User):
    """A device: token from the AppServer, MQTT session on the token broker."""

    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        # The AppServer calls go through Locust's own HTTP session: same stats, same names.
        self.http = HttpSession(
            base_url=self.host or "http://127.0.0.1:18081",
            request_event=self.environment.events.request,
            user=self,
        )
        self.asker = _TokenAsker(self, self.http)
        broker = urlsplit(self.environment.parsed_options.broker)
        self.broker_host = broker.hostname or "127.0.0.1"
        self.broker_port = broker.port or 1883
        self.payload = b"x" * max(1, int(self.environment.parsed_options.mqtt_qos1_payload))
        self.mqtt = _Mqtt(self.asker.client_id)
        self.token: dict[str, Any] | None = None
        self.asker.create_account()
        self.token = self.asker.ask()
        if self.token is None:
            return
        if self._connect("connect:fresh-token"):
            with self.environment.events.request.measure("MQTT", "subscribe"):
                self.mqtt.subscribe(self.asker.topic)

    def on_stop(self) -> None:
        if getattr(self, "mqtt", None) is not None:
            self.mqtt.disconnect()

    def _connect(self, name: str) -> bool:
        assert self.token is not None
        ok = True
        with self.environment.events.request.measure("MQTT", name) as meta:
            try:
                self.mqtt.connect(
                    self.broker_host,
                    self.broker_port,
                    self.token["username"],
                    self.token["password"],
                )
            except Exception:
                ok = False
                raise
            finally:
                meta["response_length"] = 0
        return ok

    @task(10)
    def publish(self) -> None:
        if self.token is None:
            self.token = self.asker.ask()
            return
        with self.environment.events.request.measure(
            "MQTT", "publish:qos1", response_length=len(self.payload)
        ):
            self.mqtt.publish_qos1(self.asker.topic, self.payload)

    @task(1)
    def reconnect_with_cached_token(self) -> None:
        if self.token is None:
            return
        self.mqtt.disconnect()
        self._connect("connect:cached-token")

    @task(1)
    def refresh_in_session(self) -> None:
        if self.token is None:
            return
        fresh = self.asker.ask()
        if fresh is None:
            return
        self.token = fresh
        body = json.dumps({"token": fresh["token"], "type": fresh["type"]}).encode()
        with self.environment.events.request.measure("MQTT", "token:upload", len(body)):
            self.mqtt.publish_qos1("$SYS/uploadToken", body)


# Keep "locust" referenced: importing it first is what matters (gevent patching).
LOCUST_VERSION = getattr(locust, "__version__", "?")
