"""Who is asking: signature, timestamp and nonce checks of both wire styles (pure).

The signing math is :mod:`sim.shared.protocol.signing`; this module adds the server's side:
which parameters are signed, looking up the secret, and (OpenAPI) the separate checks of
timestamp skew and nonce replay.  Timestamps are checked against *real* wall time handed
in by the shell: the provider's SDKs stamp real time even when the server runs a scaled
or manual clock.
"""

from __future__ import annotations

import hmac
import math
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime

from sim.shared.protocol.signing import (
    legacy_verify,
    parse_v3_authorization,
    rpc_string_to_sign,
    rpc_verify,
    sha256_hex,
    v3_canonical_request,
    v3_verify,
)

from .config import AccountSpec
from .errors import (
    MissingParameter,
    ParameterError,
    SignatureMismatch,
    SignatureNonceUsed,
    TimestampExpired,
)
from .ttl import TTLEngine
from .validation import require

__all__ = [
    "NonceStore",
    "check_timestamp",
    "parse_timestamp",
    "verify_legacy",
    "verify_rpc",
    "verify_v3",
]


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


# -- OpenAPI: V3 ACS3-HMAC-SHA256 and RPC signature v1 (SPEC §3b) ---------------------------

#: Headers a V3 request must sign: otherwise an eavesdropper could swap the action or
#: replay with a fresh nonce.
V3_REQUIRED_SIGNED = (
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
)


def _header(headers: list[tuple[str, str]], name: str) -> str:
    values = [v for k, v in headers if k.lower() == name]
    if not values or not values[0]:
        raise MissingParameter(f"missing header {name!r}")
    if len(values) > 1:
        raise ParameterError(f"header {name!r} is given more than once")
    return values[0]


def verify_v3(
    engine: TTLEngine,
    nonces: NonceStore,
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: list[tuple[str, str]],
    body: bytes,
    wall_now: float,
    skew_s: float,
) -> AccountSpec:
    """The caller's account for a V3-signed request; the three checks in order:
    signature, then timestamp, then nonce (so an unsigned request cannot burn nonces)."""
    try:
        authz = parse_v3_authorization(_header(headers, "authorization"))
    except ValueError as exc:
        raise SignatureMismatch(f"malformed Authorization header: {exc}") from None
    signed = [h.lower() for h in authz.signed_headers]
    for name in V3_REQUIRED_SIGNED:
        _header(headers, name)
        if name not in signed:
            raise SignatureMismatch(f"header {name!r} must be signed")
    payload_hash = _header(headers, "x-acs-content-sha256")
    if not hmac.compare_digest(payload_hash.lower().encode(), sha256_hex(body).encode()):
        raise SignatureMismatch("x-acs-content-sha256 does not match the body")
    account = engine.account(authz.access_key_id)
    canonical = v3_canonical_request(method, path, query, headers, signed, payload_hash)
    if not v3_verify(canonical, account.secret, authz.signature):
        raise SignatureMismatch("the request signature does not match")
    check_timestamp(parse_timestamp(_header(headers, "x-acs-date"), "x-acs-date"), wall_now, skew_s)
    nonces.use(f"{account.access_key_id}\n{_header(headers, 'x-acs-signature-nonce')}", wall_now)
    return account


def verify_rpc(
    engine: TTLEngine,
    nonces: NonceStore,
    *,
    method: str,
    params: Mapping[str, str],
    wall_now: float,
    skew_s: float,
) -> AccountSpec:
    """The caller's account for an RPC v1 request (every parameter signed but
    ``Signature``): signature, then timestamp, then nonce."""
    for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp"):
        require(params, name)
    if params.get("SignatureMethod", "HMAC-SHA1") != "HMAC-SHA1":
        raise ParameterError("SignatureMethod must be HMAC-SHA1")
    if params.get("SignatureVersion", "1.0") != "1.0":
        raise ParameterError("SignatureVersion must be 1.0")
    account = engine.account(params["AccessKeyId"])
    if not rpc_verify(method, params, account.secret, params["Signature"]):
        # The provider's wording: aliyun-python-sdk-core compares the string after the
        # colon with its own to tell a wrong secret (InvalidAccessKeySecret) apart.
        raise SignatureMismatch(
            "Specified signature is not matched with our calculation. server string to"
            f" sign is:{rpc_string_to_sign(method, params)}"
        )
    check_timestamp(parse_timestamp(params["Timestamp"]), wall_now, skew_s)
    nonces.use(f"{account.access_key_id}\n{params['SignatureNonce']}", wall_now)
    return account
