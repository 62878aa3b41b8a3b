"""An adapter's request for one client, and the answer read back (pure: no sockets)."""

from __future__ import annotations

import base64
import contextlib
import json
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.customer.adapter import (
    AskError,
    BadAnswer,
    ClientIdentity,
    Credentials,
    Refused,
    Unauthenticated,
    Unavailable,
    parse_adapter,
    prepare_request,
    read_answer,
)
from sim.customer.adapter.model import RequestSpec, ResponseSpec

from .test_adapter_file import AS_WRITTEN

CLIENT = ClientIdentity(
    client_id="GID_shop@@@dev-7",
    secret="s3cr:t/+",
    resources=("shop/dev-7/#", "shop/dev-7/cmd"),
    actions="R,W",
)


def spec(text: str) -> tuple[RequestSpec, ResponseSpec]:
    a = parse_adapter(text)
    assert a.request is not None and a.response is not None
    return a.request, a.response


def test_a_json_body_carries_the_resources_as_a_list() -> None:
    req, _ = spec(AS_WRITTEN)
    p = prepare_request(req, CLIENT)
    assert (p.method, p.path, p.form) == ("POST", "/api/mqtt/token", None)
    assert p.json == {
        "device": "GID_shop@@@dev-7",
        "key": "s3cr:t/+",
        "topics": ["shop/dev-7/#", "shop/dev-7/cmd"],
        "access": "R,W",
    }
    auth = dict(p.headers)["Authorization"]
    assert base64.b64decode(auth.removeprefix("Basic ")).decode() == "GID_shop@@@dev-7:s3cr:t/+"
    assert json.loads(p.body_bytes() or b"") == p.json and p.content_type() == "application/json"


def test_form_and_query_bodies_join_the_resources() -> None:
    req, _ = spec(AS_WRITTEN.replace('body = "json"', 'body = "form"'))
    p = prepare_request(req, CLIENT)
    assert p.json is None and dict(p.form or ()) == {
        "device": "GID_shop@@@dev-7",
        "key": "s3cr:t/+",
        "topics": "shop/dev-7/#,shop/dev-7/cmd",
        "access": "R,W",
    }
    assert p.content_type() == "application/x-www-form-urlencoded"
    text = AS_WRITTEN.replace('method = "POST"', 'method = "GET"').replace(
        'body = "json"', 'body = "query"'
    )
    req, _ = spec(text.replace('url = "/api/mqtt/token"', 'url = "/t/{client_id}?v=1"'))
    p = prepare_request(req, CLIENT)
    parts = urlsplit(p.path)
    assert parts.path == "/t/GID_shop%40%40%40dev-7"  # placeholders in a URL are encoded
    assert dict(parse_qsl(parts.query))["topics"] == "shop/dev-7/#,shop/dev-7/cmd"
    assert dict(parse_qsl(parts.query))["v"] == "1" and p.body_bytes() is None


def test_bearer_header_and_field_auth() -> None:
    req, _ = spec(AS_WRITTEN.replace('auth = "basic"', 'auth = "bearer"'))
    assert dict(prepare_request(req, CLIENT).headers)["Authorization"] == "Bearer s3cr:t/+"
    req, _ = spec(
        AS_WRITTEN.replace(
            'auth = "basic"', 'auth = "header"\nauth_header = "X-Key"\nauth_value = "k={secret}"'
        )
    )
    headers = dict(prepare_request(req, CLIENT).headers)
    assert headers["X-Key"] == "k=s3cr:t/+" and "Authorization" not in headers
    req, _ = spec(AS_WRITTEN.replace('auth = "basic"', 'auth = "field"'))
    p = prepare_request(req, CLIENT)
    assert "Authorization" not in dict(p.headers) and p.json["key"] == "s3cr:t/+"
    req, _ = spec(AS_WRITTEN.replace('auth = "basic"', 'auth = "bearer"'))
    with pytest.raises(Refused, match="line break"):
        prepare_request(req, ClientIdentity("GID_shop@@@b", "x\r\nEvil: 1", ("a/#",)))


