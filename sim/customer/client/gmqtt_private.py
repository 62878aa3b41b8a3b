"""Every private gmqtt name the SDK relies on, in one place, checked when imported.

gmqtt (pinned exactly in ``pyproject.toml``) offers no public way to do what the
transport needs for a fleet of thousands in one process (docs/sdk.md, "The MQTT
library"), so this module reaches into it -- and nowhere else does:

* no auto-reconnect, and no Task per lost connection: gmqtt wraps what
  ``Client._package_handler._reconnect_callback(delay=True)`` returns in ``ensure_future``
  at every loss; :class:`SdkClient` hands it an already-resolved future and overrides
  ``Client.reconnect(delay)`` as well;
* no two drain tasks per connect when no QoS packet is in flight: :class:`SdkClient`
  overrides ``Client._wait_qos_queue_drained()`` and reads ``Client._persistent_storage``;
* QoS 1 acknowledgements: the in-flight store's ``push_message(mid, raw_package)`` and
  ``remove_message_by_mid(mid)`` (called on publish and on PUBACK), subclassed by
  :class:`AckStorage`;
* a close before the CONNACK told from one after it: ``Client._connack_received``
  (:func:`connack_seen`); the socket of a failed attempt: ``Client._connection``
  (:func:`close_socket`); a CONNACK refusal's return code: ``MQTTConnectError._code``
  (:func:`connack_code`).

:func:`check` verifies each of these (the name, and the signature we call or override)
and runs when this module is imported: a gmqtt upgrade that changed one fails the
import of the SDK, and the collection of ``tests/client``, with a message naming it,
instead of an ``AttributeError`` inside a connection.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import gmqtt
from gmqtt.mqtt.connection import MQTTConnection
from gmqtt.storage import PersistentStorage

from .errors import UnsupportedGmqtt

__all__ = [
    "ASSUMPTIONS",
    "AckStorage",
    "SdkClient",
    "check",
    "close_socket",
    "connack_code",
    "connack_seen",
]


class AckStorage(PersistentStorage):  # type: ignore[misc]
    """gmqtt's in-flight store, plus a future per packet id resolved on PUBACK."""

    def __init__(self) -> None:
        super().__init__()
        self.waiters: dict[int, asyncio.Future[None]] = {}
        self.last: asyncio.Future[None] | None = None

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        fut = asyncio.get_running_loop().create_future()
        self.waiters[mid] = fut
        self.last = fut

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        fut = self.waiters.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def fail_all(self, exc: BaseException) -> None:
        for fut in self.waiters.values():
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: no "never retrieved" warning if nobody waits
        self.waiters.clear()


def _no_reconnect(delay: bool = False) -> asyncio.Future[None]:
    """gmqtt's reconnect callback, as an already-resolved future: a coroutine there
    would cost a Task per lost connection (a mass kick: 2,000 tasks) only to do nothing."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


class SdkClient(gmqtt.Client):  # type: ignore[misc]
    """gmqtt's client that never reconnects on its own (the SDK decides when, and with
    which token) and spawns no drain tasks when nothing is in flight."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._package_handler._reconnect_callback = _no_reconnect

    async def reconnect(self, delay: bool = False) -> None:
        return None

    async def _wait_qos_queue_drained(self) -> None:
        # gmqtt spawns two tasks per connect to wait for replayed QoS packets; a fresh
        # client has none in flight (we never resume gmqtt's own queue): skip them.
        if self._persistent_storage.is_empty:
            return
        await super()._wait_qos_queue_drained()


def connack_seen(client: gmqtt.Client) -> bool:
    """Whether this attempt got a CONNACK (accepted or refused)."""
    return bool(client._connack_received.is_set())


async def close_socket(client: gmqtt.Client) -> None:
    """Close the socket of a failed attempt (gmqtt keeps it after a refusal)."""
    conn = client._connection
    if conn is not None:
        await conn.close()


def connack_code(exc: gmqtt.MQTTConnectError) -> int:
    """The CONNACK return code of a refusal."""
    return int(exc._code)


# ---------------------------------------------------------------------------- the guard


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def _probe(**kwargs: Any) -> Any:
    """A gmqtt client as gmqtt builds it: no socket, no running loop needed."""
    return gmqtt.Client("gmqtt-guard-probe", **kwargs)


def _storage_is_kept() -> bool:
    storage = PersistentStorage()
    return _probe(persistent_storage=storage)._persistent_storage is storage


#: (the private name, a check that it is there and has the shape we use)
ASSUMPTIONS: tuple[tuple[str, Callable[[], bool]], ...] = (
    (
        "Client._package_handler._reconnect_callback",
        lambda: callable(_probe()._package_handler._reconnect_callback),
    ),
    ("Client.reconnect(delay)", lambda: _params(gmqtt.Client.reconnect) == ["self", "delay"]),
    (
        "Client._wait_qos_queue_drained()",
        lambda: (
            inspect.iscoroutinefunction(gmqtt.Client._wait_qos_queue_drained)
            and _params(gmqtt.Client._wait_qos_queue_drained) == ["self"]
        ),
    ),
    ("Client._persistent_storage", _storage_is_kept),
    ("PersistentStorage.is_empty", lambda: isinstance(PersistentStorage.is_empty, property)),
    (
        "PersistentStorage.push_message(mid, raw_package)",
        lambda: _params(PersistentStorage.push_message) == ["self", "mid", "raw_package"],
    ),
    (
        "PersistentStorage.remove_message_by_mid(mid)",
        lambda: _params(PersistentStorage.remove_message_by_mid) == ["self", "mid"],
    ),
    (
        "Client._connack_received",
        lambda: isinstance(_probe()._connack_received, asyncio.Event),
    ),
    (
        "Client._connection",
        lambda: _probe()._connection is None and inspect.iscoroutinefunction(MQTTConnection.close),
    ),
    ("MQTTConnectError._code", lambda: gmqtt.MQTTConnectError(5)._code == 5),
)


def check() -> None:
    """Raise :class:`UnsupportedGmqtt` naming every assumption the installed gmqtt breaks."""
    broken = []
    for name, holds in ASSUMPTIONS:
        try:
            ok = holds()
        except Exception:  # a missing attribute, a changed constructor: broken either way
            ok = False
        if not ok:
            broken.append(name)
    if broken:
        version = getattr(gmqtt, "__version__", "?")
        raise UnsupportedGmqtt(
            f"gmqtt {version} changed what the SDK's transport relies on: "
            f"{', '.join(broken)} (sim/customer/client/gmqtt_private.py; pyproject pins gmqtt)"
        )


check()
