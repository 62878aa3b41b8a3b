"""One MQTT 3.1.1 session for a Locust user: paho's external-loop API on gevent.

Why this shape (docs/load.md, "The MQTT client"):

* paho-mqtt stays the protocol implementation (a well-kept library; no hand-written
  packet code).  It is driven through its documented external-event-loop API
  (``loop_read`` / ``loop_write`` / ``loop_misc`` and the ``on_socket_*`` callbacks),
  never through ``loop()``: ``loop()`` waits with ``select()``, which under gevent first
  calls the real ``select()`` and fails for any descriptor at or above 1,024 -- the
  ceiling a Locust worker hit at ~250 users.  Without ``loop()`` / ``loop_start()`` paho
  opens no wake-up socket pair either: **one descriptor per session**, the MQTT socket.
* Each open socket gets **one service greenlet** (no thread) that waits on a gevent io
  watcher (epoll: no descriptor ceiling), reads what arrives (CONNACK, SUBACK, PUBACK,
  incoming PUBLISH, which paho PUBACKs), flushes pending writes and runs ``loop_misc``
  (keep-alive PINGREQ, PINGRESP deadline) at least every quarter keep-alive.  A
  connection is therefore serviced between a user's tasks, not only inside them.
* The user's greenlet calls :meth:`MqttSession.open`, :meth:`~MqttSession.subscribe`,
  :meth:`~MqttSession.publish_qos1` and blocks on a gevent event that the service
  greenlet sets: every wait is inside the caller's measured block.

Errors (one tree): :class:`MqttError` > :class:`Refused` (the broker answered no:
CONNACK, SUBACK refusal -- the system under test spoke), :class:`ConnectionLost`
(the connection went away while waiting), :class:`NoAnswer` (nothing within the
timeout).  Socket errors from opening the connection (``ECONNREFUSED``, ``EMFILE``)
pass through as :class:`OSError` so that :mod:`scenarios.load.health` can tell the
generator's own limits (``EMFILE``) from the broker's.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

import gevent
import gevent.socket
from gevent.event import AsyncResult
from gevent.hub import get_hub
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

__all__ = [
    "ConnectionLost",
    "MqttError",
    "MqttSession",
    "NoAnswer",
    "Refused",
]

_READ = 1  # libev/libuv EV_READ


class MqttError(Exception):
    """Base of the MQTT session's errors."""


class Refused(MqttError):
    """The broker answered with a refusal (CONNACK return code, SUBACK 0x80)."""


class ConnectionLost(MqttError, ConnectionError):
    """The connection went away while an answer was awaited."""


class NoAnswer(MqttError, TimeoutError):
    """No answer within the timeout (the connection is still open)."""


class _Closing(Exception):
    """Thrown into the service greenlet when another greenlet closes the socket."""


Message = Callable[[str, bytes], None]