def test_lists_splice_the_resources_and_braces_stay_literal() -> None:
    req, _ = spec(
        AS_WRITTEN.replace('topics = "{resources}"', 'topics = ["{resources}", "extra/{{n}}"]')
    )
    assert prepare_request(req, CLIENT).json["topics"] == [
        "shop/dev-7/#",
        "shop/dev-7/cmd",
        "extra/{n}",
    ]


def test_an_account_other_than_the_client_id_logs_in() -> None:
    req, _ = spec(AS_WRITTEN.replace('key = "{secret}"', 'key = "{secret}"\nlogin = "{account}"'))
    p = prepare_request(req, ClientIdentity("GID_shop@@@b", "pw", ("a/#",), account="alice"))
    assert p.json["login"] == "alice" and p.json["device"] == "GID_shop@@@b"
    assert base64.b64decode(dict(p.headers)["Authorization"][6:]) == b"alice:pw"


GOOD = {"mqtt": {"username": "Token|ak|i", "password": "RW|tok", "expireAt": 1_800_000_060_000}}


def answer(status: int, body: object, text: str = AS_WRITTEN, **headers: str) -> Credentials:
    _, resp = spec(text)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return read_answer(resp, status, headers, raw, now_ms=1_800_000_000_000)


def test_the_answer_is_read_with_jmespath() -> None:
    creds = answer(200, GOOD)
    assert creds == Credentials("Token|ak|i", "RW|tok", 1_800_000_060_000, False)
    relative = AS_WRITTEN.replace('expire_ms = "mqtt.expireAt"', 'expires_in_s = "ttl"')
    got = answer(200, {**GOOD, "ttl": 90}, relative)
    assert got.expire_ms == 1_800_000_090_000
    stale = AS_WRITTEN.replace("# optional", "\nstale = \"source == 'cache'\"")
    assert answer(200, {**GOOD, "source": "cache"}, stale).stale is True
    assert answer(200, GOOD, stale).stale is False
    as_string = {"mqtt": {**GOOD["mqtt"], "expireAt": "1800000060000"}}
    assert answer(200, as_string).expire_ms == 1_800_000_060_000


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"mqtt": {"password": "RW|t", "expireAt": 1}}, "username = 'mqtt.username' finds nothing"),
        ({**GOOD, "mqtt": {**GOOD["mqtt"], "username": ""}}, "finds an empty string"),
        ({**GOOD, "mqtt": {**GOOD["mqtt"], "expireAt": True}}, "finds a boolean, not a time"),
        ([1, 2], "username = 'mqtt.username' finds nothing"),
        (b"<html>", "the answer is not JSON"),
    ],
)
def test_a_success_that_is_not_what_the_adapter_says(body: object, message: str) -> None:
    with pytest.raises(BadAnswer, match=message):
        answer(200, body)


@pytest.mark.parametrize(
    ("status", "error", "permanent"),
    [
        (401, Unauthenticated, True),
        (403, Refused, True),
        (400, Refused, True),
        (404, Refused, True),
        (429, Unavailable, False),
        (503, Unavailable, False),
        (500, Unavailable, False),
        (302, BadAnswer, False),
    ],
)
def test_error_statuses(status: int, error: type[AskError], permanent: bool) -> None:
    with pytest.raises(error) as info:
        answer(status, {"err": "no way"}, **{"Retry-After": "7"})
    assert info.value.status == status and info.value.permanent is permanent
    assert "no way" in str(info.value)
    if isinstance(info.value, Unavailable):
        assert info.value.retry_after == 7


def test_the_message_path_says_where_an_error_is() -> None:
    text = AS_WRITTEN.replace("# optional", '\nmessage = "error.text"')
    with pytest.raises(Refused, match="HTTP 403: not yours"):
        answer(403, {"error": {"text": "not yours"}}, text)


@given(st.integers(100, 599), st.binary(max_size=200))
def test_any_answer_is_credentials_or_an_ask_error(status: int, body: bytes) -> None:
    with contextlib.suppress(AskError):
        answer(status, body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(json_values)
def test_any_json_success_is_credentials_or_a_bad_answer(body: object) -> None:
    for doc in (body, {"mqtt": body}, {"mqtt": {**GOOD["mqtt"], "expireAt": body}}):
        try:
            creds = answer(200, doc)
        except BadAnswer:
            continue
        assert isinstance(creds.username, str) and creds.username
