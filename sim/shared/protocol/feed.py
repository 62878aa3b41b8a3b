"""What the AuthServer tells brokers: the bootstrap and the feed (CONTRACTS.md, "Admin
endpoints"; SPEC §3c).

``GET /admin/broker/bootstrap`` answers a :class:`Bootstrap` (keys, current key,
accounts, revoked tokens, feed position, each instance's parent topics); ``GET
/admin/feed`` a :class:`FeedPage` of :data:`FeedEvent` s (``revoke``, ``account``,
``parent_topics``) or a ``reset``.  The AuthServer builds these
documents and a broker reads them: besides tokens they are all the two share.

``from_json`` checks every field it knows and raises
:class:`~sim.shared.protocol.errors.FeedDocumentError` naming the wrong one; keys it does
not know are ignored, and an event of a kind it does not know is an :class:`OtherEvent`
(a newer AuthServer may say more than a broker needs).  ``to_json`` writes the wire
format of CONTRACTS.md.  Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import FeedDocumentError

__all__ = [
    "AccountEvent",
    "AccountRecord",
    "Bootstrap",
    "FeedEvent",
    "FeedPage",
    "OtherEvent",
    "ParentTopicsEvent",
    "Revocation",
    "RevokeEvent",
    "event_from_json",
]

_MAX_KID_BYTES = 255  # the token codec's limit on a key id


class _Fields:
    """Typed reads of one JSON object; every error names ``where`` and the key."""

    __slots__ = ("doc", "where")

    def __init__(self, doc: object, where: str) -> None:
        if not isinstance(doc, Mapping):
            raise FeedDocumentError(f"{where} must be a JSON object")
        self.doc: Mapping[str, object] = doc
        self.where = where

    def value(self, key: str) -> object:
        if key not in self.doc:
            raise FeedDocumentError(f"{self.where}.{key} is missing")
        return self.doc[key]

    def text(self, key: str, *, empty: bool = False) -> str:
        value = self.value(key)
        if not isinstance(value, str) or (not empty and not value):
            kind = "a string" if empty else "a non-empty string"
            raise FeedDocumentError(f"{self.where}.{key} must be {kind}")
        return value

    def integer(self, key: str, *, minimum: int = 0) -> int:
        value = self.value(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise FeedDocumentError(f"{self.where}.{key} must be an integer >= {minimum}")
        return value

    def flag(self, key: str, default: bool | None = None) -> bool:
        if default is not None and key not in self.doc:
            return default
        value = self.value(key)
        if not isinstance(value, bool):
            raise FeedDocumentError(f"{self.where}.{key} must be true or false")
        return value

    def array(self, key: str) -> list[object]:
        value = self.value(key)
        if not isinstance(value, list):
            raise FeedDocumentError(f"{self.where}.{key} must be a list")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.value(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise FeedDocumentError(f"{self.where}.{key} must be a list of strings")
        return tuple(value)


# -- the parts --------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountRecord:
    """An account as the AuthServer publishes it: secret, owned instances, enabled."""

    access_key_id: str
    secret: str = field(repr=False)
    instances: tuple[str, ...]
    enabled: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "access_key_id": self.access_key_id,
            "secret": self.secret,
            "instances": list(self.instances),
            "enabled": self.enabled,
        }

    @classmethod
    def read(cls, fields: _Fields) -> AccountRecord:
        return cls(
            fields.text("access_key_id"),
            fields.text("secret", empty=True),  # a deleted account's secret is ""
            fields.strings("instances"),
            fields.flag("enabled"),
        )


@dataclass(frozen=True)
class Revocation:
    """A revoked token, remembered until its expiry."""

    token_id: str
    expire_ms: int

    def to_json(self) -> dict[str, Any]:
        return {"token_id": self.token_id, "expire_ms": self.expire_ms}


@dataclass(frozen=True)
class Bootstrap:
    """``GET /admin/broker/bootstrap``: all a broker needs to verify tokens offline."""

    keys: Mapping[str, bytes] = field(repr=False)
    current_key: str
    accounts: tuple[AccountRecord, ...] = ()
    revoked: tuple[Revocation, ...] = ()
    seq: int = 0
    """The feed position this document reflects: follow the feed from here."""
    parent_topics: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Each instance's parent topics (SPEC §4a); an instance not listed has none.  Absent
    from the document of an AuthServer that predates them: then none are known."""

    def to_json(self) -> dict[str, Any]:
        return {
            "keys": {kid: base64.b64encode(k).decode("ascii") for kid, k in self.keys.items()},
            "current_key": self.current_key,
            "accounts": [a.to_json() for a in self.accounts],
            "revoked": [r.to_json() for r in self.revoked],
            "seq": self.seq,
            "parent_topics": {i: list(names) for i, names in self.parent_topics.items()},
        }

    @classmethod
    def from_json(cls, doc: object) -> Bootstrap:
        fields = _Fields(doc, "bootstrap")
        keys = _keys(fields)
        current = fields.text("current_key")
        if current not in keys:
            raise FeedDocumentError("bootstrap.current_key is not one of bootstrap.keys")
        accounts: list[AccountRecord] = []
        seen: set[str] = set()
        for index, item in enumerate(fields.array("accounts")):
            account = AccountRecord.read(_Fields(item, f"bootstrap.accounts[{index}]"))
            if account.access_key_id in seen:
                raise FeedDocumentError(f"bootstrap.accounts[{index}] repeats an access key id")
            seen.add(account.access_key_id)
            accounts.append(account)
        revoked: list[Revocation] = []
        seen.clear()
        for index, item in enumerate(fields.array("revoked")):
            entry = _Fields(item, f"bootstrap.revoked[{index}]")
            revocation = Revocation(entry.text("token_id"), entry.integer("expire_ms"))
            if revocation.token_id in seen:
                raise FeedDocumentError(f"bootstrap.revoked[{index}] repeats a token id")
            seen.add(revocation.token_id)
            revoked.append(revocation)
        parents: dict[str, tuple[str, ...]] = {}
        if "parent_topics" in fields.doc:
            raw = fields.value("parent_topics")
            if not isinstance(raw, Mapping):
                raise FeedDocumentError("bootstrap.parent_topics must be an object")
            for instance_id in raw:
                where = f"bootstrap.parent_topics[{str(instance_id)[:40]!r}]"
                parents[instance_id] = _names(raw, instance_id, where)
        return cls(keys, current, tuple(accounts), tuple(revoked), fields.integer("seq"), parents)


