"""The reference AppServer (SPEC §5, issue 4).

    config.py      AppServerConfig (frozen, validated)
    errors.py      the error tree
    policy.py      pure: request/grant parsing, ACL, token key, TTL policy
    resilience.py  pure: circuit breaker, jittered Retry-After, drain token bucket
    passwords.py   pure: salted scrypt hashes, cache of verified credentials
    store.py       SQLite (WAL): accounts, token cache, pending revocations
    upstream.py    signed client of the AuthServer's legacy token API
    service.py     the behaviour: authenticate, cache, single-flight, fallback, revoke
    metrics.py     Prometheus registry per app
    openapi.py     the OpenAPI document
    app.py         aiohttp shell (create_app)
    runner.py      run_appserver(config, clock=...)
    cli.py         mqtt-token-sim appserver

Core modules (no aiohttp, no clock reads): policy, resilience, passwords.
"""

from .config import AppServerConfig

__all__ = ["AppServerConfig"]
