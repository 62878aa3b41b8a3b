"""Configuration of the reference AppServer: one frozen, validated dataclass.

Built once (from CLI flags in :mod:`sim.customer.appserver.cli`, or directly in tests and the
stack); every field changes behaviour and is read by exactly one place, named in its
comment.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from sim.shared.devaccount import DEV_ACCESS_KEY, DEV_INSTANCE, DEV_SECRET_KEY
from sim.shared.httplimits import HttpLimits

from .errors import ConfigError
from .policy import MAX_TTL_S, MIN_TTL_S
from .revocation import PROVIDER_REVOKE_LIMITS, RevokeApi, RevokeLimit

__all__ = ["AppServerConfig"]

_NAME = re.compile(r"[A-Za-z0-9_\-.]{1,128}")


@dataclass(frozen=True)
class AppServerConfig:
    # -- where it listens (runner) --------------------------------------------------
    host: str = "127.0.0.1"
    #: TCP port; 0 picks a free one.
    port: int = 18081
    # -- the AuthServer and the cloud account it applies with (upstream, service) --
    #: Base URL of the AuthServer's legacy token API (``/token/apply`` lives under it).
    authserver_url: str = "http://127.0.0.1:18080"
    access_key: str = DEV_ACCESS_KEY
    secret_key: str = DEV_SECRET_KEY
    #: The MQTT instance tokens are applied for; also the username's instance.
    instance_id: str = DEV_INSTANCE
    # -- storage (store) --------------------------------------------------------------
    #: Directory of the SQLite database ``appserver.sqlite3``; ``None`` keeps
    #: everything in memory (nothing survives a restart).
    data_dir: Path | None = None
    #: Optional JSON file ``{"accounts": [...]}`` (the bulk-import shape) upserted at
    #: start-up (app).
    accounts_file: Path | None = None
    # -- token policy (policy, service) --------------------------------------------------
    #: Lifetime asked for each new token; kept within [60 s, 30 days] (SPEC §3a).
    token_ttl_s: float = 3600.0
    #: A cached token is handed out again only while it has more life than this.
    refresh_margin_s: float = 300.0
    # -- disaster recovery (upstream, service) -------------------------------------------
    #: Total time allowed for one AuthServer call (real seconds: it is a network wait).
    upstream_timeout_s: float = 5.0
    #: Consecutive upstream failures that open the circuit breaker.
    breaker_failures: int = 5
    #: How long the breaker stays open before a half-open probe (virtual seconds).
    breaker_open_s: float = 30.0
    #: Relative jitter added to ``breaker_open_s`` so AppServers do not probe in step.
    breaker_jitter: float = 0.2
    #: Base of the ``Retry-After`` of a 503 (seconds)...
    retry_after_s: float = 5.0
    #: ...plus up to this fraction of it, at random, so clients do not retry in step.
    retry_after_jitter: float = 0.5
    #: Upstream applies per second at most (token bucket): a recovering AuthServer
    #: sees the backlog drain at this rate, not a stampede.
    drain_rate_per_s: float = 50.0
    #: Applies allowed at once above the rate (bucket size).
    drain_burst: int = 20
    #: A request waits at most this long for an apply slot, then gets its stale token
    #: or a 503.
    drain_max_wait_s: float = 2.0
    #: Serve the last valid cached token (``"stale": true``) when the AuthServer fails.
    serve_stale: bool = True
    # -- revocation (revocation, revoker, upstream) ---------------------------------------
    #: Which API revokes: ``"openapi"`` (``RevokeToken``, V3-signed, 5/s per account) or
    #: ``"legacy"`` (``/token/revoke``, 1/min per account) -- SPEC §3b; why the default
    #: is the OpenAPI: docs/appserver.md "Revocation queue".
    revoke_api: RevokeApi = "openapi"
    #: Base URL of the OpenAPI endpoint (``RevokeToken`` at its ``/``); ``None``: the
    #: ``authserver_url`` (the mock serves both styles on one port).
    openapi_url: str | None = None
    #: Revokes sent at most per ``revoke_window_s``; ``None``: the provider's documented
    #: limit of ``revoke_api`` (5 per 1 s, or 1 per 60 s).
    revoke_limit: int | None = None
    revoke_window_s: float | None = None
    #: Backoff of a revoke that failed (timeout, refused connection, 5xx): jittered,
    #: doubling from this (virtual seconds).  A throttled revoke backs off from the
    #: limit's window instead.
    revoke_retry_s: float = 30.0
    #: Cap of that backoff.
    revoke_retry_max_s: float = 600.0
    # -- client authentication (passwords) ----------------------------------------------------
    #: scrypt cost: N = 2**cost.  14 (16 MiB, tens of ms) for production-like runs;
    #: fleets of thousands of simulated accounts may lower it.
    password_hash_cost: int = 14
    #: How long a verified (client id, secret) pair skips the slow hash.
    credential_cache_s: float = 60.0
    credential_cache_size: int = 100_000
    # -- HTTP (app) ---------------------------------------------------------------------------
    #: Largest request body accepted (bulk imports included).
    max_body_bytes: int = 4 * 1024 * 1024
    #: Admin routes answer non-loopback peers too (default: loopback only).
    admin_remote: bool = False
    #: Header, body and idle time a connection may take (runner; real seconds;
    #: --header-timeout, --body-timeout, --idle-timeout; docs/appserver.md "Security").
    http: HttpLimits = field(default_factory=HttpLimits)
    #: Seed of the jitter generator (``None``: from the OS); makes runs repeatable.
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.data_dir is not None and not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.accounts_file is not None and not isinstance(self.accounts_file, Path):
            object.__setattr__(self, "accounts_file", Path(self.accounts_file))
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.name} must be a finite number, got {value!r}")
        if not self.host:
            raise ConfigError("host must not be empty")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be within 0..65535, got {self.port}")
        url = urlsplit(self.authserver_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(f"authserver_url must be an http(s) URL, got {self.authserver_url!r}")
        for name in ("access_key", "instance_id"):
            if not _NAME.fullmatch(getattr(self, name)):
                raise ConfigError(f"{name} must be 1-128 of A-Z a-z 0-9 _ - .")
        if not self.secret_key:
            raise ConfigError("secret_key must not be empty")
        if not MIN_TTL_S <= self.token_ttl_s <= MAX_TTL_S:
            raise ConfigError(
                f"token_ttl_s must be within [{MIN_TTL_S}, {MAX_TTL_S}] seconds "
                f"(SPEC §3a), got {self.token_ttl_s}"
            )
        if not 0 <= self.refresh_margin_s < self.token_ttl_s:
            raise ConfigError(
                "refresh_margin_s must be >= 0 and below token_ttl_s, else no token "
                "would ever be reused"
            )
        positive = (
            "upstream_timeout_s",
            "breaker_open_s",
            "retry_after_s",
            "drain_rate_per_s",
            "revoke_retry_s",
            "credential_cache_s",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("breaker_failures", "drain_burst", "credential_cache_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("breaker_jitter", "retry_after_jitter", "drain_max_wait_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 1 <= self.password_hash_cost <= 20:
            raise ConfigError(
                f"password_hash_cost must be within 1..20, got {self.password_hash_cost}"
            )
        if self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes must be >= 1024, got {self.max_body_bytes}")
        if self.revoke_api not in PROVIDER_REVOKE_LIMITS:
            raise ConfigError(f"revoke_api must be 'openapi' or 'legacy', got {self.revoke_api!r}")
        if self.openapi_url is not None:
            url = urlsplit(self.openapi_url)
            if url.scheme not in ("http", "https") or not url.netloc:
                raise ConfigError(f"openapi_url must be an http(s) URL, got {self.openapi_url!r}")
        if self.revoke_limit is not None and (
            isinstance(self.revoke_limit, bool)
            or not isinstance(self.revoke_limit, int)
            or self.revoke_limit < 1
        ):
            raise ConfigError(f"revoke_limit must be an integer >= 1, got {self.revoke_limit!r}")
        if self.revoke_window_s is not None and not self.revoke_window_s > 0:
            raise ConfigError(f"revoke_window_s must be > 0, got {self.revoke_window_s}")
        if self.revoke_retry_max_s < self.revoke_retry_s:
            raise ConfigError("revoke_retry_max_s must be >= revoke_retry_s")
        if not isinstance(self.http, HttpLimits):
            raise ConfigError(f"http must be an HttpLimits, got {self.http!r}")
        for name in ("serve_stale", "admin_remote"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be a bool, got {getattr(self, name)!r}")

    @property
    def revoke_rate(self) -> RevokeLimit:
        """The revoke limit in force: the provider's for ``revoke_api`` unless set."""
        documented = PROVIDER_REVOKE_LIMITS[self.revoke_api]
        return RevokeLimit(
            self.revoke_limit if self.revoke_limit is not None else documented.count,
            self.revoke_window_s if self.revoke_window_s is not None else documented.window_s,
        )

    @property
    def revoke_url(self) -> str:
        """Where revokes go: the OpenAPI endpoint, or the legacy token API's base."""
        if self.revoke_api == "openapi" and self.openapi_url is not None:
            return self.openapi_url
        return self.authserver_url

    @property
    def db_path(self) -> Path | None:
        return None if self.data_dir is None else self.data_dir / "appserver.sqlite3"
