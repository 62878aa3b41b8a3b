"""The AppServer's one error tree.

    AppServerError                 HTTP  error code
    ├── ConfigError                 --   (raised at start-up, never rendered)
    ├── BadRequest                  400  bad_request
    ├── Unauthorized                401  unauthorized      (+ WWW-Authenticate)
    ├── Forbidden                   403  forbidden
    │   └── AccountDisabled         403  account_disabled
    ├── NotFound                    404  not_found
    ├── UpstreamError               502  upstream_error    (the AuthServer failed)
    └── ServiceUnavailable          503  unavailable       (+ Retry-After)

Each leaf carries its HTTP status and wire code as class attributes; one middleware
(:mod:`sim.customer.appserver.app`) renders them as ``{"error": code, "message": ...}``.
Messages are safe to show a client: never a secret, a token or a trace.

:class:`UpstreamError` is the single type every failure of the AuthServer becomes
(error answer, HTTP error status, timeout, refused or reset connection, garbage); the
service turns it into a stale token or a :class:`ServiceUnavailable`, so clients only
see it if something slipped through.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccountDisabled",
    "AppServerError",
    "BadRequest",
    "ConfigError",
    "Forbidden",
    "NotFound",
    "ServiceUnavailable",
    "Unauthorized",
    "UpstreamError",
]


class AppServerError(Exception):
    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigError(AppServerError, ValueError):
    """An invalid configuration value; the message names the field."""


class BadRequest(AppServerError):
    http_status = 400
    code = "bad_request"


class Unauthorized(AppServerError):
    http_status = 401
    code = "unauthorized"


class Forbidden(AppServerError):
    http_status = 403
    code = "forbidden"


class AccountDisabled(Forbidden):
    code = "account_disabled"


class NotFound(AppServerError):
    http_status = 404
    code = "not_found"


class UpstreamError(AppServerError):
    """The AuthServer did not give a usable answer.

    ``reason`` is one of ``timeout``, ``connect`` (refused/unreachable), ``reset``,
    ``http`` (an HTTP error status), ``provider`` (an error answer: ``provider_code``
    holds a legacy code, ``error_code`` an OpenAPI ``Code``), ``throttled`` (the
    AuthServer throttled the call: SPEC §3b rate limits), ``protocol`` (unparseable
    answer).
    """

    http_status = 502
    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        provider_code: int | None = None,
        error_code: str | None = None,
    ):
        super().__init__(message)
        self.reason = reason
        self.provider_code = provider_code
        self.error_code = error_code


class ServiceUnavailable(AppServerError):
    http_status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
