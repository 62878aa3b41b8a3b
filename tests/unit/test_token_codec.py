import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.shared.protocol import InvalidToken as TokenForged
from sim.shared.protocol.tokens import TokenClaims, TokenCodec, new_key, new_token_id

CLAIMS = TokenClaims(new_token_id(), "dev-ak", "mqtt-dev", frozenset({"R"}), ("a/+",), 10, 1)


def test_roundtrip_and_password_safe():
    codec = TokenCodec({"k1": new_key()}, "k1")
    token = codec.encode(CLAIMS)
    assert "|" not in token
    assert codec.decode(token) == CLAIMS


def test_other_key_rejects():
    token = TokenCodec({"k1": new_key()}, "k1").encode(CLAIMS)
    with pytest.raises(TokenForged):
        TokenCodec({"k1": new_key()}, "k1").decode(token)
    with pytest.raises(TokenForged):
        TokenCodec({"k2": new_key()}, "k2").decode(token)


def test_rotated_keys_still_verify_old_tokens():
    k1 = new_key()
    old = TokenCodec({"k1": k1}, "k1").encode(CLAIMS)
    assert TokenCodec({"k1": k1, "k2": new_key()}, "k2").decode(old) == CLAIMS


def test_tampered_claims_rejected():
    codec = TokenCodec({"k1": new_key()}, "k1")
    raw = bytearray(base64.b64decode(codec.encode(CLAIMS)))
    raw[10] ^= 1
    with pytest.raises(TokenForged):
        codec.decode(base64.b64encode(bytes(raw)).decode())


@given(st.text(max_size=300))
def test_garbage_is_forged_never_a_crash(text):
    codec = TokenCodec({"k1": new_key()}, "k1")
    with pytest.raises(TokenForged):
        codec.decode(text)