def _names(doc: Mapping[str, object], key: str, where: str) -> tuple[str, ...]:
    """A list of non-empty strings (parent topic names)."""
    value = doc[key]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise FeedDocumentError(f"{where} must be a list of non-empty strings")
    return tuple(value)


def _keys(fields: _Fields) -> dict[str, bytes]:
    raw = fields.value("keys")
    if not isinstance(raw, Mapping) or not raw:
        raise FeedDocumentError("bootstrap.keys must be a non-empty object")
    keys: dict[str, bytes] = {}
    for kid, text in raw.items():
        if not _is_key_id(kid):
            raise FeedDocumentError(f"bootstrap.keys: a key id is 1 to {_MAX_KID_BYTES} bytes")
        where = f"bootstrap.keys[{kid[:40]!r}]"
        if not isinstance(text, str):
            raise FeedDocumentError(f"{where} must be a base64 string")
        try:
            key = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise FeedDocumentError(f"{where} is not base64") from None
        if not key:
            raise FeedDocumentError(f"{where} is empty")
        keys[kid] = key
    return keys


def _is_key_id(kid: object) -> bool:
    if not isinstance(kid, str):
        return False
    try:
        return 0 < len(kid.encode("utf-8")) <= _MAX_KID_BYTES
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        return False


# -- the feed ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RevokeEvent:
    """A token was revoked: sessions holding it are disconnected (notice code 3)."""

    KIND: ClassVar[str] = "revoke"
    seq: int
    token_id: str
    access_key_id: str
    instance_id: str
    expire_ms: int

    @property
    def kind(self) -> str:
        return self.KIND

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.KIND,
            "token_id": self.token_id,
            "access_key_id": self.access_key_id,
            "instance_id": self.instance_id,
            "expire_ms": self.expire_ms,
        }


@dataclass(frozen=True)
class AccountEvent:
    """An account was created, changed or (``deleted``) removed."""

    KIND: ClassVar[str] = "account"
    seq: int
    account: AccountRecord
    deleted: bool = False

    @property
    def kind(self) -> str:
        return self.KIND

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"seq": self.seq, "kind": self.KIND, **self.account.to_json()}
        if self.deleted:
            doc["deleted"] = True
        return doc


@dataclass(frozen=True)
class ParentTopicsEvent:
    """An instance's parent topics changed (SPEC §4a): ``parent_topics`` is its whole set
    now (empty: none left)."""

    KIND: ClassVar[str] = "parent_topics"
    seq: int
    instance_id: str
    parent_topics: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return self.KIND

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.KIND,
            "instance_id": self.instance_id,
            "parent_topics": list(self.parent_topics),
        }


@dataclass(frozen=True)
class OtherEvent:
    """An event of a kind this version does not know: followers skip it."""

    seq: int
    kind: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind}


FeedEvent = RevokeEvent | AccountEvent | ParentTopicsEvent | OtherEvent


def event_from_json(doc: object, where: str = "event") -> FeedEvent:
    """One feed event (also as stored by the AuthServer)."""
    fields = _Fields(doc, where)
    seq = fields.integer("seq", minimum=1)
    kind = fields.text("kind")
    if kind == RevokeEvent.KIND:
        return RevokeEvent(
            seq,
            fields.text("token_id"),
            fields.text("access_key_id"),
            fields.text("instance_id"),
            fields.integer("expire_ms"),
        )
    if kind == AccountEvent.KIND:
        return AccountEvent(seq, AccountRecord.read(fields), fields.flag("deleted", False))
    if kind == ParentTopicsEvent.KIND:
        fields.value("parent_topics")  # present, or the error names it
        names = _names(fields.doc, "parent_topics", f"{where}.parent_topics")
        return ParentTopicsEvent(seq, fields.text("instance_id"), names)
    return OtherEvent(seq, kind)


@dataclass(frozen=True)
class FeedPage:
    """One answer of ``GET /admin/feed?after=N``: the events after ``N`` in order, or
    ``reset`` (``N`` is unknown to the AuthServer: re-read the bootstrap)."""

    seq: int
    events: tuple[FeedEvent, ...] = ()
    reset: bool = False

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"seq": self.seq, "events": [e.to_json() for e in self.events]}
        return {"reset": True, **doc} if self.reset else doc

    @classmethod
    def from_json(cls, doc: object) -> FeedPage:
        fields = _Fields(doc, "feed")
        seq = fields.integer("seq")
        events: list[FeedEvent] = []
        last = 0
        for index, item in enumerate(fields.array("events")):
            event = event_from_json(item, f"feed.events[{index}]")
            if event.seq <= last or event.seq > seq:
                raise FeedDocumentError(
                    f"feed.events[{index}].seq {event.seq} is out of order (page seq {seq})"
                )
            last = event.seq
            events.append(event)
        return cls(seq, tuple(events), fields.flag("reset", False))
