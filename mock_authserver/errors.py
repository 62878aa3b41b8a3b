"""The AuthServer's one error tree.

    AuthServerError                     legacy code / OpenAPI Code / HTTP status
    ├── ParameterError                  400  InvalidParameter           400
    │   ├── MissingParameter            400  MissingParameter           400
    │   ├── UnknownInstance             400  InvalidParameter           404
    │   ├── UnknownAction               400  InvalidAction.NotFound     404
    │   └── InvalidVersion              400  InvalidVersion             400
    ├── AccessKeyNotFound               407  InvalidAccessKeyId.NotFound 404
    │   └── AccessKeyDisabled           407  InvalidAccessKeyId.Inactive 400
    ├── SignatureMismatch               407  SignatureDoesNotMatch      400
    ├── SignatureNonceUsed              407  SignatureNonceUsed         400
    ├── TimestampExpired                407  InvalidTimeStamp.Expired   400
    ├── TokenGenerationError            409  ApplyTokenOverFlow         400
    ├── RevokeFailed                    410  InvalidParameter           400
    ├── TokenInvalid                    (query answers; never an HTTP error)
    │   ├── TokenForged                   1
    │   ├── TokenExpired                  2
    │   └── TokenRevoked                  3
    ├── Throttled                       429  Throttling                 429 (fault injection)
    ├── ServiceUnavailable              503  ServiceUnavailable         503 (outage fault)
    ├── InjectedFault                   any  any                        any (status/error fault)
    ├── InternalError                   500  InternalError              500
    ├── NotFound                        404  NotFound                   404 (no such route)
    ├── MethodNotAllowed                405  MethodNotAllowed           405
    └── AdminError                      400  BadRequest                 400 (admin API only)
        ├── AdminNotFound               404  NotFound                   404
        ├── AdminConflict               409  Conflict                   409
        └── AdminForbidden              403  Forbidden                  403

Each leaf carries its wire codes as class attributes; one middleware renders them in
the wire style of the request (SPEC §3a JSON body, SPEC §3b error document, the admin
API's ``{"code", "message"}``).  The message says what is wrong and is safe to show a
client: never a secret or a trace.

``legacy_http_status`` is the HTTP status of the legacy token API's answer: business
errors (parameter, signature, token state) come as HTTP 200 with the code in the JSON
body, as the provider's legacy API does; server-side failures (throttling, outage,
injected faults, unknown routes) keep their real HTTP status so that a client's
disaster recovery sees them (docs/authserver.md).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessKeyDisabled",
    "AccessKeyNotFound",
    "AdminConflict",
    "AdminError",
    "AdminForbidden",
    "AdminNotFound",
    "AuthServerError",
    "InjectedFault",
    "InternalError",
    "InvalidVersion",
    "MethodNotAllowed",
    "MissingParameter",
    "NotFound",
    "ParameterError",
    "RevokeFailed",
    "ServiceUnavailable",
    "SignatureMismatch",
    "SignatureNonceUsed",
    "Throttled",
    "TimestampExpired",
    "TokenExpired",
    "TokenForged",
    "TokenGenerationError",
    "TokenInvalid",
    "TokenRevoked",
    "UnknownAction",
    "UnknownInstance",
]


class AuthServerError(Exception):
    legacy_code: ClassVar[int] = 500
    openapi_code: ClassVar[str] = "InternalError"
    http_status: ClassVar[int] = 500
    legacy_http_status: ClassVar[int] = 200

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ParameterError(AuthServerError):
    legacy_code = 400
    openapi_code = "InvalidParameter"
    http_status = 400


class MissingParameter(ParameterError):
    openapi_code = "MissingParameter"


class UnknownInstance(ParameterError):
    http_status = 404


class UnknownAction(ParameterError):
    openapi_code = "InvalidAction.NotFound"
    http_status = 404


class InvalidVersion(ParameterError):
    openapi_code = "InvalidVersion"


class AccessKeyNotFound(AuthServerError):
    legacy_code = 407
    openapi_code = "InvalidAccessKeyId.NotFound"
    http_status = 404


class AccessKeyDisabled(AccessKeyNotFound):
    openapi_code = "InvalidAccessKeyId.Inactive"
    http_status = 400


class SignatureMismatch(AuthServerError):
    legacy_code = 407
    openapi_code = "SignatureDoesNotMatch"
    http_status = 400


class SignatureNonceUsed(AuthServerError):
    legacy_code = 407
    openapi_code = "SignatureNonceUsed"
    http_status = 400


class TimestampExpired(AuthServerError):
    legacy_code = 407
    openapi_code = "InvalidTimeStamp.Expired"
    http_status = 400


class TokenGenerationError(AuthServerError):
    legacy_code = 409
    openapi_code = "ApplyTokenOverFlow"
    http_status = 400


class RevokeFailed(AuthServerError):
    legacy_code = 410
    openapi_code = "InvalidParameter"
    http_status = 400


class TokenInvalid(AuthServerError):
    """A token that is not (or no longer) valid; ``legacy_code`` is the query answer."""

    legacy_code = 1
    openapi_code = "InvalidParameter"
    http_status = 400


class TokenForged(TokenInvalid):
    legacy_code = 1


class TokenExpired(TokenInvalid):
    legacy_code = 2


class TokenRevoked(TokenInvalid):
    legacy_code = 3


class Throttled(AuthServerError):
    legacy_code = 429
    openapi_code = "Throttling"
    http_status = 429
    legacy_http_status = 429


class ServiceUnavailable(AuthServerError):
    legacy_code = 503
    openapi_code = "ServiceUnavailable"
    http_status = 503
    legacy_http_status = 503


class InternalError(AuthServerError):
    legacy_http_status = 500


class InjectedFault(AuthServerError):
    """A fault the admin API asked for: its codes are per instance, not per class."""

    def __init__(self, message: str, *, legacy_code: int, openapi_code: str, http_status: int):
        super().__init__(message)
        # Instance attributes shadow the class defaults for this one error.
        self.legacy_code = legacy_code  # type: ignore[misc]
        self.openapi_code = openapi_code  # type: ignore[misc]
        self.http_status = http_status  # type: ignore[misc]
        self.legacy_http_status = http_status  # type: ignore[misc]


class NotFound(AuthServerError):
    legacy_code = 404
    openapi_code = "NotFound"
    http_status = 404
    legacy_http_status = 404


class MethodNotAllowed(AuthServerError):
    legacy_code = 405
    openapi_code = "MethodNotAllowed"
    http_status = 405
    legacy_http_status = 405


class AdminError(AuthServerError):
    legacy_code = 400
    openapi_code = "BadRequest"
    http_status = 400
    legacy_http_status = 400


class AdminNotFound(AdminError):
    legacy_code = 404
    openapi_code = "NotFound"
    http_status = 404
    legacy_http_status = 404


class AdminConflict(AdminError):
    legacy_code = 409
    openapi_code = "Conflict"
    http_status = 409
    legacy_http_status = 409


class AdminForbidden(AdminError):
    legacy_code = 403
    openapi_code = "Forbidden"
    http_status = 403
    legacy_http_status = 403
