"""The guard over gmqtt's private names: it holds for the pinned gmqtt, and names each one
an upgrade would break (sim/customer/client/gmqtt_private.py)."""

from __future__ import annotations

import importlib.metadata
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gmqtt
import pytest
from gmqtt.mqtt.connection import MQTTConnection
from gmqtt.storage import PersistentStorage

from sim.customer.client import gmqtt_private
from sim.customer.client.errors import UnsupportedGmqtt

ROOT = Path(__file__).resolve().parents[2]


def _drop_instance_attr(path: str) -> Callable[[pytest.MonkeyPatch], None]:
    """gmqtt.Client instances built without ``path`` (``a`` or ``a.b``)."""

    def breaker(monkeypatch: pytest.MonkeyPatch) -> None:
        original = gmqtt.Client.__init__

        def init(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            *owners, last = path.split(".")
            target = self
            for name in owners:
                target = getattr(target, name)
            delattr(target, last)

        monkeypatch.setattr(gmqtt.Client, "__init__", init)

    return breaker


def _replace(owner: Any, name: str, value: Any) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda mp: mp.setattr(owner, name, value)


def _no_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gmqtt.MQTTConnectError, "__init__", lambda self, code: None)


def _storage_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    original = gmqtt.Client.__init__

    def init(self: Any, *args: Any, persistent_storage: Any = None, **kwargs: Any) -> None:
        original(self, *args, **kwargs)  # a gmqtt that ignores the storage handed in

    monkeypatch.setattr(gmqtt.Client, "__init__", init)


async def _close(self: Any) -> None:
    return None


# one way an upgrade could break each assumption the guard lists
BREAKERS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "Client._package_handler._reconnect_callback": _drop_instance_attr(
        "_package_handler._reconnect_callback"
    ),
    "Client.reconnect(delay)": _replace(gmqtt.Client, "reconnect", _close),
    "Client._wait_qos_queue_drained()": lambda mp: mp.delattr(
        gmqtt.Client, "_wait_qos_queue_drained"
    ),
    "Client._persistent_storage": _storage_dropped,
    "PersistentStorage.is_empty": _replace(PersistentStorage, "is_empty", lambda self: True),
    "PersistentStorage.push_message(mid, raw_package)": _replace(
        PersistentStorage, "push_message", lambda self, mid, package, extra: None
    ),
    "PersistentStorage.remove_message_by_mid(mid)": _replace(
        PersistentStorage, "remove_message_by_mid", lambda self, message_id: None
    ),
    "Client._connack_received": _drop_instance_attr("_connack_received"),
    "Client._connection": _replace(MQTTConnection, "close", lambda self: None),
    "MQTTConnectError._code": _no_code,
}


def test_the_installed_gmqtt_meets_every_assumption() -> None:
    gmqtt_private.check()  # also ran when the conftest imported it


def test_every_assumption_has_a_way_to_break_it() -> None:
    assert set(BREAKERS) == {name for name, _ in gmqtt_private.ASSUMPTIONS}


@pytest.mark.parametrize("name", sorted(BREAKERS))
def test_the_guard_names_what_changed(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    BREAKERS[name](monkeypatch)
    with pytest.raises(UnsupportedGmqtt) as info:
        gmqtt_private.check()
    assert name in str(info.value)
    others = [n for n, _ in gmqtt_private.ASSUMPTIONS if n != name and n in str(info.value)]
    assert others == [], f"breaking {name} also broke {others}"
    assert isinstance(info.value, ImportError)  # an import of the SDK fails with it


def test_gmqtt_is_pinned_to_the_checked_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [d for d in project["dependencies"] if d.startswith("gmqtt")]
    assert pins == [f"gmqtt=={importlib.metadata.version('gmqtt')}"]
