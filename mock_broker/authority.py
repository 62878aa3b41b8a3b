"""The broker's token authority: keys, accounts, the revoked set (SPEC §3c) and each
instance's parent topics (SPEC §4a).

Fed by the AuthServer's bootstrap and feed (the typed documents of
:mod:`sim.shared.protocol.feed`, checked where they are read), or directly by tests.  No
I/O and no clock: every update returns what changed, so the shell can notify and
disconnect the sessions concerned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from sim.shared.protocol import (
    AccountEvent,
    AccountRecord,
    Bootstrap,
    FeedEvent,
    FeedPage,
    InvalidToken,
    ParentTopicsEvent,
    RevokeEvent,
)
from sim.shared.protocol.tokens import TokenClaims, TokenCodec

from .bytecache import ByteBudgetCache
from .decision import AccountInfo
from .errors import FeedReset

__all__ = ["VERIFIED_BUDGET", "Changes", "TokenAuthority"]

#: Bytes of verified tokens remembered (docs/broker.md "Bounded memory").
VERIFIED_BUDGET = 16 * 1024 * 1024
_CLAIMS_OVERHEAD = 1024  # the claims object beside the token's own text


@dataclass(frozen=True)
class Changes:
    """What an update invalidated: revoked token ids, access keys no longer valid."""

    revoked: frozenset[str] = frozenset()
    accounts_invalid: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.revoked or self.accounts_invalid)


def _account(record: AccountRecord) -> AccountInfo:
    return AccountInfo(
        record.access_key_id, record.secret, frozenset(record.instances), record.enabled
    )


class TokenAuthority:
    """Verifies tokens offline and knows what has been revoked."""

    def __init__(self, *, ignore_revocations: bool = False) -> None:
        #: BrokerConfig.ignore_revocations: the feed's revocations are skipped (a defect)
        self.ignore_revocations = ignore_revocations
        self._codec: TokenCodec | None = None
        self._keys: dict[str, bytes] = {}
        self._accounts: dict[str, AccountInfo] = {}
        self._revoked: dict[str, int] = {}  # token_id -> expire_ms (pruned after expiry)
        self._parents: dict[str, frozenset[str]] = {}  # instance -> parent topics (§4a)
        self.seq = 0
        self._listeners: list[Callable[[Changes], object]] = []
        # Verified tokens by their exact text: a reconnecting client presents the same
        # token again, and a reconnect storm should cost a dict lookup per CONNECT, not
        # a MAC and a JSON parse.  Only genuine tokens are kept (a forgery never is),
        # within a byte budget; any key change empties it.
        self._verified: ByteBudgetCache[str, TokenClaims] = ByteBudgetCache(VERIFIED_BUDGET)
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
        size = len(token) + sum(map(len, claims.resources)) + _CLAIMS_OVERHEAD
        self._verified.put(token, claims, size)
        return claims

    def is_revoked(self, token_id: str) -> bool:
        return token_id in self._revoked

    def account(self, access_key_id: str) -> AccountInfo | None:
        return self._accounts.get(access_key_id)

    def parent_topics(self, instance_id: str) -> frozenset[str]:
        """The instance's parent topics (SPEC §4a); none known: empty."""
        return self._parents.get(instance_id, frozenset())

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

    def set_parent_topics(self, instance_id: str, names: Iterable[str]) -> None:
        """Replace the instance's parent topics.  Sessions are not touched: each later
        PUBLISH and SUBSCRIBE is checked against the set then in force."""
        names = frozenset(names)
        if names:
            self._parents[instance_id] = names
        else:
            self._parents.pop(instance_id, None)

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

    def load_bootstrap(self, doc: Bootstrap) -> Changes:
        """``GET /admin/broker/bootstrap``; replaces the whole state."""
        accounts = {a.access_key_id: _account(a) for a in doc.accounts}
        revoked = {} if self.ignore_revocations else {r.token_id: r.expire_ms for r in doc.revoked}
        keys = dict(doc.keys)
        codec = TokenCodec(keys, doc.current_key)
        newly_revoked = frozenset(revoked) - frozenset(self._revoked)
        lost = frozenset(
            ak
            for ak, old in self._accounts.items()
            if old.enabled and (ak not in accounts or _lost(old, accounts[ak]))
        )
        self._keys, self._codec = keys, codec
        self._verified.clear()
        self.generation += 1
        self._accounts, self._revoked, self.seq = accounts, revoked, doc.seq
        self._parents = {i: frozenset(n) for i, n in doc.parent_topics.items() if n}
        return self._notify(Changes(newly_revoked, lost))

    def apply_feed(self, page: FeedPage) -> Changes:
        """One answer of ``GET /admin/feed``; :class:`FeedReset` when it says ``reset``."""
        if page.reset:
            raise FeedReset("feed position unknown to the AuthServer")
        revoked: set[str] = set()
        lost: set[str] = set()
        for event in page.events:
            changes = self.apply_event(event, notify=False)
            revoked |= changes.revoked
            lost |= changes.accounts_invalid
        self.seq = max(self.seq, page.seq)
        return self._notify(Changes(frozenset(revoked), frozenset(lost)))

    def apply_event(self, event: FeedEvent, *, notify: bool = True) -> Changes:
        if event.seq <= self.seq:
            return Changes()  # already applied (a retried poll)
        self.seq = event.seq
        self.generation += 1
        changes = Changes()
        if isinstance(event, RevokeEvent):
            if self.ignore_revocations:
                return Changes()
            fresh = event.token_id not in self._revoked
            self._revoked[event.token_id] = event.expire_ms
            changes = Changes(revoked=frozenset({event.token_id}) if fresh else frozenset())
        elif isinstance(event, AccountEvent):
            ak = event.account.access_key_id
            if event.deleted:
                gone = self._accounts.pop(ak, None)
                changes = Changes(accounts_invalid=frozenset({ak}) if gone else frozenset())
            else:
                account = _account(event.account)
                old = self._accounts.get(ak)
                self._accounts[ak] = account
                changes = Changes(accounts_invalid=_lost(old, account))
        elif isinstance(event, ParentTopicsEvent):
            self.set_parent_topics(event.instance_id, event.parent_topics)
        # Other kinds are skipped: a newer AuthServer may say more than we need.
        return self._notify(changes) if notify else changes


def _lost(old: AccountInfo | None, new: AccountInfo) -> frozenset[str]:
    """An account that was usable and no longer is (disabled, or lost instances)."""
    if old is None or not old.enabled:
        return frozenset()
    if not new.enabled or not old.instances <= new.instances:
        return frozenset({new.access_key_id})
    return frozenset()
