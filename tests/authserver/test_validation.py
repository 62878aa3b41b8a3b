"""Parameter rules, pure (SPEC §3a): examples and properties."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mock_authserver.errors import InvalidParameter, MissingParameter, ParameterError
from mock_authserver.validation import (
    parse_actions,
    parse_expire_ms,
    parse_resources,
    parse_token,
    require,
)

LEVEL = st.text(alphabet="abcxyzABZ019_-", min_size=1, max_size=6)
FILTER = st.lists(st.one_of(LEVEL, st.just("+")), min_size=1, max_size=4).flatmap(
    lambda levels: st.sampled_from(["/".join(levels), "/".join([*levels, "#"])])
)


@given(st.lists(FILTER, min_size=1, max_size=100, unique=True))
def test_sorted_unique_filters_round_trip(filters):
    filters = sorted(filters)
    assert parse_resources(",".join(filters)) == tuple(filters)
    assert parse_resources(",".join(filters), any_order=True) == tuple(filters)


@given(st.lists(FILTER, min_size=2, max_size=20, unique=True))
def test_unsorted_filters_refused_by_openapi_sorted_by_legacy(filters):
    # SPEC §3a: the OpenAPI Resources must come in dictionary order; the legacy API sorts
    # multi-valued parameters (its signing rule), so any order is one set of resources.
    ordered = sorted(filters)
    shuffled = list(reversed(ordered))
    with pytest.raises(InvalidParameter, match="dictionary order") as err:
        parse_resources(",".join(shuffled), "Resources")
    assert err.value.openapi_code == "InvalidParameter.Resources"
    assert parse_resources(",".join(shuffled), any_order=True) == tuple(ordered)


@given(FILTER)
def test_a_filter_listed_twice_is_refused_in_any_order(f):
    for any_order in (False, True):
        with pytest.raises(InvalidParameter, match="twice"):
            parse_resources(f"{f},{f}", any_order=any_order)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("a/" + "b" * 198, "at most 64"),  # a 200-character resource
        ("a/" + "b" * 63, "at most 64"),  # 65
        ("a:b", "':'"),
        ("a/%23", "'%'"),
        ("a/b.c", "'.'"),
        ("a/$x", "'$'"),
        ("a b", "' '"),
        ("a/b#", "'#' must be a whole level"),
    ],
)
def test_resources_the_provider_would_refuse(value, fragment):
    # SPEC §4a: at most 64 characters of letters, digits, '-', '_', '/' and wildcards.
    with pytest.raises(InvalidParameter, match=re.escape(fragment)) as err:
        parse_resources(value, "Resources")
    assert (err.value.openapi_code, err.value.legacy_code) == ("InvalidParameter.Resources", 400)


def test_longest_allowed_resource_and_no_parent_topic_check():
    longest = "a/" + "b" * 62
    assert parse_resources(longest) == (longest,)
    # The AuthServer does not check parent topics (SPEC §4a): 'nosuchparent' is fine.
    assert parse_resources("nosuchparent/#") == ("nosuchparent/#",)


def test_legacy_actions_in_any_order_openapi_exactly():
    assert parse_actions("W,R", any_order=True) == {"R", "W"}
    with pytest.raises(InvalidParameter) as err:
        parse_actions("W,R", "Actions")
    assert err.value.openapi_code == "InvalidParameter.Actions"


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
