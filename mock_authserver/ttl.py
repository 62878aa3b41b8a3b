"""The TTL engine: accounts, issue/query/revoke rules, revocations and the feed (SPEC §3c).

Pure core: no HTTP, no sockets, no wall clock.  "Now" comes from the injected clock
(virtual time: a token's expiry is a virtual instant), storage from an injected
:class:`Repository` (SQLite in production, :class:`MemoryRepository` in unit tests).

Rules (SPEC §3a):
* ``expireTime`` at least ``now + 60 s`` (else a parameter error), more than
  ``now + 30 days`` is capped at 30 days;
* the instance must be one the AccessKey's account owns;
* query answers valid / forged (1) / expired (2) / revoked (3); a token of another
  account is, for that caller, forged;
* revoke of a forged token or another account's token fails (410); revoking twice, or an
  expired token, is a no-op success.

Parent topics (SPEC §4a) are kept per instance beside the accounts: set by the admin API
and the accounts file, read by :meth:`TTLEngine.parent_topics`; brokers get them in the
bootstrap and follow each change as a ``parent_topics`` feed event (the instance's whole
set).  The AuthServer does not check resources against them: the provider's docs do not
say its token service does.

The feed: every revocation and account change is an event with a growing ``seq``; the
broker reads :meth:`TTLEngine.bootstrap` once, then follows :meth:`TTLEngine.feed` (the
typed documents of :mod:`sim.shared.protocol.feed`; storage keeps their JSON).
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sim.shared.protocol import (
    AccountEvent,
    AccountRecord,
    Bootstrap,
    FeedEvent,
    FeedPage,
    InvalidToken,
    ParentTopicsEvent,
    Revocation,
    RevokeEvent,
    event_from_json,
)
from sim.shared.protocol.tokens import (
    MAX_TOKEN_CHARS,
    TokenClaims,
    TokenCodec,
    new_key,
    new_token_id,
)

from .config import MAX_PARENT_TOPICS, AccountSpec, InstanceSpec
from .errors import (
    AccessKeyDisabled,
    AccessKeyNotFound,
    InvalidParameter,
    RevokeFailed,
    RevokeForbidden,
    TokenExpired,
    TokenForged,
    TokenGenerationError,
    TokenRevoked,
    UnknownInstance,
)
from .validation import ApplyRequest

__all__ = [
    "FEED_PARENT_TOPICS",
    "MAX_TTL_MS",
    "MIN_TTL_MS",
    "IssuedToken",
    "MemoryRepository",
    "NowSource",
    "Repository",
    "TTLEngine",
]

MIN_TTL_MS = 60_000
MAX_TTL_MS = 30 * 24 * 3600 * 1000
#: How long expired tokens stay inspectable before a sweep forgets them (virtual ms).
RETENTION_MS = 24 * 3600 * 1000
#: Feed event kind of an instance's parent topics (its whole set after each change).
FEED_PARENT_TOPICS = ParentTopicsEvent.KIND
#: Meta key: the dev instance's parent topics were seeded once (a user may delete them).
_DEV_TOPICS_SEEDED = "dev_parent_topics"


class NowSource(Protocol):
    def now_ms(self) -> int: ...


class Repository(Protocol):
    """What the engine needs from storage (see :class:`mock_authserver.store.SqliteStore`)."""

    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, key: str, value: str) -> None: ...
    def load_accounts(self) -> list[AccountSpec]: ...
    def put_account(self, account: AccountSpec) -> None: ...
    def delete_account(self, access_key_id: str) -> None: ...
    def load_parent_topics(self) -> list[tuple[str, str]]: ...
    def put_parent_topic(self, instance_id: str, name: str) -> None: ...
    def delete_parent_topic(self, instance_id: str, name: str) -> None: ...
    def load_keys(self) -> tuple[dict[str, bytes], str | None]: ...
    def add_key(self, kid: str, key: bytes, created_ms: int) -> None: ...
    def save_token(self, claims: TokenClaims) -> None: ...
    def flush(self) -> None: ...
    def get_token(self, token_id: str) -> TokenClaims | None: ...
    def save_revocation(
        self, token_id: str, revoked_ms: int, expire_ms: int, event: dict[str, Any]
    ) -> None: ...
    def load_revocations(self, after_ms: int) -> dict[str, int]: ...
    def revoked_at(self, token_id: str) -> int | None: ...
    def append_event(self, event: dict[str, Any]) -> None: ...
    def load_events(self, keep: int) -> list[dict[str, Any]]: ...
    def last_seq(self) -> int: ...
    def prune(self, before_ms: int, keep_events: int) -> None: ...


@dataclass(frozen=True)
class IssuedToken:
    token: str
    claims: TokenClaims


class TTLEngine:
    def __init__(
        self,
        clock: NowSource,
        repo: Repository,
        *,
        feed_keep: int = 10_000,
        dev_account: AccountSpec | None = None,
        dev_instance: InstanceSpec | None = None,
        accounts: Iterable[AccountSpec] = (),
        instances: Iterable[InstanceSpec] = (),
    ):
        """``dev_account``/``dev_instance``: created once, in a fresh data dir (the dev
        instance's parent topics also once in an older one); ``accounts``/``instances``:
        made to match at every start (:class:`ValueError` if an instance is no
        account's)."""
        self._clock = clock
        self._repo = repo
        self._feed_keep = feed_keep
        self._listeners: list[Callable[[FeedEvent], object]] = []
        now = clock.now_ms()

        keys, current = repo.load_keys()
        if current is None:  # a fresh data dir: the key is made once and kept
            current = "k" + secrets.token_hex(4)
            key = new_key()
            repo.add_key(current, key, now)
            keys[current] = key
        self._codec = TokenCodec(keys, current)
        self._keys = keys

        self._accounts = {a.access_key_id: a for a in repo.load_accounts()}
        fresh = repo.get_meta("initialized") is None
        if fresh:
            repo.set_meta("initialized", str(now))
        self._events: deque[FeedEvent] = deque(
            map(event_from_json, repo.load_events(feed_keep)), feed_keep
        )
        self._seq = repo.last_seq()
        if fresh and dev_account is not None and dev_account.access_key_id not in self._accounts:
            self.put_account(dev_account)
        for account in accounts:
            if self._accounts.get(account.access_key_id) != account:
                self.put_account(account)
        self._parents: dict[str, set[str]] = {}
        for instance_id, name in repo.load_parent_topics():
            self._parents.setdefault(instance_id, set()).add(name)
        if (
            dev_instance is not None
            and repo.get_meta(_DEV_TOPICS_SEEDED) is None
            and self.owners(dev_instance.instance_id)
        ):
            for name in dev_instance.parent_topics:
                self._put_parent_topic(dev_instance.instance_id, name)
            if not fresh:  # an older data dir: its followers learn them from the feed
                self._emit_parent_topics(dev_instance.instance_id)
            repo.set_meta(_DEV_TOPICS_SEEDED, str(now))
        for spec in instances:
            self.set_parent_topics(spec)
        self._revoked = repo.load_revocations(now)

    # -- accounts -------------------------------------------------------------------------

    def account(self, access_key_id: str) -> AccountSpec:
        """The enabled account of this AccessKey, or the matching error."""
        account = self._accounts.get(access_key_id)
        if account is None:
            raise AccessKeyNotFound(f"AccessKeyId {access_key_id[:64]!r} does not exist")
        if not account.enabled:
            raise AccessKeyDisabled(f"AccessKeyId {access_key_id[:64]!r} is disabled")
        return account

    def secret_of(self, access_key_id: str) -> str:
        return self.account(access_key_id).secret

    def accounts(self) -> list[AccountSpec]:
        return sorted(self._accounts.values(), key=lambda a: a.access_key_id)

    def get_account(self, access_key_id: str) -> AccountSpec | None:
        return self._accounts.get(access_key_id)

    def put_account(self, account: AccountSpec) -> None:
        self._repo.put_account(account)
        self._accounts[account.access_key_id] = account
        self._emit(AccountEvent(self._next_seq(), _record(account)))

    def delete_account(self, access_key_id: str) -> bool:
        if self._accounts.pop(access_key_id, None) is None:
            return False
        self._repo.delete_account(access_key_id)
        # Followers treat a deleted account as a disabled one with nothing owned.
        gone = AccountRecord(access_key_id, "", (), enabled=False)
        self._emit(AccountEvent(self._next_seq(), gone, deleted=True))
        return True

    def owners(self, instance_id: str) -> list[str]:
        """AccessKeyIds of the accounts that own ``instance_id`` (any state)."""
        return sorted(
            a.access_key_id for a in self._accounts.values() if instance_id in a.instances
        )

    # -- parent topics (SPEC §4a) ------------------------------------------------------------

    def parent_topics(self) -> dict[str, tuple[str, ...]]:
        """Every instance's parent topics, sorted: what a broker needs to refuse topics
        outside them (in the bootstrap; changes are ``parent_topics`` feed events)."""
        return {i: tuple(sorted(names)) for i, names in sorted(self._parents.items()) if names}

    def parent_topics_of(self, instance_id: str) -> tuple[str, ...]:
        return tuple(sorted(self._parents.get(instance_id, ())))

    def add_parent_topic(self, instance_id: str, name: str) -> bool:
        """Create ``name`` under ``instance_id`` (valid names only: the caller checked
        them); False if it was there.  :class:`ValueError` when the instance is no
        account's or already has :data:`MAX_PARENT_TOPICS`."""
        added = self._put_parent_topic(instance_id, name)
        if added:
            self._emit_parent_topics(instance_id)
        return added

    def delete_parent_topic(self, instance_id: str, name: str) -> bool:
        deleted = self._drop_parent_topic(instance_id, name)
        if deleted:
            self._emit_parent_topics(instance_id)
        return deleted

    def set_parent_topics(self, spec: InstanceSpec) -> None:
        """Make the instance's parent topics exactly ``spec.parent_topics`` (one feed
        event if that changed anything)."""
        instance_id = spec.instance_id
        if not self.owners(instance_id):
            raise ValueError(f"instance {instance_id[:64]!r} is not owned by any account")
        changed = False
        try:
            for name in set(self.parent_topics_of(instance_id)) - set(spec.parent_topics):
                changed |= self._drop_parent_topic(instance_id, name)
            for name in spec.parent_topics:
                changed |= self._put_parent_topic(instance_id, name)
        finally:
            if changed:
                self._emit_parent_topics(instance_id)

    def _put_parent_topic(self, instance_id: str, name: str) -> bool:
        if not self.owners(instance_id):
            raise ValueError(f"instance {instance_id[:64]!r} is not owned by any account")
        names = self._parents.setdefault(instance_id, set())
        if name in names:
            return False
        if len(names) >= MAX_PARENT_TOPICS:
            raise ValueError(f"instance {instance_id[:64]!r} has {MAX_PARENT_TOPICS} parent topics")
        self._repo.put_parent_topic(instance_id, name)
        names.add(name)
        return True

    def _drop_parent_topic(self, instance_id: str, name: str) -> bool:
        names = self._parents.get(instance_id)
        if not names or name not in names:
            return False
        self._repo.delete_parent_topic(instance_id, name)
        names.discard(name)
        return True

    def _emit_parent_topics(self, instance_id: str) -> None:
        """Brokers follow parent topics like accounts: the instance's set, as it is now."""
        names = self.parent_topics_of(instance_id)
        self._emit(ParentTopicsEvent(self._next_seq(), instance_id, names))

    # -- tokens ---------------------------------------------------------------------------

    @property
    def codec(self) -> TokenCodec:
        return self._codec

    def _own_instance(self, access_key_id: str, instance_id: str) -> AccountSpec:
        """The caller's account if it owns ``instance_id``; an unknown instance and
        another account's answer the same (tenants never see each other)."""
        account = self.account(access_key_id)
        if instance_id not in account.instances:
            raise UnknownInstance(
                f"instanceId {instance_id[:64]!r} is not an instance of this AccessKey"
            )
        return account

    def apply(self, req: ApplyRequest) -> IssuedToken:
        account = self._own_instance(req.access_key_id, req.instance_id)
        now = self._clock.now_ms()
        if req.expire_ms < now + MIN_TTL_MS:
            raise InvalidParameter(
                "ExpireTime",
                f"expireTime must be at least now + 60 s ({now + MIN_TTL_MS} ms),"
                f" got {str(req.expire_ms)[:40]}",
            )
        expire_ms = min(req.expire_ms, now + MAX_TTL_MS)  # SPEC §3a: capped at 30 days
        claims = TokenClaims(
            token_id=new_token_id(),
            access_key_id=account.access_key_id,
            instance_id=req.instance_id,
            actions=req.actions,
            resources=req.resources,
            expire_ms=expire_ms,
            issued_ms=now,
        )
        token = self._codec.encode(claims)
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenGenerationError(
                f"the token would be longer than {MAX_TOKEN_CHARS} characters: fewer or"
                " shorter resources"
            )
        self._repo.save_token(claims)  # durable once the shell has flushed the repository
        return IssuedToken(token, claims)

    def _decode(self, token: str) -> TokenClaims:
        try:
            return self._codec.decode(token)
        except InvalidToken as exc:
            raise TokenForged(str(exc)) from None

    def check(self, token: str) -> TokenClaims:
        """Claims of a valid token; :class:`TokenForged`/``Expired``/``Revoked`` otherwise."""
        claims = self._decode(token)
        if claims.token_id in self._revoked:
            raise TokenRevoked("token has been revoked")
        if claims.expire_ms <= self._clock.now_ms():
            raise TokenExpired("token has expired")
        return claims

    def query(self, access_key_id: str, token: str, instance_id: str | None = None) -> TokenClaims:
        """``instance_id`` (OpenAPI) must be the caller's; the legacy API names none."""
        if instance_id is not None:
            self._own_instance(access_key_id, instance_id)
        claims = self.check(token)
        if claims.access_key_id != access_key_id or (
            instance_id is not None and claims.instance_id != instance_id
        ):
            raise TokenForged("token was not issued to this AccessKey and instance")
        return claims

    def revoke(self, access_key_id: str, token: str, instance_id: str | None = None) -> None:
        if instance_id is not None:
            self._own_instance(access_key_id, instance_id)
        try:
            claims = self._decode(token)
        except TokenForged as exc:
            raise RevokeFailed(f"cannot revoke: {exc.message}") from None
        if claims.access_key_id != access_key_id or (
            instance_id is not None and claims.instance_id != instance_id
        ):
            raise RevokeForbidden(
                "cannot revoke: token was not issued to this AccessKey and instance"
            )
        now = self._clock.now_ms()
        if claims.token_id in self._revoked or claims.expire_ms <= now:
            return  # nothing left to revoke: idempotent
        self._revoked[claims.token_id] = claims.expire_ms
        event = RevokeEvent(
            self._next_seq(),
            claims.token_id,
            claims.access_key_id,
            claims.instance_id,
            claims.expire_ms,
        )
        self._repo.save_revocation(claims.token_id, now, claims.expire_ms, event.to_json())
        self._publish(event)

    def revoked_count(self) -> int:
        """Revoked tokens not yet expired (what a broker must remember)."""
        now = self._clock.now_ms()
        return sum(1 for exp in self._revoked.values() if exp > now)

    def is_revoked(self, token_id: str) -> bool:
        return token_id in self._revoked

    def inspect(self, token_id: str) -> dict[str, Any] | None:
        claims = self._repo.get_token(token_id)
        if claims is None:
            return None
        revoked = token_id in self._revoked
        expired = claims.expire_ms <= self._clock.now_ms()
        return {
            "token_id": claims.token_id,
            "access_key_id": claims.access_key_id,
            "instance_id": claims.instance_id,
            "actions": sorted(claims.actions),
            "resources": list(claims.resources),
            "expire_ms": claims.expire_ms,
            "issued_ms": claims.issued_ms,
            "revoked": revoked,
            # When (virtual ms): the device audit tells a token replaced because it was
            # revoked from one replaced while still valid (docs/your-appserver.md).
            "revoked_ms": self._repo.revoked_at(token_id) if revoked else None,
            "status": "revoked" if revoked else "expired" if expired else "valid",
        }

    def sweep(self) -> int:
        """Drop expired revocations from memory, old rows from storage; return how many."""
        now = self._clock.now_ms()
        gone = [tid for tid, exp in self._revoked.items() if exp <= now]
        for tid in gone:
            del self._revoked[tid]
        self._repo.prune(now - RETENTION_MS, self._feed_keep)
        return len(gone)

    # -- the feed ---------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        return self._seq

    def add_listener(self, listener: Callable[[FeedEvent], object]) -> None:
        """Call ``listener(event)`` after each new feed event (the shell wakes long polls)."""
        self._listeners.append(listener)

    def bootstrap(self) -> Bootstrap:
        now = self._clock.now_ms()
        return Bootstrap(
            keys=dict(self._keys),
            current_key=self._codec.current_key_id,
            accounts=tuple(map(_record, self.accounts())),
            revoked=tuple(
                Revocation(tid, exp) for tid, exp in sorted(self._revoked.items()) if exp > now
            ),
            seq=self._seq,
            parent_topics=self.parent_topics(),
        )

    def feed(self, after: int, limit: int = 1000) -> FeedPage:
        """Events with ``seq > after``; ``reset`` when ``after`` is not continuable."""
        first = self._events[0].seq if self._events else self._seq + 1
        if after > self._seq or after < first - 1:
            return FeedPage(self._seq, reset=True)
        if after == self._seq:
            return FeedPage(self._seq)
        events = tuple(e for e in self._events if e.seq > after)[:limit]
        return FeedPage(events[-1].seq if events else self._seq, events)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _emit(self, event: FeedEvent) -> None:
        self._repo.append_event(event.to_json())
        self._publish(event)

    def _publish(self, event: FeedEvent) -> None:
        self._events.append(event)
        for listener in list(self._listeners):
            listener(event)


def _record(account: AccountSpec) -> AccountRecord:
    return AccountRecord(
        account.access_key_id, account.secret, tuple(account.instances), account.enabled
    )


class MemoryRepository:
    """A :class:`Repository` in dicts, for unit tests of the engine."""

    def __init__(self) -> None:
        self.meta: dict[str, str] = {}
        self.accounts: dict[str, AccountSpec] = {}
        self.parents: set[tuple[str, str]] = set()
        self.keys: dict[str, bytes] = {}
        self.current: str | None = None
        self.tokens: dict[str, TokenClaims] = {}
        self.revocations: dict[str, tuple[int, int]] = {}
        self.events: list[dict[str, Any]] = []

    def get_meta(self, key: str) -> str | None:
        return self.meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        self.meta[key] = value

    def load_accounts(self) -> list[AccountSpec]:
        return list(self.accounts.values())

    def put_account(self, account: AccountSpec) -> None:
        self.accounts[account.access_key_id] = account

    def delete_account(self, access_key_id: str) -> None:
        self.accounts.pop(access_key_id, None)

    def load_parent_topics(self) -> list[tuple[str, str]]:
        return sorted(self.parents)

    def put_parent_topic(self, instance_id: str, name: str) -> None:
        self.parents.add((instance_id, name))

    def delete_parent_topic(self, instance_id: str, name: str) -> None:
        self.parents.discard((instance_id, name))

    def load_keys(self) -> tuple[dict[str, bytes], str | None]:
        return dict(self.keys), self.current

    def add_key(self, kid: str, key: bytes, created_ms: int) -> None:
        self.keys[kid] = key
        self.current = kid

    def save_token(self, claims: TokenClaims) -> None:
        self.tokens[claims.token_id] = claims

    def flush(self) -> None:
        pass

    def get_token(self, token_id: str) -> TokenClaims | None:
        return self.tokens.get(token_id)

    def save_revocation(
        self, token_id: str, revoked_ms: int, expire_ms: int, event: dict[str, Any]
    ) -> None:
        self.revocations[token_id] = (revoked_ms, expire_ms)
        self.events.append(event)

    def load_revocations(self, after_ms: int) -> dict[str, int]:
        return {t: exp for t, (_, exp) in self.revocations.items() if exp > after_ms}

    def revoked_at(self, token_id: str) -> int | None:
        found = self.revocations.get(token_id)
        return found[0] if found is not None else None

    def append_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def load_events(self, keep: int) -> list[dict[str, Any]]:
        return self.events[-keep:]

    def last_seq(self) -> int:
        return self.events[-1]["seq"] if self.events else 0

    def prune(self, before_ms: int, keep_events: int) -> None:
        self.tokens = {k: c for k, c in self.tokens.items() if c.expire_ms >= before_ms}
        self.revocations = {k: v for k, v in self.revocations.items() if v[1] >= before_ms}
        self.events = self.events[-keep_events:]
