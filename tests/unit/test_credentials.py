import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.shared.protocol import (
    ExpireNotice,
    InvalidCode,
    InvalidCredentials,
    InvalidNotice,
    InvalidPayload,
    TokenType,
    UploadToken,
    build_token_password,
    parse_actions,
    parse_token_password,
    parse_username,
    signature_password,
    token_type_of,
    validate_client_id,
)


def test_username_roundtrip():
    u = parse_username("Token|dev-ak|mqtt-dev")
    assert (u.mode, u.access_key_id, u.instance_id) == ("Token", "dev-ak", "mqtt-dev")
    assert u.render() == "Token|dev-ak|mqtt-dev"
    assert parse_username("Signature|ak|i").mode == "Signature"


@pytest.mark.parametrize("bad", [None, "", "Token|ak", "Foo|ak|i", "Token||i", "Token|a|b|c"])
def test_username_rejects(bad):
    with pytest.raises(InvalidCredentials):
        parse_username(bad)


def test_password_pairs_any_order():
    assert parse_token_password("R|t1|W|t2") == {TokenType.R: "t1", TokenType.W: "t2"}
    assert parse_token_password(b"W|t2|R|t1") == {TokenType.W: "t2", TokenType.R: "t1"}
    assert parse_token_password("RW|t3") == {TokenType.RW: "t3"}
    assert build_token_password({TokenType.RW: "x"}) == "RW|x"


@pytest.mark.parametrize("bad", [None, "", "R", "R|", "X|t", "R|a|R|b", "R|a|W", b"\xff|x"])
def test_password_rejects(bad):
    with pytest.raises(InvalidCredentials):
        parse_token_password(bad)


@given(st.text(max_size=200))
def test_password_parser_only_raises_its_own_error(text):
    try:
        tokens = parse_token_password(text)
    except InvalidCredentials:
        return
    assert tokens and all(tokens.values())


def test_actions():
    assert parse_actions("R,W") == frozenset({"R", "W"})
    assert token_type_of(parse_actions("W")) is TokenType.W
    assert token_type_of({"R", "W"}) is TokenType.RW
    for bad in ["", "R,R", "X", "R,W,R", "r"]:
        with pytest.raises(InvalidCredentials):
            parse_actions(bad)


def test_client_id():
    assert validate_client_id("GID_test@@@dev-1")
    for bad in ["dev", "GID_@@@x", "GID_a@@@", "GID_a@@@" + "x" * 60, "gid_a@@@b"]:
        with pytest.raises(InvalidCredentials):
            validate_client_id(bad)


def test_signature_password_known_value():
    # HMAC-SHA1("dev-sk", "GID_test@@@dev-1"), computed with openssl:
    # printf 'GID_test@@@dev-1' | openssl dgst -sha1 -hmac dev-sk -binary | base64
    assert signature_password("dev-sk", "GID_test@@@dev-1") == "2ZM6QBsPQ6ccf3qfw5J3J8+L+NY="


def test_sys_payloads():
    up = UploadToken.parse(b'{"token":"abc","type":"RW"}')
    assert up == UploadToken("abc", TokenType.RW)
    assert UploadToken.parse(up.encode()) == up
    assert ExpireNotice.parse(ExpireNotice(5, TokenType.R).encode()) == ExpireNotice(5, TokenType.R)
    n = InvalidNotice.parse(b'{"code":-1,"type":null}')
    assert n.code is InvalidCode.ACCOUNT_INVALID
    for bad in [
        b"",
        b"[]",
        b"{}",
        b'{"token":"","type":"R"}',
        b'{"token":"a","type":"X"}',
        b"\xff",
        b'{"token":1,"type":"R"}',
    ]:
        with pytest.raises(InvalidPayload):
            UploadToken.parse(bad)
