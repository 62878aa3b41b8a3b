"""The token codec: opaque, unforgeable, verifiable offline (SPEC §3c).

A token is ``Base64(version | len(kid) | kid | claims | mac)`` where ``claims`` is
compact JSON and ``mac = HMAC-SHA256(key[kid], everything before it)[:16]``.  Anyone
holding the key (the AuthServer, and every broker it shares the key with) can check a
token without a round trip; nobody without it can make one.  The standard Base64
alphabet has no ``|``, so a token fits the CONNECT password format as it is.

A token has exactly one spelling: :meth:`TokenCodec.decode` refuses any other Base64 text
of the same bytes (padding added or missing, unused bits set).

Expiry and revocation are *not* the codec's business: they are state, kept by the TTL
engine (the AuthServer's TTL engine) and, in the broker, by the revocation feed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InvalidToken

__all__ = ["MAX_TOKEN_CHARS", "TokenClaims", "TokenCodec", "new_key", "new_token_id"]

_VERSION = 1
_MAC_BYTES = 16
MAX_TOKEN_CHARS = 16_384


def new_key() -> bytes:
    return secrets.token_bytes(32)


def new_token_id() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class TokenClaims:
    token_id: str
    access_key_id: str
    instance_id: str
    actions: frozenset[str]
    resources: tuple[str, ...]
    expire_ms: int
    issued_ms: int

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.token_id,
            "ak": self.access_key_id,
            "inst": self.instance_id,
            "act": sorted(self.actions),
            "res": list(self.resources),
            "exp": self.expire_ms,
            "iat": self.issued_ms,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> TokenClaims:
        act, res = data["act"], data["res"]
        exp, iat = data["exp"], data["iat"]
        if not (isinstance(act, list) and isinstance(res, list)):
            raise TypeError("claims")
        if not (isinstance(exp, int) and isinstance(iat, int)):
            raise TypeError("claims")
        return cls(
            token_id=str(data["id"]),
            access_key_id=str(data["ak"]),
            instance_id=str(data["inst"]),
            actions=frozenset(str(a) for a in act),
            resources=tuple(str(r) for r in res),
            expire_ms=exp,
            issued_ms=iat,
        )


class TokenCodec:
    """Issues and checks tokens with a set of keys; new tokens use ``current``."""

    def __init__(self, keys: Mapping[str, bytes], current: str):
        if current not in keys:
            raise ValueError("the current key id must be one of the keys")
        if not 0 < len(current.encode()) < 256:
            raise ValueError("a key id is 1 to 255 bytes")
        self._keys = dict(keys)
        self._current = current

    @property
    def current_key_id(self) -> str:
        return self._current

    def encode(self, claims: TokenClaims) -> str:
        kid = self._current.encode()
        body = json.dumps(claims.to_json(), separators=(",", ":"), sort_keys=True).encode()
        head = bytes([_VERSION, len(kid)]) + kid + body
        mac = hmac.digest(self._keys[self._current], head, "sha256")[:_MAC_BYTES]
        return base64.b64encode(head + mac).decode("ascii")

    def decode(self, token: str) -> TokenClaims:
        """Check the MAC and return the claims; :class:`InvalidToken` otherwise."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise InvalidToken("token is not a token")
        try:
            text = token.encode("ascii")
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise InvalidToken("token is not a token") from None
        # One spelling per token: Base64 decoding forgives extra or missing padding and
        # non-zero unused bits, so a token is accepted only as :meth:`encode` wrote it
        # (else one token has many texts: many cache entries, many revocation keys).
        if not hmac.compare_digest(binascii.b2a_base64(raw, newline=False), text):
            raise InvalidToken("token is not a token")
        if len(raw) < 2 + _MAC_BYTES or raw[0] != _VERSION:
            raise InvalidToken("token is not a token")
        kid_len = raw[1]
        head, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(head) < 2 + kid_len:
            raise InvalidToken("token is not a token")
        kid = head[2 : 2 + kid_len].decode("utf-8", "replace")
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("token was not issued here")
        expected = hmac.digest(key, head, "sha256")[:_MAC_BYTES]
        if not hmac.compare_digest(expected, mac):
            raise InvalidToken("token signature does not match")
        try:
            return TokenClaims.from_json(json.loads(head[2 + kid_len :]))
        except (ValueError, KeyError, TypeError):  # a key holder wrote nonsense
            raise InvalidToken("token claims are malformed") from None