class MqttSession:
    """One client id, at most one socket at a time, one service greenlet per socket.

    ``on_message(topic, payload)`` runs in the service greenlet for every PUBLISH the
    broker delivers (``$SYS`` notices included); it must not block.  ``on_lost(reason)``
    runs when the broker or the network ended a session that was not closed by us.
    """

    def __init__(
        self,
        client_id: str,
        *,
        keepalive: int = 60,
        on_message: Message | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.client_id = client_id
        self.keepalive = int(keepalive)
        self._on_message_cb = on_message
        self._on_lost_cb = on_lost
        c = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        # The connection timeout of paho's socket.create_connection (seconds).
        c.connect_timeout = 10.0
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        # No on_socket_register_write: paho then writes inline from the caller's greenlet
        # (non-blocking); whatever a full send buffer leaves is flushed by _flush().
        self._client = c
        self._pending: dict[tuple[str, int], AsyncResult] = {}
        self._service: gevent.Greenlet | None = None
        self._watcher: Any = None
        self._closing_by_us = False
        self.connected = False
        self.received = 0
        self.last_loss: str | None = None

    # ------------------------------------------------------------------ public face
    def open(self, host: str, port: int, username: str, password: str, timeout: float) -> None:
        """TCP open, CONNECT, wait for CONNACK.  Raises on anything but acceptance."""
        self.close()
        self._closing_by_us = False
        self.last_loss = None
        c = self._client
        c.username_pw_set(username, password)
        waiter = self._expect("connack", 0)
        try:
            # socket.create_connection (gevent: cooperative) + CONNECT written inline.
            rc = c.connect(host, port, keepalive=self.keepalive)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise ConnectionLost(f"CONNECT not sent ({paho.error_string(rc)})")
            self._flush()
            self._wait(waiter, timeout, "CONNACK")
        except BaseException:
            self._pending.pop(("connack", 0), None)
            self.close()
            raise

    def subscribe(self, topic: str, timeout: float, qos: int = 1) -> None:
        rc, mid = self._client.subscribe(topic, qos=qos)
        self._check_sent(rc, "SUBSCRIBE")
        waiter = self._expect("suback", mid or 0)
        self._flush()
        self._wait(waiter, timeout, "SUBACK")

    def publish_qos1(self, topic: str, payload: bytes, timeout: float) -> None:
        """PUBLISH QoS 1 and wait for its PUBACK."""
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._check_sent(info.rc, "PUBLISH")
        # paho wrote the PUBLISH inline without yielding to another greenlet: its
        # PUBACK cannot have been read yet (the flush below may yield).
        waiter = self._expect("puback", info.mid)
        self._flush()
        self._wait(waiter, timeout, "PUBACK")

    def close(self) -> None:
        """DISCONNECT and close the socket (paho does both inline); idempotent."""
        self._closing_by_us = True
        c = self._client
        if c.socket() is not None:
            c.disconnect()  # DISCONNECT written inline, then paho closes its socket
        sock = c.socket()
        if sock is not None:
            # The DISCONNECT could not be written (full send buffer): close anyway.
            self._on_socket_close(c, None, sock)
            sock.close()
            c.disconnect()  # paho now fails to write and drops its reference
        self.connected = False

    def drop(self) -> None:
        """Lose the connection as a network cut would: shut the socket down without an
        MQTT DISCONNECT.  The service greenlet then sees end-of-stream, as it would if
        the broker had dropped us, and the session is reported lost."""
        sock: Any = self._client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def open_sockets(self) -> int:
        return 0 if self._client.socket() is None else 1

    # ------------------------------------------------------------------ waiting
    def _expect(self, kind: str, mid: int) -> AsyncResult:
        result = AsyncResult()
        self._pending[(kind, mid)] = result
        return result

    def _wait(self, result: AsyncResult, timeout: float, what: str) -> Any:
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            raise NoAnswer(f"no {what} within {timeout:g} s") from None
        finally:
            for key, value in list(self._pending.items()):
                if value is result:
                    del self._pending[key]

    def _check_sent(self, rc: int, what: str) -> None:
        if rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
            raise ConnectionLost(f"{what}: not connected ({self.last_loss or 'closed'})")
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionLost(f"{what} not sent ({paho.error_string(rc)})")

    def _resolve(
        self, kind: str, mid: int, value: Any = None, error: Exception | None = None
    ) -> None:
        result = self._pending.pop((kind, mid), None)
        if result is None:
            return
        if error is None:
            result.set(value)
        else:
            result.set_exception(error)

    def _fail_all(self, error: Exception) -> None:
        pending, self._pending = self._pending, {}
        for result in pending.values():
            result.set_exception(error)

    # ------------------------------------------------------------------ paho callbacks
    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._resolve("connack", 0, error=Refused(f"CONNACK refused: {reason}"))
            return
        self.connected = True
        self._resolve("connack", 0, reason)

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        if any(getattr(code, "is_failure", False) for code in codes):
            self._resolve("suback", mid, error=Refused(f"SUBACK refused: {codes}"))
        else:
            self._resolve("suback", mid, codes)

    def _on_publish(self, _c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
        self._resolve("puback", mid, True)

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        self.received += 1
        if self._on_message_cb is not None:
            self._on_message_cb(message.topic, message.payload)

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        was_connected, self.connected = self.connected, False
        if self._closing_by_us:
            self._fail_all(ConnectionLost("closed by the user"))
            return
        self.last_loss = f"connection lost ({reason})"
        self._fail_all(ConnectionLost(self.last_loss))
        if was_connected and self._on_lost_cb is not None:
            self._on_lost_cb(self.last_loss)

    def _on_socket_open(self, _c: Any, _u: Any, sock: Any) -> None:
        # One service greenlet per socket; it ends when paho's socket is another one.
        self._service = gevent.spawn(self._serve, sock)

    def _on_socket_close(self, _c: Any, _u: Any, sock: Any) -> None:
        service, watcher = self._service, self._watcher
        if service is None or service is gevent.getcurrent():
            return
        self._service = None
        if watcher is not None and service.dead is False:
            # The socket is being closed by the user's greenlet: wake the service
            # greenlet out of its wait (gevent's documented way for an io watcher).
            gevent.socket.cancel_wait(watcher, _Closing())
        elif not service.dead:
            service.kill(block=False)

    # ------------------------------------------------------------------ service loop
    def _flush(self) -> None:
        """Write what paho could not write inline (full send buffer): rare on loopback."""
        c = self._client
        while c.want_write():
            sock = c.socket()
            if sock is None:
                return
            gevent.socket.wait_write(sock.fileno(), timeout=10.0)
            if c.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return

    def _serve(self, sock: Any) -> None:
        c = self._client
        tick = max(0.25, self.keepalive / 4.0)
        watcher = get_hub().loop.io(sock.fileno(), _READ)
        self._watcher = watcher
        try:
            while c.socket() is sock:
                try:
                    gevent.socket.wait(watcher, timeout=tick)
                except TimeoutError:
                    pass  # nothing to read: only the keep-alive below
                except (_Closing, OSError):
                    return
                else:
                    if c.socket() is not sock:
                        return  # closed (and maybe reopened) by the user meanwhile
                    if c.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                        # paho has closed the socket (lost, refused) and said so
                        # through on_disconnect; make sure, then end.
                        if c.socket() is sock:
                            c.disconnect()
                        return
                if c.socket() is not sock:
                    return
                if c.want_write():
                    self._flush()
                # keep-alive: PINGREQ when due, drop the session when PINGRESP is late
                c.loop_misc()
        finally:
            if self._watcher is watcher:
                self._watcher = None
            watcher.close()
