"""A token has one spelling: every other Base64 text of the same bytes is refused
(docs/CONTRACTS.md "Tokens"; a second spelling would be a second cache entry and a
second revocation key for one token)."""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.shared.protocol import InvalidToken
from sim.shared.protocol.tokens import TokenClaims, TokenCodec

CODEC = TokenCodec({"k1": b"k" * 32}, "k1")
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

claims = st.builds(
    TokenClaims,
    token_id=st.text("abcdefXYZ0123-_", min_size=1, max_size=20),
    access_key_id=st.just("dev-ak"),
    instance_id=st.just("mqtt-dev"),
    actions=st.sampled_from([frozenset("R"), frozenset("W"), frozenset("RW")]),
    # Lengths vary, so tokens end with no, one and two padding characters.
    resources=st.lists(st.text("ab/+#", min_size=1, max_size=9), min_size=1, max_size=4).map(tuple),
    expire_ms=st.integers(0, 2**41),
    issued_ms=st.integers(0, 2**41),
)


def _same_bytes(variant: str, token: str) -> bool:
    """Does a lenient decoder read ``variant`` as ``token``'s bytes?"""
    try:
        return base64.b64decode(variant + "==") == base64.b64decode(token)
    except (binascii.Error, ValueError):
        return False


def _unused_bits_variants(token: str) -> list[str]:
    """The token with non-zero bits in the unused low bits of its last Base64 digit."""
    pad = len(token) - len(token.rstrip("="))
    if pad == 0:
        return []
    unused = 4 if pad == 2 else 2
    i = len(token) - pad - 1
    value = B64.index(token[i])
    return [
        token[:i] + B64[value | extra] + token[i + 1 :]
        for extra in range(1, 1 << unused)
        if value | extra != value
    ]


def variants(token: str, data: st.DataObject) -> list[str]:
    out = [token + "=" * data.draw(st.integers(1, 4), label="extra padding")]
    stripped = token.rstrip("=")
    if stripped != token:
        out += [stripped, stripped + "=" * 3, token[:-1]]
    at = data.draw(st.integers(0, len(token)), label="whitespace at")
    space = data.draw(st.sampled_from([" ", "\n", "\r\n", "\t"]), label="whitespace")
    out.append(token[:at] + space + token[at:])
    out.append(token + "\n")
    out += _unused_bits_variants(token)
    out.append(token.replace("+", "-").replace("/", "_"))  # the URL-safe alphabet
    return [v for v in dict.fromkeys(out) if v != token]


@given(claims, st.data())
def test_every_other_spelling_of_a_genuine_token_is_refused(
    claims: TokenClaims, data: st.DataObject
) -> None:
    token = CODEC.encode(claims)
    assert CODEC.decode(token) == claims  # the genuine spelling passes
    for variant in variants(token, data):
        with pytest.raises(InvalidToken):
            CODEC.decode(variant)


def test_the_variants_are_the_same_token_to_a_lenient_decoder() -> None:
    """The property above is not vacuous: before the codec checked the spelling, these
    decoded to the genuine bytes (the MAC matched) and were accepted."""
    for resources in (("a",), ("ab",), ("abc",)):  # all three padding cases
        token = CODEC.encode(
            TokenClaims("t1", "dev-ak", "mqtt-dev", frozenset("R"), resources, 1, 0)
        )
        extra = [token + "=", *_unused_bits_variants(token)]
        assert all(_same_bytes(v, token) for v in extra)
        assert len(extra) > 1 or not token.endswith("=")
