"""The reference AppServer (SPEC §5; docs/appserver.md).

    config.py      AppServerConfig (frozen, validated)
    errors.py      the error tree
    policy.py      pure: request/grant parsing, ACL, token key, TTL policy
    resilience.py  pure: circuit breaker, jittered Retry-After, drain token bucket
    revocation.py  pure: revoke limits, send window, backoff, the queue in memory
    passwords.py   pure: salted scrypt hashes, cache of verified credentials
    store.py       SQLite (WAL): accounts, token cache, revocation queue
    upstream.py    signed clients of the AuthServer: legacy token API, OpenAPI RevokeToken
    service.py     the behaviour: authenticate, cache, single-flight, fallback, accounts
    revoker.py     the revocation queue's background drain
    metrics.py     Prometheus registry per app
    openapi.py     the OpenAPI document
    app.py         aiohttp shell (create_app)
    runner.py      run_appserver(config, clock=...)
    cli.py         mqtt-token-sim appserver

Core modules (no aiohttp, no clock reads): policy, resilience, revocation, passwords.
"""

from .config import AppServerConfig

__all__ = ["AppServerConfig"]
