"""Prometheus metrics of one AppServer, in a registry of its own (several AppServers
may live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from .resilience import BreakerState

__all__ = ["BREAKER_LEVEL", "Metrics"]

#: Gauge value per breaker state.
BREAKER_LEVEL = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "appserver_token_requests",
            "POST /v1/tokens by outcome: cached, issued, stale, bad_request, "
            "unauthorized, forbidden, unavailable, error",
            ["outcome"],
            registry=r,
        )
        self.cache_hits = Counter(
            "appserver_cache_hits", "token asks answered from the cache", registry=r
        )
        self.cache_misses = Counter(
            "appserver_cache_misses", "token asks the cache could not answer", registry=r
        )
        self.upstream_applies = Counter(
            "appserver_upstream_applies", "applies sent to the AuthServer", registry=r
        )
        self.upstream_errors = Counter(
            "appserver_upstream_errors",
            "failed AuthServer calls by operation and reason",
            ["operation", "reason"],
            registry=r,
        )
        self.upstream_revokes = Counter(
            "appserver_upstream_revokes",
            "revokes sent to the AuthServer, by result: ok, gone (dead already), refused "
            "(never possible: dropped), throttled and error (both retried later)",
            ["result"],
            registry=r,
        )
        self.revocations_expired = Counter(
            "appserver_revocations_expired",
            "queued revocations dropped unsent: the token expired first",
            registry=r,
        )
        self.stale_served = Counter(
            "appserver_stale_served", "cached tokens served stale during an outage", registry=r
        )
        self.singleflight_joined = Counter(
            "appserver_singleflight_joined",
            "asks that waited on another ask's apply for the same key",
            registry=r,
        )
        self.secret_verifications = Counter(
            "appserver_secret_verifications",
            "slow secret hashes run to check a client's credentials (the verified cache "
            "could not answer)",
            registry=r,
        )
        self.verification_joined = Counter(
            "appserver_verification_joined",
            "credential checks that waited on an identical check's slow hash",
            registry=r,
        )
        self.breaker_state = Gauge(
            "appserver_breaker_state", "circuit breaker: 0 closed, 1 half-open, 2 open", registry=r
        )
        self.draining = Gauge(
            "appserver_drain_waiting",
            "applies waiting for a slot of the drain rate (the backlog)",
            registry=r,
        )
        self.cached_tokens = Gauge("appserver_cached_tokens", "tokens in the cache", registry=r)
        self.accounts = Gauge("appserver_accounts", "local accounts", registry=r)
        self.pending_revocations = Gauge(
            "appserver_pending_revocations",
            "the revocation queue: revocations not yet settled (queued or in flight)",
            registry=r,
        )

    def set_breaker(self, state: BreakerState) -> None:
        self.breaker_state.set(BREAKER_LEVEL[state])

    def render(self) -> bytes:
        return generate_latest(self.registry)
