"""``$SYS`` topics of token authentication and their payloads (SPEC §4)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from .credentials import TokenType
from .errors import InvalidPayload

__all__ = [
    "MAX_UPLOAD_BYTES",
    "SYS_EXPIRE_NOTICE",
    "SYS_INVALID_NOTICE",
    "SYS_UPLOAD_TOKEN",
    "ExpireNotice",
    "InvalidCode",
    "InvalidNotice",
    "UploadToken",
]

SYS_UPLOAD_TOKEN = "$SYS/uploadToken"  # noqa: S105 - a topic, not a secret
SYS_EXPIRE_NOTICE = "$SYS/tokenExpireNotice"
SYS_INVALID_NOTICE = "$SYS/tokenInvalidNotice"
MAX_UPLOAD_BYTES = 64 * 1024


class InvalidCode(IntEnum):
    """Codes of ``$SYS/tokenInvalidNotice``."""

    ACCOUNT_INVALID = -1
    FORGED = 1
    EXPIRED = 2
    REVOKED = 3
    RESOURCE_MISMATCH = 4
    PERMISSION_MISMATCH = 5
    BAD_SIGNATURE = 8


def _load(payload: bytes, what: str) -> dict[str, Any]:
    if len(payload) > MAX_UPLOAD_BYTES:
        raise InvalidPayload(f"{what} payload is larger than {MAX_UPLOAD_BYTES} bytes")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidPayload(f"{what} payload is not a JSON object") from None
    if not isinstance(data, dict):
        raise InvalidPayload(f"{what} payload is not a JSON object")
    return data


def _type(data: dict[str, Any], what: str) -> TokenType:
    value = data.get("type")
    if not isinstance(value, str):
        raise InvalidPayload(f"{what} needs a string 'type' of R, W or RW")
    try:
        return TokenType(value)
    except ValueError:
        raise InvalidPayload(f"{what} 'type' must be R, W or RW, got {value[:10]!r}") from None


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class UploadToken:
    token: str
    type: TokenType

    def encode(self) -> bytes:
        return _dump({"token": self.token, "type": self.type.value})

    @classmethod
    def parse(cls, payload: bytes) -> UploadToken:
        """``{"token": ..., "type": ...}``; the key ``Token`` (as the provider's English
        docs spell it) is the same field, and both at once are ambiguous (SPEC §4)."""
        data = _load(payload, "uploadToken")
        if "token" in data and "Token" in data:
            raise InvalidPayload("uploadToken has both 'token' and 'Token': send one")
        token = data.get("token", data.get("Token"))
        if not isinstance(token, str) or not token:
            raise InvalidPayload("uploadToken needs a non-empty string 'token'")
        return cls(token, _type(data, "uploadToken"))


@dataclass(frozen=True)
class ExpireNotice:
    expire_ms: int
    type: TokenType

    def encode(self) -> bytes:
        return _dump({"expireTime": self.expire_ms, "type": self.type.value})

    @classmethod
    def parse(cls, payload: bytes) -> ExpireNotice:
        data = _load(payload, "tokenExpireNotice")
        expire = data.get("expireTime")
        if not isinstance(expire, int) or isinstance(expire, bool):
            raise InvalidPayload("tokenExpireNotice needs an integer 'expireTime'")
        return cls(expire, _type(data, "tokenExpireNotice"))


@dataclass(frozen=True)
class InvalidNotice:
    code: InvalidCode
    type: TokenType | None = None

    def encode(self) -> bytes:
        return _dump({"code": int(self.code), "type": self.type.value if self.type else None})

    @classmethod
    def parse(cls, payload: bytes) -> InvalidNotice:
        data = _load(payload, "tokenInvalidNotice")
        code = data.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            raise InvalidPayload("tokenInvalidNotice needs an integer 'code'")
        try:
            parsed = InvalidCode(code)
        except (ValueError, TypeError):
            raise InvalidPayload(f"tokenInvalidNotice has unknown code {code!r}") from None
        kind = None if data.get("type") is None else _type(data, "tokenInvalidNotice")
        return cls(parsed, kind)
