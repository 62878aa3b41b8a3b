"""Parameter rules, pure (SPEC §3a): examples and properties."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mock_authserver.errors import MissingParameter, ParameterError
from mock_authserver.validation import (
    parse_actions,
    parse_expire_ms,
    parse_resources,
    parse_token,
    require,
)

LEVEL = st.text(alphabet="abcxyz019_-$ ", min_size=1, max_size=6)
FILTER = st.lists(st.one_of(LEVEL, st.just("+")), min_size=1, max_size=4).flatmap(
    lambda levels: st.sampled_from(["/".join(levels), "/".join([*levels, "#"])])
)


@given(st.lists(FILTER, min_size=1, max_size=100, unique=True))
def test_sorted_unique_filters_round_trip(filters):
    filters = sorted(filters)
    assert parse_resources(",".join(filters)) == tuple(filters)


@given(st.lists(FILTER, min_size=2, max_size=20, unique=True))
def test_unsorted_filters_are_refused(filters):
    ordered = sorted(filters)
    shuffled = list(reversed(ordered))
    with pytest.raises(ParameterError, match="dictionary order"):
        parse_resources(",".join(shuffled))


@given(st.text(max_size=300))
def test_any_text_is_accepted_or_a_parameter_error(text):
    for parse in (parse_actions, parse_resources, parse_expire_ms, parse_token):
        with contextlib.suppress(ParameterError):
            parse(text)


@given(st.integers(min_value=0, max_value=10**40 - 1))
def test_expire_time_digits(n):
    assert parse_expire_ms(str(n)) == n


@pytest.mark.parametrize("bad", ["", "1.5", "1e9", " 1", "١٢٣", "-1", "0x10", "9" * 41])
def test_expire_time_refused(bad):
    with pytest.raises(ParameterError):
        parse_expire_ms(bad)


def test_actions_exactly_three_forms():
    assert parse_actions("R") == {"R"}
    assert parse_actions("W") == {"W"}
    assert parse_actions("R,W") == {"R", "W"}
    for bad in ("RW", "W,R", "r", "R,", "R,W,R", ""):
        with pytest.raises(ParameterError):
            parse_actions(bad)


def test_require():
    assert require({"a": "1"}, "a") == "1"
    with pytest.raises(MissingParameter):
        require({}, "a")
    with pytest.raises(MissingParameter):
        require({"a": ""}, "a")
    with pytest.raises(ParameterError, match="longer"):
        require({"a": "x" * 200_000}, "a")
