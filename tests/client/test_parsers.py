"""Hypothesis on every parser of the SDK: AppServer answers (through the built-in
adapter), stored tokens, broker URLs."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.customer.adapter import AskError
from sim.customer.adapter.render import read_answer, retry_after_seconds
from sim.customer.client.appserver_api import BUILTIN, TokenGrant, grant_from_credentials
from sim.customer.client.errors import BadAppServerAnswer
from sim.customer.client.store import StoredToken
from sim.customer.client.transport import parse_broker_url
from sim.shared.protocol import TokenType

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)

GOOD = {
    "token": "tok",
    "type": "RW",
    "expireTime": 1_800_003_600_000,
    "instanceId": "mqtt-dev",
    "username": "Token|dev-ak|mqtt-dev",
    "password": "RW|tok",
    "stale": False,
}


def parse_grant(body: object, *, actions: str, resources: tuple[str, ...]) -> TokenGrant:
    """A 200 answer of the reference AppServer, read as the SDK reads it."""
    assert BUILTIN.response is not None
    try:
        creds = read_answer(BUILTIN.response, 200, {}, json.dumps(body).encode(), now_ms=0)
    except AskError as exc:
        raise BadAppServerAnswer(str(exc)) from None
    return grant_from_credentials(creds, actions=actions, resources=resources)


def test_a_good_answer_parses() -> None:
    grant = parse_grant(GOOD, actions="R,W", resources=("b/#", "a/+"))
    assert grant.token.resources == ("a/+", "b/#")
    assert grant.token.type is TokenType.RW and grant.stale is False


@given(json_values)
def test_any_json_is_a_grant_or_a_bad_answer(body: object) -> None:
    with contextlib.suppress(BadAppServerAnswer):
        parse_grant(body, actions="R", resources=("a",))


@given(st.sampled_from(sorted(GOOD)), json_values)
def test_a_corrupted_field_is_a_bad_answer_or_still_well_typed(key: str, value: object) -> None:
    body = {**GOOD, key: value}
    try:
        grant = parse_grant(body, actions="R,W", resources=("a",))
    except BadAppServerAnswer:
        return
    assert isinstance(grant.token.expire_ms, int) and isinstance(grant.token.token, str)
    assert grant.token.type.value + "|" + grant.token.token == grant.token.password


@pytest.mark.parametrize(("value", "expected"), [(None, 0), ("5", 5), ("-3", 0), ("x", 0)])
def test_retry_after(value: str | None, expected: float) -> None:
    assert retry_after_seconds(value) == expected
    assert retry_after_seconds("99999999") == 3600
    assert retry_after_seconds("nan") == 0


@given(json_values)
def test_stored_token_json_only_ever_raises_value_error(data: object) -> None:
    with contextlib.suppress(ValueError):
        StoredToken.from_json(data)


@given(
    st.text(min_size=1, max_size=50),
    st.sampled_from(list(TokenType)),
    st.integers(0, 2**53),
    st.lists(st.text(max_size=20), min_size=1, max_size=5),
)
def test_stored_token_round_trip(token: str, kind: TokenType, expire: int, res: list[str]) -> None:
    t = StoredToken(token, kind, expire, "i", "Token|a|i", f"{kind.value}|{token}", "R", tuple(res))
    assert StoredToken.from_json(t.to_json()) == t


@given(st.text(max_size=60))
def test_broker_url_parses_or_raises_value_error(text: str) -> None:
    try:
        addr = parse_broker_url(text)
    except ValueError:
        return
    assert 0 <= addr.port <= 65535 and addr.host


def test_broker_url_forms() -> None:
    assert parse_broker_url("mqtt://127.0.0.1:1884").port == 1884
    assert parse_broker_url("127.0.0.1").port == 1883
    with pytest.raises(ValueError):
        parse_broker_url("http://127.0.0.1:80")
