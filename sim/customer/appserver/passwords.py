"""Client secrets: salted slow hashes at rest, and a short-lived cache of verified
credentials so the slow hash is paid once per client per minute, not per request.

Hash format: ``scrypt$<log2 N>$<r>$<p>$<salt b64>$<hash b64>`` (hashlib.scrypt,
16-byte random salt, 32-byte key).  The plaintext is never stored, logged or cached:
the cache is keyed by keyed BLAKE2b(client_id NUL secret) (one C call, faster than
HMAC) with a key that lives only in this process's memory.

Pure apart from :func:`secrets.token_bytes` for salts and the cache key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["VerifiedCache", "dummy_hash", "hash_cost", "hash_secret", "verify_secret"]

_R = 8
_P = 1
_DKLEN = 32


def _scrypt(secret: str, salt: bytes, cost: int, r: int, p: int) -> bytes:
    n = 1 << cost
    return hashlib.scrypt(
        secret.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r + (1 << 20),
        dklen=_DKLEN,
    )


def hash_secret(secret: str, cost: int, *, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = _scrypt(secret, salt, cost, _R, _P)
    b64 = base64.b64encode
    return f"scrypt${cost}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_secret(secret: str, encoded: str) -> bool:
    """Constant-time check of ``secret`` against a :func:`hash_secret` string; a
    malformed hash verifies nothing."""
    try:
        scheme, cost_s, r_s, p_s, salt_b64, hash_b64 = encoded.split("$")
        cost, r, p = int(cost_s), int(r_s), int(p_s)
        if scheme != "scrypt" or not (1 <= cost <= 20 and 1 <= r <= 32 and 1 <= p <= 16):
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(secret, salt, cost, r, p), expected)


def hash_cost(encoded: str) -> int | None:
    """The log2 N a :func:`hash_secret` string was made with; None if it is not one."""
    scheme, _, rest = encoded.partition("$")
    cost, _, _ = rest.partition("$")
    return int(cost) if scheme == "scrypt" and cost.isascii() and cost.isdigit() else None


_DUMMY: dict[int, str] = {}


def dummy_hash(cost: int) -> str:
    """A hash to verify against when the client id is unknown, so an unknown id costs
    the same time as a wrong secret (no account enumeration by timing)."""
    if cost not in _DUMMY:
        _DUMMY[cost] = hash_secret(secrets.token_urlsafe(16), cost)
    return _DUMMY[cost]


@dataclass(frozen=True)
class _Entry:
    client_id: str
    secret_hash: str  # the hash it was verified against: a changed secret misses
    until: float


class VerifiedCache:
    """(client id, secret) pairs verified in the last ``ttl_s`` seconds (bounded LRU)."""

    def __init__(self, ttl_s: float, max_entries: int, *, key: bytes | None = None):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._key = secrets.token_bytes(32) if key is None else key[:64]
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def digest(self, client_id: str, secret: str) -> bytes:
        """The keyed digest a (client id, secret) pair is known by (never the plaintext)."""
        msg = client_id.encode("utf-8") + b"\x00" + secret.encode("utf-8")
        return hashlib.blake2b(msg, key=self._key, digest_size=32).digest()

    def check(self, client_id: str, secret: str, secret_hash: str, now: float) -> bool:
        digest = self.digest(client_id, secret)
        entry = self._entries.get(digest)
        if entry is None:
            return False
        if entry.until <= now or entry.client_id != client_id or entry.secret_hash != secret_hash:
            del self._entries[digest]
            return False
        self._entries.move_to_end(digest)
        return True

    def remember(self, client_id: str, secret: str, secret_hash: str, now: float) -> None:
        digest = self.digest(client_id, secret)
        self._entries[digest] = _Entry(client_id, secret_hash, now + self.ttl_s)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, client_id: str) -> None:
        for digest in [d for d, e in self._entries.items() if e.client_id == client_id]:
            del self._entries[digest]

    def __len__(self) -> int:
        return len(self._entries)
