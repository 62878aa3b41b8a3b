"""Who is asking: signature, timestamp and nonce checks of both wire styles (pure).

The signing math is :mod:`sim.protocol.signing`; this module adds the server's side:
which parameters are signed, looking up the secret, and (OpenAPI) the separate checks of
timestamp skew and nonce replay.  Timestamps are checked against *real* wall time handed
in by the shell: the provider's SDKs stamp real time even when the server runs a scaled
or manual clock.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime

from sim.protocol.signing import legacy_verify

from .config import AccountSpec
from .errors import (
    ParameterError,
    SignatureMismatch,
    SignatureNonceUsed,
    TimestampExpired,
)
from .ttl import TTLEngine
from .validation import require

__all__ = ["NonceStore", "check_timestamp", "parse_timestamp", "verify_legacy"]


def verify_legacy(
    engine: TTLEngine, params: Mapping[str, str], signed_names: tuple[str, ...]
) -> AccountSpec:
    """The caller's account if ``signature`` matches ``signed_names`` (SPEC §3a)."""
    access_key = require(params, "accessKey")
    signature = require(params, "signature")
    account = engine.account(access_key)
    signed = {name: params[name] for name in signed_names}
    if not legacy_verify(signed, account.secret, signature):
        raise SignatureMismatch("the request signature does not match")
    return account


def parse_timestamp(value: str, name: str = "Timestamp") -> float:
    """ISO 8601 UTC (``2020-04-20T12:00:00Z``, as both SDKs send) to epoch seconds."""
    text = value.strip()
    if len(text) > 40:
        raise ParameterError(f"{name} is not a timestamp")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ParameterError(f"{name} {value[:40]!r} is not an ISO 8601 UTC time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def check_timestamp(stamp: float, wall_now: float, skew_s: float) -> None:
    if not math.isfinite(stamp) or abs(stamp - wall_now) > skew_s:
        raise TimestampExpired(
            f"the request timestamp is more than {int(skew_s // 60)} minutes from server time"
        )


class NonceStore:
    """Nonces seen within the skew window; bounded in size (oldest dropped first).

    A nonce only needs remembering while its request's timestamp is acceptable: after
    ``window_s`` the timestamp check rejects a replay anyway.
    """

    def __init__(self, window_s: float, capacity: int):
        self._window = window_s
        self._capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> wall time first seen

    def __len__(self) -> int:
        return len(self._seen)

    def use(self, key: str, wall_now: float) -> None:
        """Record ``key``; :class:`SignatureNonceUsed` if it was used in the window."""
        self._expire(wall_now)
        if key in self._seen:
            raise SignatureNonceUsed("the signature nonce has been used already")
        self._seen[key] = wall_now
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)

    def _expire(self, wall_now: float) -> None:
        horizon = wall_now - 2 * self._window  # stamps may be up to a window in the future
        while self._seen:
            oldest_key, seen_at = next(iter(self._seen.items()))
            if seen_at >= horizon:
                break
            del self._seen[oldest_key]
