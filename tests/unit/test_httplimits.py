"""What a request may cost (sim.shared.httplimits) and the aiohttp seam that enforces the
time limits (sim.shared.httpserver): pure checks, no sockets."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.shared.httplimits import (
    MAX_JSON_DEPTH,
    HttpLimits,
    JsonTooDeep,
    check_json_depth,
    content_coding_problem,
    loads_json,
)
from sim.shared.httpserver import check_aiohttp_assumptions, client_error_message


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text('[]{}"\\ab,:', max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=60,
)


@given(json_values, st.integers(1, 12))
def test_depth_check_agrees_with_the_parsed_depth(value: Any, limit: int) -> None:
    raw = json.dumps(value).encode()
    if depth(value) > limit:
        with pytest.raises(JsonTooDeep):
            loads_json(raw, limit)
    else:
        assert loads_json(raw, limit) == value


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b"[" * 100_000,  # never closed: the parser would recurse anyway
        b'{"k": "' + b"\\" * 10 + b'"}' + b"[" * 40 + b"]" * 40,
    ],
)
def test_deep_or_unbalanced_text_is_refused_without_recursion(raw: bytes) -> None:
    with pytest.raises(ValueError):  # JsonTooDeep, or not JSON at all
        loads_json(raw)


def test_brackets_never_closed_are_too_deep_before_any_parser_runs() -> None:
    with pytest.raises(JsonTooDeep):
        check_json_depth(b"[" * 100_000)
    with pytest.raises(JsonTooDeep):
        check_json_depth(b'{"a": ' * 5 + b"[[]]", max_depth=4)
    check_json_depth(b"[[[[]", max_depth=4)  # unbalanced but shallow: the parser says so


def test_brackets_in_strings_do_not_nest_and_the_check_is_linear() -> None:
    assert loads_json(json.dumps({"a": "[" * 10_000}).encode()) == {"a": "[" * 10_000}
    check_json_depth(b'"' + b"[" * 50)  # an unterminated string holds no structure
    # Worst cases for the string pattern (many quotes, escapes, a lone trailing
    # backslash): a quadratic scan of 2 MB would take minutes.
    for text in (b'\\"' * 1_000_000, b'"\\' * 1_000_000, b'"' * 2_000_000):
        raw = b"[]" * 40 + text  # enough brackets that the check reads the text
        started = time.process_time()
        check_json_depth(raw)
        assert time.process_time() - started < 2.0


def test_the_default_depth_admits_every_real_body() -> None:
    bulk = {"accounts": [{"client_id": "c", "grants": [{"resources": ["a"], "actions": "R"}]}]}
    assert depth(bulk) < MAX_JSON_DEPTH
    assert loads_json(json.dumps(bulk).encode()) == bulk


@pytest.mark.parametrize(
    ("values", "ok"),
    [
        ([], True),
        (["gzip"], True),
        (["GZIP"], True),
        ([" deflate "], True),
        (["identity"], True),
        (["br"], False),
        (["zstd"], False),
        (["x-gzip"], False),
        (["gzip, gzip"], False),
        (["gzip", "gzip"], False),
        (["b\xe4d"], False),
    ],
)
def test_content_codings(values: list[str], ok: bool) -> None:
    problem = content_coding_problem(values)
    assert (problem is None) is ok
    if problem is not None:
        assert "\xe4" not in problem and "Content-Encoding" in problem


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "5"])
def test_limits_must_be_positive_finite_seconds(bad: object) -> None:
    with pytest.raises(ValueError):
        HttpLimits(header_timeout_s=bad)  # type: ignore[arg-type]


def test_aiohttp_still_has_what_the_guarded_server_relies_on() -> None:
    check_aiohttp_assumptions()  # also run at import: an upgrade fails at start


def test_client_error_messages_never_quote_the_request() -> None:
    from aiohttp import http_exceptions as hx

    secret = "signature=S3cret%3D"
    for exc in (
        hx.BadStatusLine(f"GET /?{secret} HTTP/1.1 x"),
        hx.InvalidHeader(f"Authorization : Basic {secret}"),
        hx.LineTooLong(secret, "8190"),
        hx.BadHttpMessage(secret),
        hx.ContentEncodingError(secret),
        ValueError(secret),
        None,
    ):
        message = client_error_message(exc)
        assert message.startswith("malformed HTTP request") and "S3cret" not in message
