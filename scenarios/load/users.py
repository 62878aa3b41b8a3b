"""Locust users of mqtt-token-sim: devices with a token, on one MQTT socket each.

Each user owns its AppServer account (``PUT /admin/accounts/{id}``: idempotent, so
the same on every worker), asks the AppServer for a token over the process's shared
pool (:mod:`.appserver`) and holds one MQTT session (:mod:`.mqtt`): one descriptor per
user, no thread, serviced between tasks (keep-alive, incoming QoS 1 PUBACKed, the
broker's ``$SYS`` notices handled, SPEC §4).

* :class:`MqttTokenUser` -- a busy device: QoS 1 publishes (``publish:qos1``, timed
  to the PUBACK), reconnects with the token it holds (``connect:cached-token``) and
  refreshes in session (``token:apply`` + ``token:upload``, timed to the PUBACK of
  ``$SYS/uploadToken``);
* :class:`DeviceUser` -- an idle device (the fleet and storm shapes, :mod:`.shapes`):
  connects, subscribes, then only keeps its session alive, refreshes its token when the
  broker's expire notice comes (``$SYS/uploadToken``), and after a loss comes back
  with the token it holds after a first retry drawn with full jitter (SPEC §6), asking
  the AppServer again only when the broker refuses that token;
* :class:`AppServerUser` -- only ``token:apply`` (the AppServer's cached path).

Any AppServer: with ``--adapter FILE`` (docs/your-appserver.md) every user is one of the
adapter's ``[clients]`` (its accounts are the AppServer's own: no ``admin:account``) and
asks as the file says (``token:apply``); its topic is under its first resource.

Request names, by kind: ``admin:account``, ``token:apply``, ``connect:fresh-token``,
``connect:cached-token`` (TCP open -> CONNACK, never 0 ms), ``subscribe``,
``publish:qos1``, ``token:upload``, ``connection:lost`` (the broker or the network
ended a session outside a storm), ``generator:overloaded`` (:mod:`.health`).
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid
from typing import Any

import gevent
from gevent.event import Event
from locust import User, between, constant, task
from locust.exception import StopUser

from sim.customer.adapter import ClientIdentity
from sim.customer.client.policy import Backoff, react_to_invalid
from sim.shared.protocol import (
    SYS_EXPIRE_NOTICE,
    SYS_INVALID_NOTICE,
    SYS_UPLOAD_TOKEN,
    InvalidCode,
    InvalidNotice,
    InvalidPayload,
    TokenType,
    UploadToken,
)

from .mqtt import MqttSession, Refused
from .runtime import Runtime, runtime_of

__all__ = ["AppServerUser", "DeviceUser", "MqttTokenUser"]

_ids = itertools.count()
_SECRET = "locust-secret-0"


def parse_pacing(text: str) -> tuple[float, float]:
    """``"MIN,MAX"`` seconds (``"2"``: exactly 2) -> (min, max); a clear error else."""
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not 0 <= parts[0] <= parts[1]:
        raise ValueError(f"--mqtt-task-wait wants MIN,MAX seconds (0 <= MIN <= MAX), got {text!r}")
    return parts[0], parts[1]


def _new_client_id(kind: str) -> str:
    # Unique across the processes of a distributed run: pid, a counter, a random tail.
    return f"GID_locust@@@{kind}-{os.getpid()}-{next(_ids)}-{uuid.uuid4().hex[:6]}"


def topic_under(resource: str) -> str:
    """A topic a filter matches: its wildcards filled (``shop/dev-1/#`` -> ``.../data``)."""
    levels = ["x" if level == "+" else level for level in resource.split("/")]
    if levels[-1] == "#":
        levels[-1] = "data"
    return "/".join(levels)


class _Identity:
    """Client id, topic and resources of one simulated device; with an adapter, one of
    its ``[clients]`` (``client``)."""

    def __init__(self, kind: str, root: str, client: ClientIdentity | None = None):
        self.client = client
        if client is not None:
            self.client_id = client.client_id
            self.resources = list(client.resources)
            self.topic = topic_under(self.resources[0])
            return
        self.client_id = _new_client_id(kind)
        device = self.client_id.split("@@@", 1)[1]
        self.topic = f"{root}/{device}/data"
        self.resources = [f"{root}/{device}/+"]


def _identity(rt: Runtime, kind: str, root: str) -> _Identity:
    """A new device of this process: an adapter's next client, or one of our own."""
    if rt.adapter is None:
        return _Identity(kind, root)
    with rt.timed("ADAPTER", "adapter:client") as meta:
        client = rt.next_identity()
    if meta["exception"] is not None:
        raise StopUser()  # no client left for it (recorded as a failure)
    return _Identity(kind, root, client)


class _TokenHolder(User):
    """What every user of this module shares: account, token, MQTT session."""

    abstract = True
    kind = "device"

    def on_start(self) -> None:
        self.rt: Runtime = runtime_of(self.environment)
        opts = self.environment.parsed_options
        self.ident = _identity(self.rt, self.kind, str(opts.topic_root))
        self.timeout = float(opts.mqtt_timeout)
        self.token: dict[str, Any] | None = None
        self.prepared = False
        self.refresh_due = False
        self.session = MqttSession(
            self.ident.client_id,
            keepalive=int(opts.mqtt_keepalive),
            on_message=self._on_message,
            on_lost=self._on_lost,
        )

    @property
    def connected(self) -> bool:
        session = getattr(self, "session", None)
        return session is not None and session.connected

    def on_stop(self) -> None:
        session = getattr(self, "session", None)
        if session is not None:
            session.close()

    # ------------------------------------------------------------------ AppServer
    def create_account(self) -> bool:
        if self.ident.client is not None:
            return True  # an adapter's client: its account is the AppServer's own
        with self.rt.timed("HTTP", "admin:account") as meta:
            self.rt.api.put_account(self.ident.client_id, _SECRET, self.ident.resources)
        return meta["exception"] is None

    def ask(self) -> dict[str, Any] | None:
        """``token:apply``; the new token document, or None (failure recorded)."""
        self.rt.token_asked()
        doc = None  # (stays None when the block fails: measure() swallows the error)
        with self.rt.timed("HTTP", "token:apply") as meta:
            doc = _ask(self.rt, self.ident)
        return doc if meta["exception"] is None else None

    # ------------------------------------------------------------------ MQTT
    def connect(self, name: str) -> Exception | None:
        """Open the session with the token held; the failure (recorded) or None."""
        assert self.token is not None
        host, port = self.rt.broker
        with self.rt.timed("MQTT", name) as meta:
            self.session.open(
                host, port, self.token["username"], self.token["password"], self.timeout
            )
        if meta["exception"] is None:
            self.rt.session_back(self)
        return meta["exception"]  # type: ignore[no-any-return]

    def subscribe(self) -> bool:
        with self.rt.timed("MQTT", "subscribe") as meta:
            self.session.subscribe(self.ident.topic, self.timeout)
        return meta["exception"] is None

    def upload(self, doc: dict[str, Any]) -> bool:
        """``$SYS/uploadToken`` (SPEC §4), timed to its PUBACK (sent after the swap)."""
        with self.rt.timed("MQTT", "token:upload") as meta:
            body = UploadToken(doc["token"], TokenType(doc["type"])).encode()
            meta["response_length"] = len(body)
            self.session.publish_qos1(SYS_UPLOAD_TOKEN, body, self.timeout)
        if meta["exception"] is None:
            self.token = doc
            return True
        return False

    def refresh(self, *, same_too: bool = False) -> bool:
        """Ask for a token and upload it in session; True when the session has a new
        one.  ``same_too``: upload even the token already held (load on the path)."""
        fresh = self.ask()
        if fresh is None:
            return False
        same = self.token is not None and fresh["password"] == self.token["password"]
        if same and not same_too:
            # The AppServer's cache still finds the token fresh enough: nothing to send.
            return False
        return self.upload(fresh) and not same

    # ------------------------------------------------------------------ session events
    def _on_message(self, topic: str, payload: bytes) -> None:
        # Runs in the session's service greenlet: decide, never block.
        if topic == SYS_EXPIRE_NOTICE:
            self.refresh_due = True
            self.wake()
        elif topic == SYS_INVALID_NOTICE:
            try:
                code = InvalidNotice.parse(payload).code
            except InvalidPayload:
                code = InvalidCode.FORGED  # unreadable: do not trust the token either
            if react_to_invalid(code).discard_token:
                self.token = None  # dead: ask the AppServer before connecting again

    def _on_lost(self, reason: str) -> None:
        self.rt.session_lost(self, reason)
        self.wake()

    def wake(self) -> None:
        """Something for the user's own greenlet to do (subclasses wait on it)."""

    def drop(self) -> None:
        """The storm's client-side lever: lose the connection as a network cut would."""
        self.session.drop()


class MqttTokenUser(_TokenHolder):
    """A busy device: token, session, QoS 1 publishes, reconnects and refreshes.

    Between two tasks it waits ``--mqtt-task-wait MIN,MAX`` seconds (uniform; default
    5 to 15: a device reporting about every 10 s).
    """

    kind = "mqtttokenuser"

    def wait_time(self) -> float:
        low, high = self._pacing
        return low + random.random() * (high - low)

    def on_start(self) -> None:
        super().on_start()
        self._pacing = parse_pacing(str(self.environment.parsed_options.mqtt_task_wait))
        self.rt.register(self)
        self.has_account = self.create_account()
        if not self.has_account:
            return  # the tasks try again: nothing is asked of an account not there
        self.token = self.ask()
        if self.token is None:
            return
        self.prepared = True
        if self.connect("connect:fresh-token") is None:
            self.subscribe()

    def on_stop(self) -> None:
        super().on_stop()
        self.rt.unregister(self)

    def _ensure_session(self) -> bool:
        """Connected, or reconnected now (the broker may have dropped us between tasks)."""
        if self.session.connected:
            return True
        if not self.has_account:
            self.has_account = self.create_account()
            if not self.has_account:
                return False
        name = "connect:cached-token"
        if self.token is None:
            self.token = self.ask()
            name = "connect:fresh-token"
            if self.token is None:
                return False
        failure = self.connect(name)
        if isinstance(failure, Refused):
            self.token = None  # refused token: ask again next time
        if failure is not None:
            return False
        return self.subscribe()

    @task(10)
    def publish(self) -> None:
        if not self._ensure_session():
            return
        if self.refresh_due:
            self.refresh_due = False
            self.refresh()
            return
        payload = b"x" * max(1, int(self.environment.parsed_options.mqtt_qos1_payload))
        with self.rt.timed("MQTT", "publish:qos1", len(payload)):
            self.session.publish_qos1(self.ident.topic, payload, self.timeout)

    @task(1)
    def reconnect_with_cached_token(self) -> None:
        if self.token is None or not self._ensure_session():
            return
        self.session.close()
        if self.connect("connect:cached-token") is None:
            self.subscribe()

    @task(1)
    def refresh_in_session(self) -> None:
        if self.token is None or not self._ensure_session():
            return
        self.refresh(same_too=True)


class DeviceUser(_TokenHolder):
    """An idle device: one session kept alive, refreshed in session, back after a loss.

    ``gated``: wait for the master's go (:data:`.runtime.FLEET_CONNECT_MESSAGE`) between
    getting the token and connecting, so the fleet shape can weigh the broker's memory
    per connection alone.
    """

    wait_time = constant(0)
    kind = "device"
    gated = False

    def on_start(self) -> None:
        super().on_start()
        self.storm_round_lost = 0
        self.storm_round_back = 0
        self._event = Event()
        self._lost = False
        self._refresh_at: float | None = None
        opts = self.environment.parsed_options
        window = max(0.01, float(opts.reconnect_window))
        self.backoff = Backoff(base=window, cap=max(30.0, window))
        self.rng = random.Random(self.ident.client_id)
        self.rt.register(self)
        attempt = 0
        while not (self.create_account() and self._get_token()):
            self._pause(attempt)
            attempt += 1
        self.prepared = True
        if self.gated:
            self.rt.fleet_gate.wait()
            # All at once, or spread over the window (a fleet sized past the broker's
            # connect rate would otherwise time its connects out in the listen queue).
            gevent.sleep(self.rng.uniform(0.0, float(opts.connect_window)))
        self._come_back("connect:fresh-token", first_delay=False)

    def on_stop(self) -> None:
        super().on_stop()
        self.rt.unregister(self)

    def wake(self) -> None:
        self._event.set()

    def _on_lost(self, reason: str) -> None:
        self._lost = True
        super()._on_lost(reason)

    def _get_token(self) -> bool:
        self.token = self.ask()
        return self.token is not None

    def _pause(self, attempt: int) -> None:
        gevent.sleep(self.backoff.delay(attempt, self.rng))

    def _come_back(self, name: str, *, first_delay: bool = True) -> None:
        """Connect until it holds: a first retry within the jitter window, then the
        backoff; a refused token is replaced by a new one from the AppServer."""
        attempt = 0
        if first_delay:
            self._pause(attempt)
        while True:
            if self.token is None:
                if not self._get_token():
                    attempt += 1
                    self._pause(attempt)
                    continue
                name = "connect:fresh-token"
            self._lost = False
            failure = self.connect(name)
            if failure is None:
                self.subscribe()
                return
            self.rt.connect_failed()
            if isinstance(failure, Refused):
                self.token = None
            attempt += 1
            self._pause(attempt)

    @task
    def live(self) -> None:
        timeout = None
        if self._refresh_at is not None:
            timeout = max(0.0, self._refresh_at - time.monotonic())
        self._event.wait(timeout)
        self._event.clear()
        if self._lost or not self.session.connected:
            self._come_back("connect:cached-token" if self.token else "connect:fresh-token")
            return
        if self.refresh_due or (
            self._refresh_at is not None and time.monotonic() >= self._refresh_at
        ):
            self.refresh_due = False
            self._refresh_at = None
            if not self.refresh() and self.session.connected:
                # Not refreshed yet (same token, AppServer busy): ask again shortly.
                self._refresh_at = time.monotonic() + 5.0


class AppServerUser(User):
    """Asks the AppServer for tokens: its cached path, as a fleet restarting would."""

    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        self.rt = runtime_of(self.environment)
        root = str(self.environment.parsed_options.topic_root)
        self.ident = _identity(self.rt, "appserveruser", root)
        if self.ident.client is None:
            with self.rt.timed("HTTP", "admin:account"):
                self.rt.api.put_account(self.ident.client_id, _SECRET, self.ident.resources)

    @task
    def apply(self) -> None:
        with self.rt.timed("HTTP", "token:apply"):
            _ask(self.rt, self.ident)


def _ask(rt: Runtime, ident: _Identity) -> dict[str, Any]:
    """One token ask: through the adapter (any AppServer), or ``POST /v1/tokens``."""
    if ident.client is not None:
        return rt.adapter_api.ask(ident.client)
    return rt.api.ask_token(ident.client_id, _SECRET, ident.resources)
