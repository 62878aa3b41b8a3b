"""The AuthServer's one error tree.

    AuthServerError                     legacy code / OpenAPI Code / HTTP status
    ├── ParameterError                  400  ParameterCheckFailed          400
    │   ├── InvalidParameter            400  InvalidParameter.<Name>       400
    │   ├── MissingParameter            400  MissingParameter              400
    │   ├── UnknownAction               400  InvalidAction.NotFound        404
    │   ├── UnsupportedAction           400  ApiNotSupport                 404
    │   └── InvalidVersion              400  InvalidVersion                400
    ├── UnknownInstance                 400  InstancePermissionCheckFailed 400
    ├── AccessKeyNotFound               407  InvalidAccessKeyId.NotFound   404
    │   └── AccessKeyDisabled           407  InvalidAccessKeyId.Inactive   400
    ├── SignatureMismatch               407  SignatureDoesNotMatch         400
    ├── SignatureNonceUsed              407  SignatureNonceUsed            400
    ├── TimestampExpired                407  InvalidTimeStamp.Expired      400
    ├── TokenGenerationError            409  InvalidParameter.Resources    400
    ├── RevokeFailed                    410  InvalidParameter.Token        400
    │   └── RevokeForbidden             410  PermissionCheckFailed         400
    ├── TokenInvalid                    (query answers; never an HTTP error)
    │   ├── TokenForged                   1
    │   ├── TokenExpired                  2
    │   └── TokenRevoked                  3
    ├── Throttled                       429  Throttling.User               400 (legacy: HTTP 429)
    │   └── ApplyThrottled              429  ApplyTokenOverFlow            400 (legacy: HTTP 429)
    ├── SystemOverloaded                500  SystemOverFlow                500
    ├── ServiceUnavailable              503  ServiceUnavailable            503 (outage fault)
    ├── InjectedFault                   any  any                           any (status/error fault)
    ├── InternalError                   500  InternalError                 500
    ├── NotFound                        404  NotFound                      404 (no such route)
    ├── MethodNotAllowed                405  MethodNotAllowed              405
    └── AdminError                      400  BadRequest                    400 (admin API only)
        ├── AdminNotFound               404  NotFound                      404
        ├── AdminConflict               409  Conflict                      409
        └── AdminForbidden              403  Forbidden                     403

The OpenAPI codes and statuses are the provider's error-code table and its gateway's
(SPEC §3b; docs/fidelity.md gives the sources and marks the mock's own choices, e.g.
``PermissionCheckFailed`` for revoking another account's token).  ``Throttled`` and
``ApplyThrottled`` are what the rate limits (:mod:`.ratelimit`) and the injected
``throttle`` fault raise: the same answer either way.

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

__all__ = [
    "AccessKeyDisabled",
    "AccessKeyNotFound",
    "AdminConflict",
    "AdminError",
    "AdminForbidden",
    "AdminNotFound",
    "ApplyThrottled",
    "AuthServerError",
    "InjectedFault",
    "InternalError",
    "InvalidParameter",
    "InvalidVersion",
    "MethodNotAllowed",
    "MissingParameter",
    "NotFound",
    "ParameterError",
    "RevokeFailed",
    "RevokeForbidden",
    "ServiceUnavailable",
    "SignatureMismatch",
    "SignatureNonceUsed",
    "SystemOverloaded",
    "Throttled",
    "TimestampExpired",
    "TokenExpired",
    "TokenForged",
    "TokenGenerationError",
    "TokenInvalid",
    "TokenRevoked",
    "UnknownAction",
    "UnknownInstance",
    "UnsupportedAction",
]


class AuthServerError(Exception):
    # Class defaults; an instance may carry its own (InvalidParameter, InjectedFault).
    legacy_code: int = 500
    openapi_code: str = "InternalError"
    http_status: int = 500
    legacy_http_status: int = 200

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ParameterError(AuthServerError):
    """A malformed request not tied to one named parameter (body, repeats, ...)."""

    legacy_code = 400
    openapi_code = "ParameterCheckFailed"
    http_status = 400


class InvalidParameter(ParameterError):
    """A named parameter's value breaks its rule: ``InvalidParameter.<Name>``, the name
    as the OpenAPI spells it (``expireTime`` -> ``InvalidParameter.ExpireTime``)."""

    openapi_code = "InvalidParameter"

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter[:1].upper() + parameter[1:]
        self.openapi_code = f"InvalidParameter.{self.parameter}"


class MissingParameter(ParameterError):
    openapi_code = "MissingParameter"


class UnknownAction(ParameterError):
    openapi_code = "InvalidAction.NotFound"
    http_status = 404


class UnsupportedAction(ParameterError):
    """An action of the onsmqtt API that this emulator does not serve."""

    openapi_code = "ApiNotSupport"
    http_status = 404


class UnknownInstance(AuthServerError):
    """The instance does not exist or is not the caller's (tenants never see each other,
    so both answer the same)."""

    legacy_code = 400
    openapi_code = "InstancePermissionCheckFailed"
    http_status = 400


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
    """The token could not be made (it would be too long): too many long resources."""

    legacy_code = 409
    openapi_code = "InvalidParameter.Resources"
    http_status = 400


class RevokeFailed(AuthServerError):
    """The token to revoke is not a token (forged, malformed)."""

    legacy_code = 410
    openapi_code = "InvalidParameter.Token"
    http_status = 400


class RevokeForbidden(RevokeFailed):
    """The token to revoke was issued to another AccessKey or instance."""

    openapi_code = "PermissionCheckFailed"


class TokenInvalid(AuthServerError):
    """A token that is not (or no longer) valid; ``legacy_code`` is the query answer."""

    legacy_code = 1
    openapi_code = "InvalidParameter.Token"
    http_status = 400


class TokenForged(TokenInvalid):
    legacy_code = 1


class TokenExpired(TokenInvalid):
    legacy_code = 2


class TokenRevoked(TokenInvalid):
    legacy_code = 3


class Throttled(AuthServerError):
    """Past a rate limit (SPEC §3b), or an injected ``throttle`` fault."""

    legacy_code = 429
    openapi_code = "Throttling.User"
    http_status = 400
    legacy_http_status = 429


class ApplyThrottled(Throttled):
    """Token applications past their limit: the provider's own code for it."""

    openapi_code = "ApplyTokenOverFlow"


class SystemOverloaded(AuthServerError):
    legacy_code = 500
    openapi_code = "SystemOverFlow"
    http_status = 500
    legacy_http_status = 500


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
        self.legacy_code = legacy_code
        self.openapi_code = openapi_code
        self.http_status = http_status
        self.legacy_http_status = http_status


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
