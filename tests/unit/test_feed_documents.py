"""The AuthServer's bootstrap and feed documents: round trips, strict reading, and the
exact wire format of CONTRACTS.md."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.shared.protocol import (
    AccountEvent,
    AccountRecord,
    Bootstrap,
    FeedDocumentError,
    FeedEvent,
    FeedPage,
    OtherEvent,
    ParentTopicsEvent,
    Revocation,
    RevokeEvent,
    WireFormatError,
)

# -- strategies ------------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
_names = _text.filter(bool)
_ms = st.integers(0, 2**53)
_accounts = st.builds(
    AccountRecord, _names, _text, st.lists(_text, max_size=3).map(tuple), st.booleans()
)


@st.composite
def bootstraps(draw: st.DrawFn) -> Bootstrap:
    keys = draw(st.dictionaries(_names, st.binary(min_size=1, max_size=33), min_size=1))
    return Bootstrap(
        keys,
        draw(st.sampled_from(sorted(keys))),
        tuple(draw(st.lists(_accounts, max_size=4, unique_by=lambda a: a.access_key_id))),
        tuple(
            draw(
                st.lists(
                    st.builds(Revocation, _names, _ms), max_size=4, unique_by=lambda r: r.token_id
                )
            )
        ),
        draw(_ms),
        draw(st.dictionaries(_names, st.lists(_names, max_size=3).map(tuple), max_size=3)),
    )


_KINDS = ("revoke", "account", "parent_topics")


@st.composite
def pages(draw: st.DrawFn) -> FeedPage:
    seq = draw(st.integers(0, 1000))
    events: list[FeedEvent] = []
    for _ in range(draw(st.integers(0, 5))):
        seq += draw(st.integers(1, 3))
        kind = draw(st.sampled_from(["revoke", "account", "parent_topics", "other"]))
        if kind == "revoke":
            events.append(RevokeEvent(seq, draw(_names), draw(_names), draw(_names), draw(_ms)))
        elif kind == "account":
            events.append(AccountEvent(seq, draw(_accounts), draw(st.booleans())))
        elif kind == "parent_topics":
            names = tuple(draw(st.lists(_names, max_size=3)))
            events.append(ParentTopicsEvent(seq, draw(_names), names))
        else:
            other = draw(_names.filter(lambda k: k not in _KINDS))
            events.append(OtherEvent(seq, other))
    return FeedPage(seq + draw(st.integers(0, 2)), tuple(events), draw(st.booleans()))


def _wire(doc: dict[str, Any]) -> Any:
    return json.loads(json.dumps(doc))


# -- round trips -----------------------------------------------------------------------------


@given(bootstraps())
def test_bootstrap_round_trips(doc: Bootstrap) -> None:
    assert Bootstrap.from_json(_wire(doc.to_json())) == doc


@given(pages())
def test_feed_page_round_trips(page: FeedPage) -> None:
    assert FeedPage.from_json(_wire(page.to_json())) == page


# -- malformed documents ---------------------------------------------------------------------

_OPTIONAL = {"reset", "deleted", "parent_topics"}  # keys whose absence is valid
#: Objects whose entries may each be dropped (what is left is still valid).
_OPEN = {"keys", "parent_topics"}
_WRONG: dict[type, list[Any]] = {
    str: [None, 7, [], {}],
    int: ["7", 7.5, None, True],
    bool: [1, "true", None],
    list: ["x", {}, None],
    dict: [[], "x", None],
}


def _mutations(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """Every (path, replacement) that must make a valid document invalid; a replacement of
    ``...`` deletes the key."""
    found: list[tuple[tuple[Any, ...], Any]] = []
    children = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in children:
        here = (*path, key)
        in_open = bool(path) and path[-1] in _OPEN  # dropping one entry is still valid
        # an event's parent_topics is required; the bootstrap's is optional
        optional = key in _OPTIONAL and (key != "parent_topics" or not path)
        if isinstance(node, dict) and not optional and not in_open:
            found.append((here, ...))
        found.extend((here, wrong) for wrong in _WRONG[type(value)])
        if isinstance(value, dict | list):
            found.extend(_mutations(value, here))
    return found


def _apply(doc: Any, path: tuple[Any, ...], replacement: Any) -> Any:
    broken = copy.deepcopy(doc)
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    if replacement is ...:
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return broken


@given(bootstraps(), st.data())
def test_a_broken_bootstrap_is_refused(doc: Bootstrap, data: st.DataObject) -> None:
    wire = _wire(doc.to_json())
    path, replacement = data.draw(st.sampled_from(_mutations(wire)))
    with pytest.raises(FeedDocumentError):
        Bootstrap.from_json(_apply(wire, path, replacement))


@given(pages(), st.data())
def test_a_broken_feed_page_is_refused(page: FeedPage, data: st.DataObject) -> None:
    wire = _wire(page.to_json())
    path, replacement = data.draw(st.sampled_from(_mutations(wire)))
    with pytest.raises(FeedDocumentError):
        FeedPage.from_json(_apply(wire, path, replacement))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(_json)
def test_any_json_is_a_document_or_a_feed_document_error(value: Any) -> None:
    for parse in (Bootstrap.from_json, FeedPage.from_json):
        with contextlib.suppress(FeedDocumentError):
            parse(value)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "bootstrap must be a JSON object"),
        ({"keys": {}}, "bootstrap.keys must be a non-empty object"),
        ({"keys": {"k1": "not base64!"}}, "bootstrap.keys['k1'] is not base64"),
        ({"current_key": "k2"}, "bootstrap.current_key is not one of bootstrap.keys"),
        ({"seq": "17"}, "bootstrap.seq must be an integer >= 0"),
        ({"accounts": [{"access_key_id": 3}]}, "bootstrap.accounts[0].access_key_id must be"),
        ({"revoked": [{"token_id": "t"}]}, "bootstrap.revoked[0].expire_ms is missing"),
    ],
)
def test_the_error_names_the_field(doc: dict[str, Any], message: str) -> None:
    valid = {"keys": {"k1": "AAAA"}, "current_key": "k1", "accounts": [], "revoked": [], "seq": 1}
    with pytest.raises(FeedDocumentError, match=message.replace("[", r"\[")) as caught:
        Bootstrap.from_json(doc if isinstance(doc, list) else {**valid, **doc})
    assert isinstance(caught.value, WireFormatError)


def test_events_out_of_order_are_refused() -> None:
    event = {"seq": 5, "kind": "x"}
    with pytest.raises(FeedDocumentError, match="out of order"):
        FeedPage.from_json({"seq": 6, "events": [event, event]})
    with pytest.raises(FeedDocumentError, match="out of order"):
        FeedPage.from_json({"seq": 4, "events": [event]})


# -- the wire format of CONTRACTS.md -----------------------------------------------------------


def test_wire_format() -> None:
    boot = Bootstrap(
        {"k1": b"\x00\x01"},
        "k1",
        (AccountRecord("dev-ak", "dev-sk", ("mqtt-dev",)),),
        (Revocation("t0", 5),),
        17,
        {"mqtt-dev": ("demo", "dev")},
    )
    assert boot.to_json() == {
        "keys": {"k1": "AAE="},
        "current_key": "k1",
        "accounts": [
            {"access_key_id": "dev-ak", "secret": "dev-sk", "instances": ["mqtt-dev"],
             "enabled": True}
        ],
        "revoked": [{"token_id": "t0", "expire_ms": 5}],
        "seq": 17,
        "parent_topics": {"mqtt-dev": ["demo", "dev"]},
    }  # fmt: skip
    assert "dev-sk" not in repr(boot) and "\\x00" not in repr(boot)  # no secrets in logs
    page = FeedPage(
        20,
        (
            RevokeEvent(18, "t1", "dev-ak", "mqtt-dev", 1_800_000_000_000),
            AccountEvent(19, AccountRecord("ak2", "", (), False), deleted=True),
            ParentTopicsEvent(20, "mqtt-dev", ("demo",)),
        ),
    )
    assert page.to_json() == {
        "seq": 20,
        "events": [
            {"seq": 18, "kind": "revoke", "token_id": "t1", "access_key_id": "dev-ak",
             "instance_id": "mqtt-dev", "expire_ms": 1_800_000_000_000},
            {"seq": 19, "kind": "account", "access_key_id": "ak2", "secret": "",
             "instances": [], "enabled": False, "deleted": True},
            {"seq": 20, "kind": "parent_topics", "instance_id": "mqtt-dev",
             "parent_topics": ["demo"]},
        ],
    }  # fmt: skip
    assert FeedPage(3, reset=True).to_json() == {"reset": True, "seq": 3, "events": []}


def test_a_bootstrap_without_parent_topics_knows_none() -> None:
    """An AuthServer that predates parent topics sends none: the field is optional."""
    valid = {"keys": {"k1": "AAAA"}, "current_key": "k1", "accounts": [], "revoked": [], "seq": 1}
    assert Bootstrap.from_json(valid).parent_topics == {}
    with pytest.raises(FeedDocumentError, match=r"bootstrap.parent_topics\['i'\] must be a list"):
        Bootstrap.from_json({**valid, "parent_topics": {"i": ["ok", ""]}})
