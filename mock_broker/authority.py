"""The broker's token authority: keys, accounts and the revoked set (SPEC §3c).

Fed by the AuthServer's bootstrap document and its feed events (CONTRACTS.md), or
directly by tests.  No I/O and no clock: ``apply_*`` return what changed, so the shell
can notify and disconnect the sessions concerned.  Every input is validated; a bad
document raises :class:`FeedError` and leaves the state as it was.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sim.shared.protocol import InvalidToken
from sim.shared.protocol.tokens import TokenClaims, TokenCodec

from .decision import AccountInfo
from .errors import FeedError, FeedReset

__all__ = ["VERIFIED_CACHE_SIZE", "Changes", "TokenAuthority"]

VERIFIED_CACHE_SIZE = 16_384


@dataclass(frozen=True)
class Changes:
    """What an update invalidated: revoked token ids, access keys no longer valid."""

    revoked: frozenset[str] = frozenset()
    accounts_invalid: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.revoked or self.accounts_invalid)


def _str(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value:
        raise FeedError(f"feed: {key!r} must be a non-empty string")
    return value


def _int(doc: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = doc.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FeedError(f"feed: {key!r} must be an integer")
    return value


def _account(doc: Any) -> AccountInfo:
    if not isinstance(doc, Mapping):
        raise FeedError("feed: an account must be an object")
    instances = doc.get("instances", [])
    if not isinstance(instances, list) or not all(isinstance(i, str) for i in instances):
        raise FeedError("feed: account 'instances' must be a list of strings")
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        raise FeedError("feed: account 'enabled' must be a boolean")
    secret = doc.get("secret", "")
    if not isinstance(secret, str):
        raise FeedError("feed: account 'secret' must be a string")
    return AccountInfo(_str(doc, "access_key_id"), secret, frozenset(instances), enabled)


def _keys(doc: Any) -> dict[str, bytes]:
    if not isinstance(doc, Mapping) or not doc:
        raise FeedError("feed: 'keys' must be a non-empty object")
    keys: dict[str, bytes] = {}
    for kid, b64 in doc.items():
        if not isinstance(kid, str) or not isinstance(b64, str):
            raise FeedError("feed: keys map key ids to base64 strings")
        try:
            keys[kid] = base64.b64decode(b64.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise FeedError(f"feed: key {kid[:40]!r} is not base64") from None
    return keys


class TokenAuthority:
    """Verifies tokens offline and knows what has been revoked."""

    def __init__(self) -> None:
        self._codec: TokenCodec | None = None
        self._keys: dict[str, bytes] = {}
        self._accounts: dict[str, AccountInfo] = {}
        self._revoked: dict[str, int] = {}  # token_id -> expire_ms (pruned after expiry)
        self.seq = 0
        self._listeners: list[Callable[[Changes], object]] = []
        # Verified tokens by their exact text: a reconnecting client presents the same
        # token again, and a reconnect storm should cost a dict lookup per CONNECT, not
        # a MAC and a JSON parse.  Only successes are kept; any key change empties it.
        self._verified: dict[str, TokenClaims] = {}
        # Bumped by every change of keys, accounts or revocations: a decision taken at
        # one generation still holds while the generation is unchanged (and no token
        # has expired meanwhile).
        self.generation = 0

    # -- the view decisions use -----------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._codec is not None

    def decode(self, token: str) -> TokenClaims:
        claims = self._verified.get(token)
        if claims is not None:
            return claims
        if self._codec is None:
            raise InvalidToken("no keys yet")
        claims = self._codec.decode(token)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()  # crude but O(1) amortised; refills on reconnects
        self._verified[token] = claims
        return claims

    def is_revoked(self, token_id: str) -> bool:
        return token_id in self._revoked

    def account(self, access_key_id: str) -> AccountInfo | None:
        return self._accounts.get(access_key_id)

    @property
    def revoked_count(self) -> int:
        return len(self._revoked)

    # -- listeners --------------------------------------------------------------------

    def on_change(self, listener: Callable[[Changes], object]) -> None:
        """Call ``listener(changes)`` after every update that invalidated something."""
        self._listeners.append(listener)

    def _notify(self, changes: Changes) -> Changes:
        if changes:
            for listener in list(self._listeners):
                listener(changes)
        return changes

    # -- direct updates (tests, in-process stacks) ----------------------------------------

    def set_keys(self, keys: Mapping[str, bytes], current: str) -> None:
        self._keys = dict(keys)
        self._codec = TokenCodec(self._keys, current)
        self._verified.clear()
        self.generation += 1

    def set_account(self, account: AccountInfo) -> Changes:
        old = self._accounts.get(account.access_key_id)
        self._accounts[account.access_key_id] = account
        self.generation += 1
        return self._notify(Changes(accounts_invalid=_lost(old, account)))

    def remove_account(self, access_key_id: str) -> Changes:
        old = self._accounts.pop(access_key_id, None)
        self.generation += 1
        lost = frozenset({access_key_id}) if old is not None else frozenset()
        return self._notify(Changes(accounts_invalid=lost))

    def revoke(self, token_id: str, expire_ms: int = 2**62) -> Changes:
        fresh = token_id not in self._revoked
        self._revoked[token_id] = expire_ms
        self.generation += 1
        return self._notify(Changes(revoked=frozenset({token_id}) if fresh else frozenset()))

    def prune(self, now_ms: int) -> int:
        """Forget revocations of tokens that have expired anyway; return how many."""
        dead = [t for t, exp in self._revoked.items() if exp <= now_ms]
        for token_id in dead:
            del self._revoked[token_id]
        return len(dead)

    # -- the AuthServer's documents ------------------------------------------------------

    def load_bootstrap(self, doc: Any) -> Changes:
        """``GET /admin/broker/bootstrap``; replaces the whole state."""
        if not isinstance(doc, Mapping):
            raise FeedError("bootstrap must be a JSON object")
        keys = _keys(doc.get("keys"))
        current = _str(doc, "current_key")
        if current not in keys:
            raise FeedError("bootstrap: current_key is not one of the keys")
        raw_accounts = doc.get("accounts", [])
        raw_revoked = doc.get("revoked", [])
        if not isinstance(raw_accounts, list) or not isinstance(raw_revoked, list):
            raise FeedError("bootstrap: 'accounts' and 'revoked' must be lists")
        accounts = {a.access_key_id: a for a in map(_account, raw_accounts)}
        revoked: dict[str, int] = {}
        for item in raw_revoked:
            if not isinstance(item, Mapping):
                raise FeedError("bootstrap: a revoked entry must be an object")
            revoked[_str(item, "token_id")] = _int(item, "expire_ms", 2**62)
        seq = _int(doc, "seq", 0)
        codec = TokenCodec(keys, current)
        # All validated: swap in, then report what became invalid.
        newly_revoked = frozenset(revoked) - frozenset(self._revoked)
        lost = frozenset(
            ak
            for ak, old in self._accounts.items()
            if old.enabled and (ak not in accounts or _lost(old, accounts[ak]))
        )
        self._keys, self._codec = keys, codec
        self._verified.clear()
        self.generation += 1
        self._accounts, self._revoked, self.seq = accounts, revoked, seq
        return self._notify(Changes(newly_revoked, lost))

    def apply_feed(self, doc: Any) -> Changes:
        """One answer of ``GET /admin/feed``; :class:`FeedReset` when ``reset`` is set."""
        if not isinstance(doc, Mapping):
            raise FeedError("feed answer must be a JSON object")
        if doc.get("reset"):
            raise FeedReset("feed position unknown to the AuthServer")
        events = doc.get("events", [])
        if not isinstance(events, list):
            raise FeedError("feed: 'events' must be a list")
        revoked: set[str] = set()
        lost: set[str] = set()
        for event in events:
            changes = self.apply_event(event, notify=False)
            revoked |= changes.revoked
            lost |= changes.accounts_invalid
        if "seq" in doc:
            self.seq = max(self.seq, _int(doc, "seq"))
        return self._notify(Changes(frozenset(revoked), frozenset(lost)))

    def apply_event(self, event: Any, *, notify: bool = True) -> Changes:
        if not isinstance(event, Mapping):
            raise FeedError("feed: an event must be an object")
        seq = _int(event, "seq", self.seq)
        if seq <= self.seq and "seq" in event:
            return Changes()  # already applied (a retried poll)
        kind = event.get("kind")
        changes = Changes()
        self.generation += 1
        if kind == "revoke":
            token_id = _str(event, "token_id")
            fresh = token_id not in self._revoked
            self._revoked[token_id] = _int(event, "expire_ms", 2**62)
            changes = Changes(revoked=frozenset({token_id}) if fresh else frozenset())
        elif kind == "account":
            if event.get("deleted"):
                ak = _str(event, "access_key_id")
                old = self._accounts.pop(ak, None)
                changes = Changes(accounts_invalid=frozenset({ak}) if old else frozenset())
            else:
                account = _account(event)
                old = self._accounts.get(account.access_key_id)
                self._accounts[account.access_key_id] = account
                changes = Changes(accounts_invalid=_lost(old, account))
        elif kind == "key":
            kid = _str(event, "kid")
            keys = dict(self._keys)
            keys.update(_keys({kid: _str(event, "key")}))
            current = event.get("current_key", kid if event.get("current") else None)
            if not isinstance(current, str) or current not in keys:
                current = self._codec.current_key_id if self._codec else kid
            self._keys, self._codec = keys, TokenCodec(keys, current)
            self._verified.clear()
        # Unknown kinds are skipped: a newer AuthServer may say more than we need.
        self.seq = max(self.seq, seq)
        return self._notify(changes) if notify else changes


def _lost(old: AccountInfo | None, new: AccountInfo) -> frozenset[str]:
    """An account that was usable and no longer is (disabled, or lost instances)."""
    if old is None or not old.enabled:
        return frozenset()
    if not new.enabled or not old.instances <= new.instances:
        return frozenset({new.access_key_id})
    return frozenset()
