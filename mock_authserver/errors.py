"""The AuthServer's one error tree.

    AuthServerError                     legacy code / OpenAPI Code / HTTP status
    ├── ParameterError                  400  InvalidParameter           400
    │   ├── MissingParameter            400  MissingParameter           400
    │   └── UnknownInstance             400  InvalidParameter           404
    ├── AccessKeyNotFound               407  InvalidAccessKeyId.NotFound 404
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
    └── InternalError                   500  InternalError              500 (fault injection)

Each leaf carries its wire codes as class attributes; one middleware renders them in
the wire style of the request (SPEC §3a JSON body, SPEC §3b error document).  The
message says what is wrong and is safe to show a client: never a secret or a trace.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessKeyNotFound",
    "AuthServerError",
    "InternalError",
    "MissingParameter",
    "ParameterError",
    "RevokeFailed",
    "SignatureMismatch",
    "SignatureNonceUsed",
    "Throttled",
    "TimestampExpired",
    "TokenExpired",
    "TokenForged",
    "TokenGenerationError",
    "TokenInvalid",
    "TokenRevoked",
    "UnknownInstance",
]


class AuthServerError(Exception):
    legacy_code: ClassVar[int] = 500
    openapi_code: ClassVar[str] = "InternalError"
    http_status: ClassVar[int] = 500

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


class AccessKeyNotFound(AuthServerError):
    legacy_code = 407
    openapi_code = "InvalidAccessKeyId.NotFound"
    http_status = 404


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


class InternalError(AuthServerError):
    pass
