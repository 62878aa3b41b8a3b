"""The client SDK's one error tree.

    SdkError
    ├── TokenRequestError          the AppServer did not hand out a token
    │   ├── BadCredentials           401: wrong client id / secret, or account disabled
    │   ├── Forbidden                403: asked for more than the account's grants
    │   ├── AppServerUnavailable     503 (with ``retry_after``), 5xx, timeout, refused
    │   └── BadAppServerAnswer       a 200 whose body is not what SPEC §5 promises
    ├── ConnectFailed              the MQTT connection could not be made
    │   ├── NotAuthorized            CONNACK 4 (bad username/password) or 5 (not authorized)
    │   ├── ConnackRefused           any other CONNACK refusal (1, 2, 3)
    │   └── NetworkError             TCP refused/reset/timeout before a CONNACK
    ├── ClientRefused              the client gave up: the AppServer refused it for good
    ├── NotConnected               publish/subscribe while there is no session
    └── UnsupportedGmqtt           (also an ImportError) the installed gmqtt lacks a private
                                   name the transport relies on: raised at import

``BadCredentials`` and ``Forbidden`` are *permanent* (retrying cannot help);
everything else is *transient* and answered with backoff.  Messages never carry a
secret or a token.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AppServerUnavailable",
    "BadAppServerAnswer",
    "BadCredentials",
    "ClientRefused",
    "ConnackRefused",
    "ConnectFailed",
    "Forbidden",
    "NetworkError",
    "NotAuthorized",
    "NotConnected",
    "SdkError",
    "TokenRequestError",
    "UnsupportedGmqtt",
]


class SdkError(Exception):
    permanent: ClassVar[bool] = False


class TokenRequestError(SdkError):
    status: int | None = None


class BadCredentials(TokenRequestError):
    permanent = True
    status = 401


class Forbidden(TokenRequestError):
    permanent = True
    status = 403


class AppServerUnavailable(TokenRequestError):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float = 0.0):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class BadAppServerAnswer(TokenRequestError):
    pass


class ConnectFailed(SdkError):
    pass


class NotAuthorized(ConnectFailed):
    """CONNACK return code 4 or 5: the broker refused the credentials (SPEC §4)."""

    def __init__(self, message: str, *, return_code: int):
        super().__init__(message)
        self.return_code = return_code


class ConnackRefused(ConnectFailed):
    def __init__(self, message: str, *, return_code: int):
        super().__init__(message)
        self.return_code = return_code


class NetworkError(ConnectFailed):
    pass


class ClientRefused(SdkError):
    permanent = True


class NotConnected(SdkError):
    pass


class UnsupportedGmqtt(SdkError, ImportError):
    """gmqtt changed a private name the transport relies on
    (:mod:`sim.customer.client.gmqtt_private`); pyproject.toml pins the version it was
    checked against."""

    permanent = True
