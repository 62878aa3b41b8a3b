"""One MQTT 3.1.1 connection, on gmqtt: the only module of the SDK that speaks MQTT.

Why gmqtt (measured with ``bench/sdk_clientlib.py --clients 5000``, one process, stock
amqtt on loopback): it is a plain asyncio ``Protocol`` -- no thread per connect and no
per-client timer -- so 5,000 idle connections cost ~0.03 % CPU, against ~6.4 % for
aiomqtt, whose paho core needs a 1 Hz ``loop_misc`` task per client and connects
through the default thread pool (1.6x fewer connects/s in the same run).

What we need of it and how we get it:
* username/password, clean session, keep-alive, will: constructor and ``connect``;
* QoS 1 publish that *waits for the PUBACK*: gmqtt keeps in-flight QoS 1 packets in a
  pluggable ``persistent_storage`` and removes them on PUBACK -- ``AckStorage``
  resolves a future there;
* SUBSCRIBE answered by SUBACK: ``on_subscribe`` with the packet id;
* every PUBLISH the broker sends, ``$SYS/*`` included, reaches ``on_message`` whether
  subscribed or not;
* CONNACK refusals: ``MQTTConnectError`` carries the return code (4/5 → not
  authorized); a socket error or a close before CONNACK is a network error;
* reconnects are ours (backoff with full jitter, a fresh token): gmqtt's own
  auto-reconnect is switched off.

Every private gmqtt name used for this lives in :mod:`.gmqtt_private`, checked when it
is imported.  :class:`MqttConnection` and :class:`ConnectionFactory` are what the client
shell needs of a connection: ``ClientConfig.transport`` takes any such factory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import gmqtt

from .errors import ConnackRefused, NetworkError, NotAuthorized, NotConnected
from .gmqtt_private import AckStorage, SdkClient, close_socket, connack_code, connack_seen

__all__ = [
    "BrokerAddress",
    "Connection",
    "ConnectionFactory",
    "IncomingMessage",
    "MqttConnection",
    "Will",
    "parse_broker_url",
]

MQTT_3_1_1 = gmqtt.constants.MQTTv311
_gmqtt_log = logging.getLogger("sim.customer.client.gmqtt")


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host:port`` or ``tcp://host:port`` or ``host:port``."""
    text = url if "://" in url else f"mqtt://{url}"
    parts = urlsplit(text)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"broker URL must be mqtt://host:port, got {url!r}")
    try:
        port = parts.port or 1883
    except ValueError:
        raise ValueError(f"broker URL has an invalid port: {url!r}") from None
    return BrokerAddress(parts.hostname, port)


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes = b""
    qos: int = 0
    retain: bool = False


@dataclass(frozen=True)
class IncomingMessage:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class MqttConnection(Protocol):
    """One MQTT session attempt, as :class:`~sim.customer.client.TokenClient` uses it.

    :class:`Connection` (gmqtt) is the SDK's; a test or another library can bring its own
    through ``ClientConfig.transport`` (a :class:`ConnectionFactory`).
    """

    @property
    def lost(self) -> asyncio.Future[str]:
        """Resolves, with the reason, once the session has ended (whoever ended it)."""
        ...

    @property
    def is_open(self) -> bool: ...

    async def open(
        self,
        address: BrokerAddress,
        *,
        username: str | None,
        password: str | None,
        keepalive: int,
        connect_timeout: float,
    ) -> bool:
        """CONNECT; return CONNACK's session-present flag.  Raises :class:`NotAuthorized`
        (CONNACK 4/5), :class:`ConnackRefused` or :class:`NetworkError`."""
        ...

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool, ack_timeout: float
    ) -> None:
        """PUBLISH; QoS 1 returns once the PUBACK arrived.  Raises :class:`NotConnected`."""
        ...

    async def subscribe(self, topic: str, qos: int, *, ack_timeout: float) -> int:
        """SUBSCRIBE one filter; return the granted QoS (0x80 refused)."""
        ...

    async def close(self) -> None:
        """DISCONNECT cleanly (no will) and close the socket."""
        ...


class ConnectionFactory(Protocol):
    """Makes one :class:`MqttConnection` per session attempt (``ClientConfig.transport``)."""

    def __call__(
        self,
        client_id: str,
        *,
        on_message: Callable[[IncomingMessage], object],
        clean_session: bool,
        will: Will | None,
    ) -> MqttConnection: ...


