"""Request signing for the three schemes the provider's clients use (SPEC §3).

Each scheme is three small pure steps: canonical string, string to sign, signature.
Verification recomputes and compares with :func:`hmac.compare_digest`; timestamp skew
and nonce replay are separate checks that live with the server (they need state).

* legacy token API (``/token/*``): ``k=v`` pairs with **raw** values, the
  comma-separated values of a multi-valued parameter sorted (``b2,b1`` is signed as
  ``b1,b2``), pairs sorted, joined by ``&``; HMAC-SHA1 keyed with the AccessKeySecret;
  Base64.
* RPC signature v1 (``aliyun-python-sdk-core``): ``METHOD&%2F&`` + percent-encoded
  sorted canonical query; HMAC-SHA1 keyed with ``secret + "&"``; Base64.
* V3 ``ACS3-HMAC-SHA256`` (``alibabacloud-tea-openapi``): canonical request of method,
  URI, sorted encoded query, signed headers and payload hash; its SHA-256 hex is signed
  with HMAC-SHA256; hex.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "LEGACY_APPLY_SIGNED",
    "LEGACY_TOKEN_SIGNED",
    "V3_ALGORITHM",
    "V3Authorization",
    "legacy_sign",
    "legacy_signed_value",
    "legacy_string_to_sign",
    "legacy_verify",
    "parse_v3_authorization",
    "percent_encode",
    "rpc_canonical_query",
    "rpc_sign",
    "rpc_string_to_sign",
    "rpc_verify",
    "sha256_hex",
    "v3_canonical_headers",
    "v3_canonical_query",
    "v3_canonical_request",
    "v3_sign",
    "v3_string_to_sign",
    "v3_verify",
]

#: Parameters covered by the legacy signature, per operation (SPEC §3a).
LEGACY_APPLY_SIGNED = ("actions", "expireTime", "instanceId", "resources", "serviceName")
LEGACY_TOKEN_SIGNED = ("token",)

V3_ALGORITHM = "ACS3-HMAC-SHA256"


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as the provider uses it: only ``A-Za-z0-9-_.~`` stay literal."""
    return quote(value, safe="~", encoding="utf-8")


def _b64_hmac_sha1(key: str, message: str) -> str:
    # hmac.digest: OpenSSL's one-shot HMAC, no Python HMAC object per signature.
    digest = hmac.digest(key.encode("utf-8"), message.encode("utf-8"), "sha1")
    return base64.b64encode(digest).decode("ascii")


def _equal(a: str, b: str) -> bool:
    # Constant-time whatever the inputs; encode so non-ASCII cannot raise.
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


# -- legacy token API -----------------------------------------------------------------


def legacy_signed_value(value: str) -> str:
    """A value as the legacy string to sign has it: the values of a multi-valued
    parameter (``resources``, ``actions``: comma-separated) sorted, still comma-joined.

    The provider's signing rule (SPEC §3a, the token API's "signature calculation"):
    ``paramb=b2,b1,b3`` is signed as ``paramb=b1,b2,b3``.  So a client that sends its
    values in any order but signs them sorted is accepted, and one that signs them in
    wire order (unsorted) is not.
    """
    return ",".join(sorted(value.split(","))) if "," in value else value


def legacy_string_to_sign(params: Mapping[str, str]) -> str:
    """``key=value`` with the raw value (:func:`legacy_signed_value`), pairs sorted,
    joined with ``&``."""
    return "&".join(
        sorted([f"{k}={legacy_signed_value(v) if ',' in v else v}" for k, v in params.items()])
    )


def legacy_sign(params: Mapping[str, str], secret: str) -> str:
    return _b64_hmac_sha1(secret, legacy_string_to_sign(params))


def legacy_verify(params: Mapping[str, str], secret: str, signature: str) -> bool:
    return _equal(legacy_sign(params, secret), signature)


# -- RPC signature v1 ---------------------------------------------------------------------


def rpc_canonical_query(params: Mapping[str, str]) -> str:
    """Sorted ``encode(k)=encode(v)`` pairs; ``Signature`` itself is never signed."""
    return "&".join(
        f"{percent_encode(k)}={percent_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )


def rpc_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    return f"{method.upper()}&%2F&{percent_encode(rpc_canonical_query(params))}"


def rpc_sign(method: str, params: Mapping[str, str], secret: str) -> str:
    return _b64_hmac_sha1(secret + "&", rpc_string_to_sign(method, params))


def rpc_verify(method: str, params: Mapping[str, str], secret: str, signature: str) -> bool:
    return _equal(rpc_sign(method, params, secret), signature)


# -- V3 ACS3-HMAC-SHA256 ----------------------------------------------------------------


def sha256_hex(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def v3_canonical_query(query: Mapping[str, str]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(query.items()))


def v3_canonical_headers(
    headers: Mapping[str, str] | list[tuple[str, str]], signed: list[str]
) -> str:
    """``name:value\\n`` for each signed header, names lower-cased and sorted.

    Repeated headers are joined with ``,`` after sorting, as the SDK does.
    """
    items = headers.items() if isinstance(headers, Mapping) else headers
    values: dict[str, list[str]] = {}
    for name, value in items:
        values.setdefault(name.lower(), []).append(value.strip())
    return "".join(
        f"{name}:{','.join(sorted(values.get(name, [''])))}\n" for name in sorted(signed)
    )


def v3_canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str] | list[tuple[str, str]],
    signed_headers: list[str],
    payload_hash: str,
) -> str:
    signed = sorted(h.lower() for h in signed_headers)
    return "\n".join(
        [
            method.upper(),
            quote(path or "/", safe="/~", encoding="utf-8"),
            v3_canonical_query(query),
            v3_canonical_headers(headers, signed),
            ";".join(signed),
            payload_hash,
        ]
    )


def v3_string_to_sign(canonical_request: str) -> str:
    return f"{V3_ALGORITHM}\n{sha256_hex(canonical_request.encode('utf-8'))}"


def v3_sign(canonical_request: str, secret: str) -> str:
    message = v3_string_to_sign(canonical_request).encode("utf-8")
    return hmac.digest(secret.encode("utf-8"), message, "sha256").hex()


def v3_verify(canonical_request: str, secret: str, signature: str) -> bool:
    return _equal(v3_sign(canonical_request, secret), signature.lower())


@dataclass(frozen=True)
class V3Authorization:
    access_key_id: str
    signed_headers: list[str]
    signature: str

    def render(self) -> str:
        return (
            f"{V3_ALGORITHM} Credential={self.access_key_id},"
            f"SignedHeaders={';'.join(self.signed_headers)},Signature={self.signature}"
        )


def parse_v3_authorization(header: str) -> V3Authorization:
    """Parse ``ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..``.

    Raises :class:`ValueError` naming what is wrong.
    """
    algorithm, _, rest = header.strip().partition(" ")
    # The messages never quote the header: a client that sent a credential in the wrong
    # shape (Basic, a bare key) must not find it echoed in an error body or a log.
    if algorithm != V3_ALGORITHM:
        raise ValueError(f"unsupported signature algorithm (use {V3_ALGORITHM})")
    fields: dict[str, str] = {}
    for i, part in enumerate(rest.split(",")):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise ValueError(f"malformed Authorization field #{i + 1} (not Name=value)")
        fields[key] = value
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise ValueError(f"Authorization lacks {', '.join(missing)}")
    return V3Authorization(
        access_key_id=fields["Credential"],
        signed_headers=[h for h in fields["SignedHeaders"].split(";") if h],
        signature=fields["Signature"],
    )
