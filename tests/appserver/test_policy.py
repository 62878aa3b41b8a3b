"""Pure rules of the AppServer: request parsing, ACL, cache key, TTL policy."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.customer.appserver.errors import BadRequest, Forbidden, Unauthorized
from sim.customer.appserver.policy import (
    EXPIRE_SAFETY_S,
    MAX_TTL_S,
    MIN_TTL_S,
    Grant,
    TokenKey,
    TokenRequest,
    check_acl,
    choose_expire_ms,
    has_enough_life,
    is_valid,
    parse_account_body,
    parse_basic_auth,
    parse_grants,
    parse_token_request,
)


def basic(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


# -- token requests ---------------------------------------------------------------------


def test_request_resources_sorted_and_deduplicated() -> None:
    req = parse_token_request({"resources": ["b/#", "a/+", "b/#"], "actions": "R,W"})
    assert req.resources == ("a/+", "b/#")
    assert req.actions == frozenset({"R", "W"})
    assert req.token_type.value == "RW"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "JSON object"),
        ({"resources": ["a"]}, "missing 'actions'"),
        ({"actions": "R"}, "missing 'resources'"),
        ({"resources": [], "actions": "R"}, "non-empty list"),
        ({"resources": "a/b", "actions": "R"}, "non-empty list"),
        ({"resources": [1], "actions": "R"}, "only strings"),
        ({"resources": ["a/#/b"], "actions": "R"}, "'#' must be a whole level"),
        ({"resources": ["a+"], "actions": "R"}, "'+' must be a whole level"),
        ({"resources": ["a,b"], "actions": "R"}, "must not contain ','"),
        ({"resources": [""], "actions": "R"}, "must not be empty"),
        ({"resources": ["a"], "actions": "X"}, 'one of "R"'),
        ({"resources": ["a"], "actions": "R,R"}, 'one of "R"'),
        ({"resources": ["a"], "actions": ["R"]}, 'one of "R"'),
        ({"resources": ["a"], "actions": "R", "ttl": 5}, "unknown field(s): ttl"),
        ({"resources": [f"t/{i}" for i in range(101)], "actions": "R"}, "at most 100"),
    ],
)
def test_request_rejections_say_why(body: object, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_token_request(body)
    assert fragment in info.value.message


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
        max_leaves=12,
    )
)
def test_request_parser_accepts_or_explains(body: object) -> None:
    try:
        req = parse_token_request(body)
    except BadRequest as exc:
        assert exc.message
    else:
        assert list(req.resources) == sorted(set(req.resources))


# -- ACL --------------------------------------------------------------------------------------


GRANTS = (
    Grant(("devices/+/state", "fleet/#"), frozenset({"R"})),
    Grant(("devices/d1/cmd",), frozenset({"R", "W"})),
)


def test_acl_allows_covered_filters() -> None:
    check_acl(GRANTS, TokenRequest(frozenset({"R"}), ("devices/x/state", "fleet/a/+")))
    check_acl(GRANTS, TokenRequest(frozenset({"R", "W"}), ("devices/d1/cmd",)))


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (TokenRequest(frozenset({"W"}), ("devices/x/state",)), "write (W) 'devices/x/state'"),
        (TokenRequest(frozenset({"R"}), ("devices/#",)), "'devices/#'"),  # wider than a/+
        (TokenRequest(frozenset({"R"}), ("#",)), "'#'"),
        (TokenRequest(frozenset({"R"}), ("devices/x/state", "other")), "'other'"),
    ],
)
def test_acl_refusal_names_the_filter(request_: TokenRequest, named: str) -> None:
    with pytest.raises(Forbidden) as info:
        check_acl(GRANTS, request_)
    assert named in info.value.message


def test_acl_no_grants_refuses() -> None:
    with pytest.raises(Forbidden):
        check_acl((), TokenRequest(frozenset({"R"}), ("a",)))


def test_grants_parse_and_validate() -> None:
    assert parse_grants([{"resources": ["b", "a"], "actions": "W"}]) == (
        Grant(("a", "b"), frozenset({"W"})),
    )
    with pytest.raises(BadRequest, match=r"grants\[0\]"):
        parse_grants([{"resources": ["a"]}])
    with pytest.raises(BadRequest, match=r"grants\[1\].resources"):
        parse_grants(
            [{"resources": ["a"], "actions": "R"}, {"resources": ["a/#/x"], "actions": "R"}]
        )
    with pytest.raises(BadRequest):
        parse_grants({"resources": ["a"]})


def test_account_body() -> None:
    body = parse_account_body({"secret": "s", "grants": [], "enabled": False})
    assert body.secret == "s" and body.grants == () and body.enabled is False
    assert parse_account_body({}).secret is None
    for bad in ({"enabled": "no"}, {"secret": ""}, {"secret": 3}, {"password": "x"}):
        with pytest.raises(BadRequest):
            parse_account_body(bad)


# -- Basic auth --------------------------------------------------------------------------------


def test_basic_auth_parses() -> None:
    assert parse_basic_auth(basic("GID_a@@@d1", "p:w")) == ("GID_a@@@d1", "p:w")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer x",
        "Basic !!!",
        "Basic " + base64.b64encode(b"nocolon").decode(),
        basic("", "s"),
        basic("u", ""),
        basic("bad id", "s"),
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
    ],
)
def test_basic_auth_rejections(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        parse_basic_auth(header)


# -- cache key and TTL policy -----------------------------------------------------------------


def test_token_key_is_order_insensitive_and_round_trips() -> None:
    a = parse_token_request({"resources": ["x", "a/#"], "actions": "W,R"})
    b = parse_token_request({"resources": ["a/#", "x", "x"], "actions": "R,W"})
    ka, kb = TokenKey.of("acct", "inst", a), TokenKey.of("acct", "inst", b)
    assert ka == kb
    assert TokenKey.from_text(ka.text()) == ka
    assert ka.request == a
    assert TokenKey.of("other", "inst", a) != ka
    assert TokenKey.of("acct", "inst", TokenRequest(frozenset({"R"}), a.resources)) != ka


def test_enough_life_uses_the_margin() -> None:
    now = 1_000_000
    assert has_enough_life(now + 301_000, now, 300)
    assert not has_enough_life(now + 300_000, now, 300)
    assert is_valid(now + 1, now) and not is_valid(now, now)


def test_expire_policy_respects_minimum_and_cap() -> None:
    now = 1_800_000_000_000
    assert choose_expire_ms(now, 3600) == now + 3_600_000
    assert choose_expire_ms(now, 1) == now + (MIN_TTL_S + EXPIRE_SAFETY_S) * 1000
    assert choose_expire_ms(now, 10 * MAX_TTL_S) == now + MAX_TTL_S * 1000


@given(st.integers(0, 4_000_000_000_000), st.floats(0, 1e9, allow_nan=False))
def test_expire_policy_always_within_bounds(now: int, ttl: float) -> None:
    expire = choose_expire_ms(now, ttl)
    assert now + MIN_TTL_S * 1000 < expire <= now + MAX_TTL_S * 1000