class Connection:
    """One MQTT session attempt.  Create, :meth:`open`, use, :meth:`close`; when the
    broker or the network ends it, :attr:`lost` resolves (with the reason)."""

    def __init__(
        self,
        client_id: str,
        *,
        on_message: Callable[[IncomingMessage], object],
        clean_session: bool = True,
        will: Will | None = None,
    ) -> None:
        self.client_id = client_id
        self._on_message = on_message
        self._storage = AckStorage()
        will_msg = None
        if will is not None:
            will_msg = gmqtt.Message(will.topic, will.payload, qos=will.qos, retain=will.retain)
        self._client = SdkClient(
            client_id,
            clean_session=clean_session,
            will_message=will_msg,
            persistent_storage=self._storage,
            logger=_gmqtt_log,
        )
        self._client.on_message = self._handle_message
        self._client.on_disconnect = self._handle_disconnect
        self._client.on_subscribe = self._handle_suback
        self._suback: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.session_present = False
        self._open = False
        self._opening: asyncio.Task[Any] | None = None
        self._lost_before_connack = False

    @property
    def is_open(self) -> bool:
        return self._open and not self.lost.done()

    async def open(
        self,
        address: BrokerAddress,
        *,
        username: str | None,
        password: str | None,
        keepalive: int = 60,
        connect_timeout: float = 10.0,
    ) -> bool:
        """Connect; return CONNACK's session-present flag.

        Raises :class:`NotAuthorized` (CONNACK 4/5), :class:`ConnackRefused` (1-3) or
        :class:`NetworkError` (refused, reset, timeout, closed before CONNACK).
        """
        if username is not None:
            self._client.set_auth_credentials(username, password)
        self._client.on_connect = self._handle_connect
        # No extra task: if the socket closes before the CONNACK, _handle_disconnect
        # cancels this very task (gmqtt would otherwise wait for the CONNACK forever).
        self._opening = asyncio.current_task()
        try:
            async with asyncio.timeout(connect_timeout):
                await self._client.connect(
                    address.host, address.port, keepalive=keepalive, version=MQTT_3_1_1
                )
        except gmqtt.MQTTConnectError as exc:
            await self._abort()
            code = connack_code(exc)
            if code in (4, 5):
                raise NotAuthorized(f"CONNACK {code}: not authorized", return_code=code) from None
            raise ConnackRefused(f"CONNACK {code}", return_code=code) from None
        except TimeoutError:  # before OSError: TimeoutError is one
            await self._abort()
            raise NetworkError(f"no CONNACK within {connect_timeout:g} s") from None
        except OSError as exc:
            await self._abort()
            raise NetworkError(f"{type(exc).__name__}: {exc}") from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not self._lost_before_connack or task is None:
                await self._abort()
                raise
            task.uncancel()
            await self._abort()
            raise NetworkError(f"connection closed before CONNACK ({self.lost.result()})") from None
        finally:
            self._opening = None
        if self.lost.done():  # closed right after the CONNACK
            raise NetworkError(f"connection closed ({self.lost.result()})")
        self._open = True
        return self.session_present

    def _handle_connect(self, client: Any, flags: int, rc: int, properties: Any) -> None:
        self.session_present = bool(flags)

    def _handle_message(
        self, client: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]
    ) -> int:
        retain = bool(properties.get("retain", 0))
        self._on_message(IncomingMessage(topic, bytes(payload), qos, retain))
        return 0

    def _handle_suback(self, client: Any, mid: int, granted: tuple[int, ...], props: Any) -> None:
        fut = self._suback.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(tuple(granted))

    def _handle_disconnect(self, client: Any, packet: Any, exc: Any = None) -> None:
        self._mark_lost("disconnected")
        # Closed before any CONNACK: wake open(). After a CONNACK (accepted or refused)
        # gmqtt's connect() returns or raises by itself -- a refusal must stay a refusal.
        opening = self._opening
        if opening is not None and not opening.done() and not connack_seen(self._client):
            self._lost_before_connack = True
            opening.cancel()

    def _mark_lost(self, reason: str) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)
        if not self._storage.waiters and not self._suback:
            return  # nothing in flight (the common case: a storm's 2,000 losses)
        err = NotConnected(f"connection lost ({reason})")
        self._storage.fail_all(err)
        for fut in self._suback.values():
            if not fut.done():
                fut.set_exception(err)
                fut.exception()
        self._suback.clear()

    async def _wait(self, fut: asyncio.Future[Any], limit: float) -> Any:
        done, _ = await asyncio.wait(
            {fut, self.lost}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
        )
        if fut in done:
            return fut.result()
        if self.lost in done:
            raise NotConnected(f"connection lost ({self.lost.result()})")
        raise NotConnected(f"no acknowledgement within {limit:g} s")

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 0,
        retain: bool = False,
        ack_timeout: float = 10,
    ) -> None:
        """Send a PUBLISH; for QoS 1 return only once the broker's PUBACK arrived."""
        if not self.is_open:
            raise NotConnected("not connected")
        if qos not in (0, 1):
            raise ValueError("the SDK publishes with QoS 0 or 1")
        self._storage.last = None
        self._client.publish(gmqtt.Message(topic, payload, qos=qos, retain=retain))
        if qos == 1:
            ack = self._storage.last
            if ack is None:  # pragma: no cover - gmqtt always stores QoS 1 packets
                raise RuntimeError("gmqtt did not keep the QoS 1 packet")
            await self._wait(ack, ack_timeout)

    async def subscribe(self, topic: str, qos: int = 1, *, ack_timeout: float = 10) -> int:
        """SUBSCRIBE one filter; return the granted QoS (0x80 = refused)."""
        if not self.is_open:
            raise NotConnected("not connected")
        mid = self._client.subscribe(gmqtt.Subscription(topic, qos=qos))
        fut: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
        self._suback[mid] = fut
        granted = await self._wait(fut, ack_timeout)
        return int(granted[0]) if granted else 0x80

    async def close(self) -> None:
        """DISCONNECT cleanly (no will) and close the socket."""
        if self._open and not self.lost.done():
            with contextlib.suppress(Exception):
                await self._client.disconnect()
        self._mark_lost("closed by client")
        self._open = False

    async def _abort(self) -> None:
        self._opening = None  # closing our own socket must not cancel open() again
        with contextlib.suppress(Exception):
            await close_socket(self._client)
        self._mark_lost("connect failed")
