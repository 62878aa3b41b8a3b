"""The adapter's one error tree (docs/your-appserver.md).

    AdapterError
    ├── AdapterFileError       a mistake in an adapter file: one line naming the file,
    │                          the line when known, and the key
    └── AskError               the AppServer handed out no credentials
        ├── Unauthenticated      it did not accept the client's identity (HTTP 401)
        ├── Refused              it refused what was asked (403, any other 4xx)
        ├── Unavailable          it could not answer now: 429, 5xx, timeout, refused or
        │                        reset connection (``retry_after``: what it asked for)
        └── BadAnswer            a success whose body is not what the adapter says

``Unauthenticated`` and ``Refused`` are *permanent* (asking again cannot help); the
others are *transient*.  Messages never carry a secret or a token.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AdapterError",
    "AdapterFileError",
    "AskError",
    "BadAnswer",
    "Refused",
    "Unauthenticated",
    "Unavailable",
    "kind_of",
]


class AdapterError(Exception):
    """Anything the adapter package raises."""


class AdapterFileError(AdapterError):
    """One mistake in an adapter file: ``file:line: [table] key: what is wrong``."""

    def __init__(self, message: str, *, source: str, line: int | None = None, key: str = ""):
        self.source = source
        self.line = line
        self.key = key
        self.reason = message
        where = source if line is None else f"{source}:{line}"
        prefix = f"{where}: {key}: " if key else f"{where}: "
        super().__init__(prefix + message)


class AskError(AdapterError):
    """The AppServer gave no credentials; ``status`` is its HTTP status, if it answered."""

    permanent: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class Unauthenticated(AskError):
    permanent = True


class Refused(AskError):
    permanent = True


class Unavailable(AskError):
    def __init__(self, message: str, *, status: int | None = None, retry_after: float = 0.0):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class BadAnswer(AskError):
    pass


def kind_of(value: object, *, mapping: str = "an object") -> str:
    """What a value is, for a message: ``a string``, ``an integer``, ``nothing``, ...
    (``mapping``: what a dict is called: a TOML table, a JSON object)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return mapping
    return type(value).__name__
