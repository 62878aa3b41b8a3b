"""The AppServer's behaviour, free of HTTP: authenticate, check the ACL, answer from
the cache, apply upstream once per key, fall back to stale tokens, revoke.

State lives in memory (accounts, the token cache) and is written through to the
:class:`~sim.customer.appserver.store.Store` -- committed before any answer depends on it.
Decisions are the pure functions of :mod:`~sim.customer.appserver.policy` and
:mod:`~sim.customer.appserver.resilience`; time comes from the clock handed in.

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
from collections.abc import Iterable, Sequence
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
from .passwords import VerifiedCache, dummy_hash, hash_secret, verify_secret
from .policy import (
    Account,
    AccountBody,
    CachedToken,
    Grant,
    TokenKey,
    TokenRequest,
    check_acl,
    choose_expire_ms,
    has_enough_life,
    is_allowed,
    is_valid,
    parse_account_body,
    validate_client_id,
)
from .resilience import BreakerState, CircuitBreaker, TokenBucket, retry_after
from .store import Store
from .upstream import Upstream

__all__ = ["Issued", "RevokeReport", "TokenService"]

log = logging.getLogger(__name__)

#: Provider codes after which retrying a revoke is pointless: the token is dead already
#: (1 forged, 2 expired, 3 revoked) or can never be revoked by us (410).
_DEAD_TOKEN_CODES = frozenset({1, 2, 3, 410})
MAX_BULK = 10_000
_REVOKE_CONCURRENCY = 16


@dataclass(frozen=True)
class Issued:
    token: CachedToken
    source: Literal["cached", "issued", "stale"]

    @property
    def stale(self) -> bool:
        return self.source == "stale"


@dataclass(frozen=True)
class RevokeReport:
    revoked: int  # revoked upstream (or already dead there)
    pending: int  # queued; retried every ``revoke_retry_s``

    def to_json(self) -> dict[str, int]:
        return {"revoked": self.revoked, "pending": self.pending}


class TokenService:
    def __init__(
        self,
        config: AppServerConfig,
        clock: Clock,
        store: Store,
        upstream: Upstream,
        metrics: Metrics | None = None,
    ):
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
        self.breaker = CircuitBreaker(
            config.breaker_failures,
            config.breaker_open_s,
            jitter=config.breaker_jitter,
            rng=self.rng,
        )
        self.bucket = TokenBucket(config.drain_rate_per_s, config.drain_burst, clock.now())
        self.verified = VerifiedCache(config.credential_cache_s, config.credential_cache_size)
        self._inflight: dict[TokenKey, asyncio.Task[Issued]] = {}
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
        ``credential_cache_s``, so the slow hash runs once per client per period.
        """
        account = self.accounts.get(client_id)
        now = self.clock.now()
        if account is None or not self.verified.check(client_id, secret, account.secret_hash, now):
            if account is None:
                encoded = str(await self._run_blocking(dummy_hash, self.config.password_hash_cost))
            else:
                encoded = account.secret_hash
            ok = await self._run_blocking(verify_secret, secret, encoded)
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
        return await asyncio.shield(task)

    def _flight_done(self, key: TokenKey, task: asyncio.Task[Issued]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone

    async def _obtain(self, key: TokenKey) -> Issued:
        """The single flight of ``key``: one upstream apply, or the fallback."""
        cached = self.tokens.get(key)
        now = self.clock.now()
        if self.breaker.state(now) is BreakerState.OPEN:
            return self._fallback(cached, "circuit open", self.breaker.retry_in(now))
        wait = self.bucket.reserve(now, self.config.drain_max_wait_s)
        if wait is None:
            backlog = (1.0 - self.bucket.available(now)) / self.bucket.rate
            return self._fallback(cached, "draining backlog", backlog)
        if wait > 0:
            self.draining += 1
            try:
                await self.clock.sleep(wait)
            finally:
                self.draining -= 1
        now = self.clock.now()
        if not self.breaker.allow(now):
            return self._fallback(cached, "circuit open", self.breaker.retry_in(now))
        now_ms = self.clock.now_ms()
        expire_ms = choose_expire_ms(now_ms, self.config.token_ttl_s)
        self.metrics.upstream_applies.inc()
        try:
            token = await self.upstream.apply(key.request.actions, key.resources, expire_ms)
        except UpstreamError as exc:
            self.breaker.record_failure(self.clock.now())
            self.metrics.upstream_errors.labels("apply", exc.reason).inc()
            log.warning("token apply failed upstream (%s): %s", exc.reason, exc.message)
            return self._fallback(cached, exc.reason, self.breaker.retry_in(self.clock.now()))
        except BaseException:
            self.breaker.release(self.clock.now())
            raise
        self.breaker.record_success(self.clock.now())
        fresh = CachedToken(key, token, expire_ms, now_ms)
        account = self.accounts.get(key.account)
        if account is None or not account.enabled or not is_allowed(account.grants, key.request):
            # Disabled, deleted or narrowed while we were applying: never hand it out.
            await self._drop_and_revoke([fresh], persisted=False)
            raise Forbidden("the account changed while its token was being applied")
        self.store.put_token(fresh)  # committed before anyone is answered
        self._cache_put(fresh)
        return Issued(fresh, "issued")

    def _fallback(self, cached: CachedToken | None, reason: str, retry_in: float) -> Issued:
        """Disaster recovery: the last valid token (stale) or a 503 with Retry-After."""
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

    async def _hash(self, secret: str) -> str:
        return str(await self._run_blocking(hash_secret, secret, self.config.password_hash_cost))

    async def put_account(
        self, client_id: str, body: AccountBody
    ) -> tuple[Account, bool, RevokeReport]:
        """Create or update; tokens the account may no longer hold are revoked."""
        validate_client_id(client_id)
        existing = self.accounts.get(client_id)
        if existing is None and body.secret is None:
            raise BadRequest("a new account needs a secret")
        secret_hash = await self._hash(body.secret) if body.secret is not None else None
        existing = self.accounts.get(client_id)  # may have changed while hashing
        account = self._merge(client_id, existing, secret_hash, body)
        self.store.put_accounts([account])
        self.accounts[client_id] = account
        if existing is not None and existing.secret_hash != account.secret_hash:
            self.verified.forget(client_id)
        report = await self._enforce(account)
        return account, existing is None, report

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

    async def _enforce(self, account: Account) -> RevokeReport:
        drop = [
            t
            for t in self._tokens_of(account.client_id)
            if not account.enabled or not is_allowed(account.grants, t.key.request)
        ]
        return await self._drop_and_revoke(drop)

    async def delete_account(self, client_id: str) -> RevokeReport:
        if client_id not in self.accounts:
            raise NotFound(f"no account {client_id!r}")
        self.store.delete_account(client_id)
        del self.accounts[client_id]
        self.verified.forget(client_id)
        return await self._drop_and_revoke(self._tokens_of(client_id))

    async def bulk_import(self, items: object) -> dict[str, int]:
        """``[{"client_id", "secret", "grants", "enabled"}, ...]``: all valid or none."""
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
        hashes = await asyncio.gather(
            *(self._hash(b.secret) if b.secret is not None else _none() for b in parsed.values())
        )
        merged = []
        created = 0
        for (client_id, body), secret_hash in zip(parsed.items(), hashes, strict=True):
            existing = self.accounts.get(client_id)
            created += existing is None
            merged.append((existing, self._merge(client_id, existing, secret_hash, body)))
        self.store.put_accounts([a for _, a in merged])
        revoked = pending = 0
        for existing, account in merged:
            self.accounts[account.client_id] = account
            if existing is not None and existing.secret_hash != account.secret_hash:
                self.verified.forget(account.client_id)
            if existing is not None:
                report = await self._enforce(account)
                revoked += report.revoked
                pending += report.pending
        return {
            "imported": len(merged),
            "created": created,
            "updated": len(merged) - created,
            "revoked": revoked,
            "pending": pending,
        }

    # -- revocation ------------------------------------------------------------------------------

    async def _drop_and_revoke(
        self, tokens: Sequence[CachedToken], *, persisted: bool = True
    ) -> RevokeReport:
        """Drop from the cache and queue for revocation (one commit), then revoke."""
        if not tokens:
            return RevokeReport(0, 0)
        now_ms = self.clock.now_ms()
        for t in tokens:
            if self.tokens.get(t.key) is t:
                self._cache_drop(t.key)
        if persisted:
            self.store.drop_tokens(tokens, revoke=True, now_ms=now_ms)
        else:
            for t in tokens:
                self.store.add_pending(t.token, t.key.account, t.expire_ms)
        live = [(t.token, t.key.account, t.expire_ms) for t in tokens if t.expire_ms > now_ms]
        return await self._revoke(live)

    async def _revoke(self, items: Iterable[tuple[str, str, int]]) -> RevokeReport:
        items = list(items)
        sem = asyncio.Semaphore(_REVOKE_CONCURRENCY)

        async def one(token: str) -> bool:
            if self.breaker.state(self.clock.now()) is BreakerState.OPEN:
                return False
            async with sem:
                try:
                    await self.upstream.revoke(token)
                except UpstreamError as exc:
                    if exc.reason == "provider" and exc.provider_code in _DEAD_TOKEN_CODES:
                        return True
                    self.metrics.upstream_errors.labels("revoke", exc.reason).inc()
                    return False
            return True

        results = await asyncio.gather(*(one(token) for token, _, _ in items))
        done = [token for (token, _, _), ok in zip(items, results, strict=True) if ok]
        self.store.delete_pending(done)
        failed = len(items) - len(done)
        if done:
            self.metrics.upstream_revokes.labels("ok").inc(len(done))
        if failed:
            self.metrics.upstream_revokes.labels("pending").inc(failed)
            log.warning("%d token revocation(s) failed upstream; will retry", failed)
        return RevokeReport(len(done), failed)

    async def retry_pending(self) -> RevokeReport:
        """Retry queued revocations; expired tokens need none and are forgotten."""
        now_ms = self.clock.now_ms()
        pending = self.store.load_pending()
        expired = [token for token, _, expire_ms in pending if expire_ms <= now_ms]
        self.store.delete_pending(expired)
        return await self._revoke(p for p in pending if p[2] > now_ms)

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
        m.pending_revocations.set(len(self.store.load_pending()))


async def _none() -> None:
    return None
