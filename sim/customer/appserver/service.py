"""The AppServer's behaviour, free of HTTP: authenticate, check the ACL, answer from
the cache, apply upstream once per key, fall back to stale tokens, change accounts.

State lives in memory (accounts, the token cache) and is written through to the
:class:`~sim.customer.appserver.store.Store` -- committed before any answer depends on it.
Decisions are the pure functions of :mod:`~sim.customer.appserver.policy` and
:mod:`~sim.customer.appserver.resilience`; time comes from the clock handed in.

The cache's invariant: every cached token is allowed by its account's current grants
(:func:`~sim.customer.appserver.policy.allows`).  An account change (one account, a
bulk import, a delete) keeps it atomically: one store transaction holds the new
accounts, the cache rows they no longer allow and the revocations that must follow,
and the in-memory state follows the commit with no ``await`` in between -- so from the
commit on, no request is served a token the new grants do not allow.  The revocations
themselves drain in the background (:mod:`~sim.customer.appserver.revoker`) at the
provider's revoke limit.  At start the cache is checked against the loaded accounts
again (docs/appserver.md "Account changes").

Single-flight: concurrent asks for one key share one :class:`asyncio.Task` (the
first ask creates it, the others await it shielded, so a client hanging up cannot
cancel a shared apply).  One row per key: a refreshed token replaces the old one, so
the AppServer never holds two live tokens for one key.  The replaced token is not
revoked: clients may still be connected with it until they refresh.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sim.shared.clock import Clock

from .config import AppServerConfig
from .errors import (
    AccountDisabled,
    BadRequest,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    UpstreamError,
)
from .metrics import Metrics
from .passwords import VerifiedCache, dummy_hash, hash_cost, hash_secret, verify_secret
from .policy import (
    Account,
    AccountBody,
    CachedToken,
    Grant,
    TokenKey,
    TokenRequest,
    allows,
    check_acl,
    choose_expire_ms,
    has_enough_life,
    is_valid,
    parse_account_body,
    validate_client_id,
)
from .resilience import BreakerState, CircuitBreaker, TokenBucket, retry_after
from .revocation import Revocation
from .revoker import RevocationDrain
from .store import Store
from .upstream import Revoker, Upstream

__all__ = ["Change", "Issued", "TokenService"]

log = logging.getLogger(__name__)

MAX_BULK = 10_000


@dataclass(frozen=True)
class Issued:
    token: CachedToken
    source: Literal["cached", "issued", "stale"]

    @property
    def stale(self) -> bool:
        return self.source == "stale"


@dataclass(frozen=True)
class Change:
    """What an account change took away: cached tokens ``dropped`` (never served
    again), of which ``queued`` for upstream revocation (the others had expired)."""

    dropped: int
    queued: int

    def to_json(self) -> dict[str, int]:
        return {"dropped": self.dropped, "queued": self.queued}


class TokenService:
    def __init__(
        self,
        config: AppServerConfig,
        clock: Clock,
        store: Store,
        upstream: Upstream,
        metrics: Metrics | None = None,
        *,
        revoker: Revoker | None = None,
    ):
        """``revoker`` sends revocations (default: ``upstream``)."""
        self.config = config
        self.clock = clock
        self.store = store
        self.upstream = upstream
        self.metrics = metrics or Metrics()
        self.rng = random.Random(config.seed)
        self.accounts: dict[str, Account] = {a.client_id: a for a in store.load_accounts()}
        self.tokens: dict[TokenKey, CachedToken] = {}
        self._by_account: dict[str, set[TokenKey]] = {}
        for cached in store.load_tokens():
            self._cache_put(cached)
        self.revocations = RevocationDrain(
            config, clock, store, revoker or upstream, self.metrics, self.rng
        )
        self._recheck_cache()
        self.breaker = CircuitBreaker(
            config.breaker_failures,
            config.breaker_open_s,
            jitter=config.breaker_jitter,
            rng=self.rng,
        )
        self.bucket = TokenBucket(config.drain_rate_per_s, config.drain_burst, clock.now())
        self.verified = VerifiedCache(config.credential_cache_s, config.credential_cache_size)
        self._inflight: dict[TokenKey, asyncio.Task[Issued]] = {}
        #: Secret checks in flight, by (keyed digest of client id and secret, hash).
        self._verifying: dict[tuple[bytes, str], asyncio.Future[bool]] = {}
        #: Applies waiting for a drain slot right now (the backlog).
        self.draining = 0
        m = self.metrics
        self._hits = m.cache_hits
        self._misses = m.cache_misses

    # -- client authentication ----------------------------------------------------------

    async def _run_blocking(self, func: object, *args: object) -> object:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, func, *args)  # type: ignore[arg-type]

    async def authenticate(self, client_id: str, secret: str) -> Account:
        """The account of ``client_id`` if ``secret`` is its secret; else 401.

        A verified pair is remembered (keyed by a keyed hash, never the plaintext) for
        ``credential_cache_s``, so the slow hash runs once per client per period; and
        concurrent checks of one pair share one run of it (:meth:`_verify`).
        """
        account = self.accounts.get(client_id)
        now = self.clock.now()
        if account is None or not self.verified.check(client_id, secret, account.secret_hash, now):
            if account is None:
                encoded = str(await self._run_blocking(dummy_hash, self.config.password_hash_cost))
            else:
                encoded = account.secret_hash
            ok = await self._verify(client_id, secret, encoded)
            current = self.accounts.get(client_id)
            if (
                not ok
                or account is None
                or current is None
                or current.secret_hash != account.secret_hash
            ):
                raise Unauthorized("unknown client id or wrong secret")
            account = current
            self.verified.remember(client_id, secret, account.secret_hash, self.clock.now())
        if not account.enabled:
            raise AccountDisabled(f"account {client_id!r} is disabled")
        return account

    async def _verify(self, client_id: str, secret: str, encoded: str) -> bool:
        """``verify_secret(secret, encoded)`` in a worker thread, once for all concurrent
        checks of the same (client id, secret, stored hash).

        A thousand devices of one client id starting at once (SPEC §5) would otherwise
        run a thousand slow hashes before the first result lands in the verified cache.
        The flight is keyed by the cache's keyed digest of (client id, secret) and the
        hash verified against, so only checks that must give the same answer share one:
        a wrong secret never shares a right one's success, and a check against a
        changed hash runs on its own.  Shielded: a client that hangs up does not cancel
        the check for the others.  An unknown client id is checked against the dummy
        hash the same way, so it still costs what a wrong secret costs.
        """
        key = (self.verified.digest(client_id, secret), encoded)
        flight = self._verifying.get(key)
        if flight is None:
            loop = asyncio.get_running_loop()
            flight = loop.run_in_executor(None, verify_secret, secret, encoded)
            self._verifying[key] = flight
            flight.add_done_callback(functools.partial(self._verify_done, key))
            self.metrics.secret_verifications.inc()
        else:
            self.metrics.verification_joined.inc()
        return await asyncio.shield(flight)

    def _verify_done(self, key: tuple[bytes, str], flight: asyncio.Future[bool]) -> None:
        if self._verifying.get(key) is flight:
            del self._verifying[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: every waiter may have gone

    # -- tokens -----------------------------------------------------------------------------

    async def issue(self, account: Account, request: TokenRequest) -> Issued:
        """A token for ``request`` if the account's grants allow it, else 403.

        Invariant: every cached token is allowed by its account's current grants (a
        change of grants drops the others before any await), so a cache hit needs no
        ACL check.
        """
        key = TokenKey.of(account.client_id, self.config.instance_id, request)
        cached = self.tokens.get(key)
        if cached is not None and has_enough_life(
            cached.expire_ms, self.clock.now_ms(), self.config.refresh_margin_s
        ):
            self._hits.inc()
            return Issued(cached, "cached")
        check_acl(account.grants, request)
        self._misses.inc()
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._obtain(key))
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._flight_done, key))
        else:
            self.metrics.singleflight_joined.inc()
        issued = await asyncio.shield(task)
        # The account may have changed while this ask waited (for a drain slot, for the
        # apply, for another ask's flight): answer by its grants of now.
        if not allows(self.accounts.get(key.account), key.request):
            self._refuse(key)
        return issued

    def _refuse(self, key: TokenKey) -> None:
        account = self.accounts.get(key.account)
        if account is None:
            raise Unauthorized("unknown client id or wrong secret")
        if not account.enabled:
            raise AccountDisabled(f"account {key.account!r} is disabled")
        check_acl(account.grants, key.request)
        raise Forbidden("the account changed while its token was being applied")

    def _flight_done(self, key: TokenKey, task: asyncio.Task[Issued]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone

    async def _obtain(self, key: TokenKey) -> Issued:
        """The single flight of ``key``: one upstream apply, or the fallback."""
        now = self.clock.now()
        if self.breaker.state(now) is BreakerState.OPEN:
            return self._fallback(key, "circuit open", self.breaker.retry_in(now))
        wait = self.bucket.reserve(now, self.config.drain_max_wait_s)
        if wait is None:
            backlog = (1.0 - self.bucket.available(now)) / self.bucket.rate
            return self._fallback(key, "draining backlog", backlog)
        if wait > 0:
            self.draining += 1
            try:
                await self.clock.sleep(wait)
            finally:
                self.draining -= 1
        now = self.clock.now()
        if not self.breaker.allow(now):
            return self._fallback(key, "circuit open", self.breaker.retry_in(now))
        now_ms = self.clock.now_ms()
        expire_ms = choose_expire_ms(now_ms, self.config.token_ttl_s)
        self.metrics.upstream_applies.inc()
        try:
            token = await self.upstream.apply(key.request.actions, key.resources, expire_ms)
        except UpstreamError as exc:
            self.breaker.record_failure(self.clock.now())
            self.metrics.upstream_errors.labels("apply", exc.reason).inc()
            log.warning("token apply failed upstream (%s): %s", exc.reason, exc.message)
            return self._fallback(key, exc.reason, self.breaker.retry_in(self.clock.now()))
        except BaseException:
            self.breaker.release(self.clock.now())
            raise
        self.breaker.record_success(self.clock.now())
        fresh = CachedToken(key, token, expire_ms, now_ms)
        if not allows(self.accounts.get(key.account), key.request):
            # Disabled, deleted or narrowed while we were applying: never hand it out.
            self._take_out([fresh], cached=False)
            self._refuse(key)
        self.store.put_token(fresh)  # committed before anyone is answered
        self._cache_put(fresh)
        return Issued(fresh, "issued")

    def _fallback(self, key: TokenKey, reason: str, retry_in: float) -> Issued:
        """Disaster recovery: the last valid token (stale) or a 503 with Retry-After.
        The cache is read now, not before the waits: a token dropped meanwhile is gone."""
        cached = self.tokens.get(key)
        if (
            self.config.serve_stale
            and cached is not None
            and is_valid(cached.expire_ms, self.clock.now_ms())
        ):
            self.metrics.stale_served.inc()
            return Issued(cached, "stale")
        raise ServiceUnavailable(
            f"the AuthServer cannot issue tokens now ({reason}) and no valid token is cached; "
            "retry later",
            retry_after=retry_after(
                self.config.retry_after_s,
                self.config.retry_after_jitter,
                self.rng,
                at_least=retry_in,
            ),
        )

    # -- accounts ------------------------------------------------------------------------------

    def _cache_put(self, cached: CachedToken) -> None:
        self.tokens[cached.key] = cached
        self._by_account.setdefault(cached.key.account, set()).add(cached.key)

    def _cache_drop(self, key: TokenKey) -> None:
        del self.tokens[key]
        keys = self._by_account.get(key.account)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_account[key.account]

    def _tokens_of(self, client_id: str) -> list[CachedToken]:
        return [self.tokens[k] for k in self._by_account.get(client_id, ())]

    def token_count(self, client_id: str) -> int:
        return len(self._by_account.get(client_id, ()))

    async def _hash(self, client_id: str, secret: str | None) -> str | None:
        """The hash to store for ``secret`` (None: no secret given, keep the stored one).

        A secret the account already has -- it was verified against the stored hash
        within ``credential_cache_s``, and that hash is of the configured cost -- keeps
        its hash, and with it its clients' verified credentials: re-putting accounts
        unchanged (a provisioning run, a bulk re-import) must not send every client of
        them through the slow hash again at once.  Anything else gets a fresh salted
        hash (and the account change forgets the remembered pairs)."""
        if secret is None:
            return None
        cost = self.config.password_hash_cost
        existing = self.accounts.get(client_id)
        if (
            existing is not None
            and hash_cost(existing.secret_hash) == cost
            and self.verified.check(client_id, secret, existing.secret_hash, self.clock.now())
        ):
            return existing.secret_hash
        return str(await self._run_blocking(hash_secret, secret, cost))

    async def put_account(self, client_id: str, body: AccountBody) -> tuple[Account, bool, Change]:
        """Create or update; tokens the account may no longer hold are taken out."""
        validate_client_id(client_id)
        existing = self.accounts.get(client_id)
        if existing is None and body.secret is None:
            raise BadRequest("a new account needs a secret")
        secret_hash = await self._hash(client_id, body.secret)
        existing = self.accounts.get(client_id)  # may have changed while hashing
        account = self._merge(client_id, existing, secret_hash, body)
        change = self._change([(existing, account)])
        return account, existing is None, change

    @staticmethod
    def _merge(
        client_id: str, existing: Account | None, secret_hash: str | None, body: AccountBody
    ) -> Account:
        grants: tuple[Grant, ...] = (
            body.grants if body.grants is not None else (existing.grants if existing else ())
        )
        enabled = (
            body.enabled if body.enabled is not None else (existing.enabled if existing else True)
        )
        if secret_hash is None:
            if existing is None:
                raise BadRequest("a new account needs a secret")
            secret_hash = existing.secret_hash
        return Account(client_id, secret_hash, grants, enabled)

    async def delete_account(self, client_id: str) -> Change:
        """Remove the account (secret, grants); its tokens are taken out and revoked."""
        if client_id not in self.accounts:
            raise NotFound(f"no account {client_id!r}")
        self.verified.forget(client_id)
        return self._take_out(self._tokens_of(client_id), deleted=[client_id])

    async def bulk_import(self, items: object) -> dict[str, int]:
        """``[{"client_id", "secret", "grants", "enabled"}, ...]``: all valid or none, and
        all committed at once (grants and what they take away: one transaction)."""
        if not isinstance(items, list):
            raise BadRequest("accounts must be a list")
        if len(items) > MAX_BULK:
            raise BadRequest(f"at most {MAX_BULK} accounts per import")
        parsed: dict[str, AccountBody] = {}
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise BadRequest(f"accounts[{i}] must be an object")
            rest = {k: v for k, v in item.items() if k != "client_id"}
            client_id = item.get("client_id")
            if not isinstance(client_id, str):
                raise BadRequest(f"accounts[{i}] needs a client_id")
            try:
                validate_client_id(client_id)
            except BadRequest as exc:
                raise BadRequest(f"accounts[{i}]: {exc.message}") from None
            body = parse_account_body(rest, what=f"accounts[{i}]")
            if body.secret is None and client_id not in self.accounts:
                raise BadRequest(f"accounts[{i}]: a new account needs a secret")
            parsed[client_id] = body
        hashes = await asyncio.gather(*(self._hash(c, b.secret) for c, b in parsed.items()))
        # From here on, no await until the commit: the merge reads the accounts of now.
        merged = []
        for (client_id, body), secret_hash in zip(parsed.items(), hashes, strict=True):
            existing = self.accounts.get(client_id)
            merged.append((existing, self._merge(client_id, existing, secret_hash, body)))
        change = self._change(merged)
        created = sum(existing is None for existing, _ in merged)
        return {
            "imported": len(merged),
            "created": created,
            "updated": len(merged) - created,
            **change.to_json(),
        }

    def _change(self, merged: Sequence[tuple[Account | None, Account]]) -> Change:
        """Commit new versions of accounts with the tokens they no longer allow."""
        dropped = [
            t
            for _, account in merged
            for t in self._tokens_of(account.client_id)
            if not allows(account, t.key.request)
        ]
        change = self._take_out(dropped, accounts=[a for _, a in merged])
        for existing, account in merged:
            if existing is not None and existing.secret_hash != account.secret_hash:
                self.verified.forget(account.client_id)
        return change

    # -- taking tokens out -----------------------------------------------------------------

    def _take_out(
        self,
        tokens: Sequence[CachedToken],
        *,
        accounts: Sequence[Account] = (),
        deleted: Sequence[str] = (),
        cached: bool = True,
    ) -> Change:
        """One transaction: the account changes, the cache rows of ``tokens`` removed and
        the still-valid ones queued for revocation; then memory follows, no ``await``
        in between.  ``cached=False``: tokens that never reached the cache."""
        now_ms = self.clock.now_ms()
        revoke = [
            Revocation(t.token, t.key.account, t.expire_ms) for t in tokens if t.expire_ms > now_ms
        ]
        self.store.commit(
            accounts=accounts, deleted=deleted, dropped=tokens if cached else (), revoke=revoke
        )
        for account in accounts:
            self.accounts[account.client_id] = account
        for client_id in deleted:
            self.accounts.pop(client_id, None)
        if cached:
            for t in tokens:
                if self.tokens.get(t.key) is t:
                    self._cache_drop(t.key)
        self.revocations.add(revoke)
        return Change(len(tokens), len(revoke))

    def _recheck_cache(self) -> None:
        """At start: a cached token its account's grants do not allow (a store written
        before a crash of an older AppServer, or edited by hand) is taken out."""
        stale = [
            t
            for t in self.tokens.values()
            if not allows(self.accounts.get(t.key.account), t.key.request)
        ]
        if stale:
            change = self._take_out(stale)
            log.warning(
                "start-up check: %d cached token(s) not allowed by their account any more; "
                "dropped, %d queued for revocation",
                change.dropped,
                change.queued,
            )

    # -- lifecycle and inspection ------------------------------------------------------------------

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def breaker_state(self) -> BreakerState:
        return self.breaker.state(self.clock.now())

    def update_gauges(self) -> None:
        m = self.metrics
        m.set_breaker(self.breaker_state())
        m.cached_tokens.set(len(self.tokens))
        m.draining.set(self.draining)
        m.accounts.set(len(self.accounts))
        m.pending_revocations.set(len(self.revocations))
