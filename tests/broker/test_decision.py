"""The pure core: decisions and the authority.  No event loop, no port."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mock_broker.authority import Changes, TokenAuthority
from mock_broker.decision import (
    AccountInfo,
    Refusal,
    SessionAccess,
    UploadRefused,
    decide_connect,
    decide_publish,
    decide_subscribe,
    decide_upload,
    may_receive,
)
from mock_broker.errors import FeedReset
from sim.shared.clock import ManualClock
from sim.shared.protocol import (
    Bootstrap,
    FeedPage,
    InvalidCode,
    TokenType,
    build_token_password,
    signature_password,
)
from sim.shared.protocol.tokens import TokenCodec, new_key

from .conftest import AK, INSTANCE, SK, USER, Minter

NOW = 1_800_000_000_000
CID = "GID_test@@@d"


@pytest.fixture
def setup() -> tuple[TokenAuthority, Minter]:
    key = new_key()
    authority = TokenAuthority()
    authority.set_keys({"k1": key}, "k1")
    authority.set_account(AccountInfo(AK, SK, frozenset({INSTANCE})))
    return authority, Minter(TokenCodec({"k1": key}, "k1"), ManualClock(NOW / 1000))


def test_connect_grants_tokens_by_type(setup: tuple[TokenAuthority, Minter]) -> None:
    authority, minter = setup
    r, w = minter.claims(("R",), ("a/+",)), minter.claims(("W",), ("b/#",))
    pw = build_token_password(
        {TokenType.W: minter.codec.encode(w), TokenType.R: minter.codec.encode(r)}
    )
    grant = decide_connect(USER, pw, CID, authority, NOW)
    assert isinstance(grant, SessionAccess)
    assert grant.tokens == {TokenType.R: r, TokenType.W: w}
    assert decide_subscribe(grant, "a/x") is None
    assert decide_subscribe(grant, "a/#") is InvalidCode.RESOURCE_MISMATCH
    assert decide_publish(grant, "b/x/y") is None
    assert decide_publish(grant, "a/x") is InvalidCode.RESOURCE_MISMATCH
    assert may_receive(grant, "a/x") and not may_receive(grant, "b/x")


def test_type_rules(setup: tuple[TokenAuthority, Minter]) -> None:
    authority, minter = setup
    r_only = decide_connect(USER, minter.password("R", ("a/#",)), CID, authority, NOW)
    w_only = decide_connect(USER, minter.password("W", ("a/#",)), CID, authority, NOW)
    assert isinstance(r_only, SessionAccess) and isinstance(w_only, SessionAccess)
    assert decide_publish(r_only, "a/b") is InvalidCode.PERMISSION_MISMATCH
    assert decide_subscribe(w_only, "a/b") is InvalidCode.PERMISSION_MISMATCH
    for named, actions in [("R", ("R", "W")), ("W", ("R",)), ("RW", ("W",))]:
        pw = build_token_password({TokenType(named): minter.token(actions)})
        refusal = decide_connect(USER, pw, CID, authority, NOW)
        assert isinstance(refusal, Refusal)
        assert (refusal.connack, refusal.code) == (5, InvalidCode.PERMISSION_MISMATCH)


def test_signature_mode_is_full_access(setup: tuple[TokenAuthority, Minter]) -> None:
    authority, _ = setup
    user = f"Signature|{AK}|{INSTANCE}"
    grant = decide_connect(user, signature_password(SK, CID), CID, authority, NOW)
    assert isinstance(grant, SessionAccess) and grant.full_access
    assert decide_subscribe(grant, "#") is None
    bad = decide_connect(user, signature_password("wrong", CID), CID, authority, NOW)
    assert isinstance(bad, Refusal) and bad.code is InvalidCode.BAD_SIGNATURE


def test_not_ready_authority_answers_server_unavailable() -> None:
    refusal = decide_connect(USER, "RW|x", CID, TokenAuthority(), NOW)
    assert isinstance(refusal, Refusal) and refusal.connack == 3


def test_upload_decisions(setup: tuple[TokenAuthority, Minter]) -> None:
    authority, minter = setup
    grant = decide_connect(USER, minter.password("R", ("a/#",)), CID, authority, NOW)
    assert isinstance(grant, SessionAccess)
    fresh = minter.claims(("R",), ("b/#",))
    body = json.dumps({"token": minter.codec.encode(fresh), "type": "R"}).encode()
    assert decide_upload(grant, body, authority, NOW) == (TokenType.R, fresh)
    other = json.dumps({"token": minter.token(ak="ak2"), "type": "RW"}).encode()
    refused = decide_upload(grant, other, authority, NOW)
    assert isinstance(refused, UploadRefused) and refused.code is InvalidCode.ACCOUNT_INVALID
    authority.revoke(fresh.token_id)
    refused = decide_upload(grant, body, authority, NOW)
    assert isinstance(refused, UploadRefused) and refused.code is InvalidCode.REVOKED
    refused = decide_upload(grant, b"\xff", authority, NOW)
    assert isinstance(refused, UploadRefused) and refused.code is InvalidCode.FORGED


@settings(max_examples=300, deadline=None)
@given(
    username=st.one_of(st.none(), st.text(max_size=80)),
    password=st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=200)),
    client_id=st.text(max_size=80),
)
def test_random_credentials_never_authenticate(
    username: str | None, password: str | bytes | None, client_id: str
) -> None:
    authority = TokenAuthority()
    authority.set_keys({"k1": b"k" * 32}, "k1")
    authority.set_account(AccountInfo(AK, SK, frozenset({INSTANCE})))
    result = decide_connect(username, password, client_id, authority, NOW)
    assert isinstance(result, Refusal)
    assert result.connack in (2, 4, 5)


# -- the authority ---------------------------------------------------------------------------


def _bootstrap(key: bytes, **extra: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "keys": {"k1": base64.b64encode(key).decode()},
        "current_key": "k1",
        "accounts": [{"access_key_id": AK, "secret": SK, "instances": [INSTANCE], "enabled": True}],
        "revoked": [{"token_id": "old", "expire_ms": NOW + 10}],
        "seq": 17,
    }
    doc.update(extra)
    return doc


def test_bootstrap_then_feed() -> None:
    key, authority = new_key(), TokenAuthority()
    seen: list[Changes] = []
    authority.on_change(seen.append)
    authority.load_bootstrap(Bootstrap.from_json(_bootstrap(key)))
    assert authority.ready and authority.seq == 17 and authority.is_revoked("old")
    page = {
        "seq": 20,
        "events": [
            {
                "seq": 18,
                "kind": "revoke",
                "token_id": "t1",
                "access_key_id": AK,
                "instance_id": INSTANCE,
                "expire_ms": NOW + 5,
            },
            {
                "seq": 19,
                "kind": "account",
                "access_key_id": AK,
                "secret": SK,
                "instances": [INSTANCE],
                "enabled": False,
            },
            {"seq": 20, "kind": "from-the-future", "what": "ever"},
        ],
    }
    changes = authority.apply_feed(FeedPage.from_json(page))
    assert changes == Changes(frozenset({"t1"}), frozenset({AK}))
    assert seen == [Changes(frozenset({"old"})), changes]
    assert authority.seq == 20
    assert authority.apply_feed(FeedPage.from_json(page)) == Changes()  # a retried poll
    assert authority.prune(NOW + 6) == 1 and not authority.is_revoked("t1")


def test_account_deleted_and_restored() -> None:
    authority = TokenAuthority()
    authority.load_bootstrap(Bootstrap.from_json(_bootstrap(new_key())))
    gone = {"access_key_id": AK, "secret": "", "instances": [], "enabled": False}
    page = {"seq": 18, "events": [{"seq": 18, "kind": "account", "deleted": True, **gone}]}
    assert authority.apply_feed(FeedPage.from_json(page)) == Changes(frozenset(), frozenset({AK}))
    assert authority.account(AK) is None


def test_feed_reset() -> None:
    authority = TokenAuthority()
    authority.load_bootstrap(Bootstrap.from_json(_bootstrap(new_key())))
    with pytest.raises(FeedReset):
        authority.apply_feed(FeedPage(3, reset=True))
    assert authority.seq == 17


def test_deadline_queue_fires_in_order_on_one_timer() -> None:
    from mock_broker.deadlines import DeadlineQueue

    clock = ManualClock(100.0)
    queue = DeadlineQueue(clock)
    fired: list[str] = []
    queue.push(130.0, lambda: fired.append("c"))
    dropped = queue.push(110.0, lambda: fired.append("x"))

    def b() -> None:
        fired.append("b")
        queue.push(125.0, lambda: fired.append("b2"))  # pushed while firing

    queue.push(120.0, b)
    queue.push(105.0, lambda: fired.append("a"))
    queue.cancel(dropped)
    assert clock.pending() == 1  # one clock timer however many deadlines
    clock.advance(50)
    assert fired == ["a", "b", "b2", "c"]
    assert len(queue) == 0 and clock.pending() == 0
    many = [queue.push(200.0 + i, lambda: None) for i in range(100)]
    for deadline in many[:-1]:
        queue.cancel(deadline)
    assert len(queue) == 1 and len(queue._heap) < 100  # compacted


def test_the_ignore_revocations_defect_skips_revocations_only() -> None:
    # The revocation scenario's broker-ignores-revocations defect (docs/scenarios.md).
    authority = TokenAuthority(ignore_revocations=True)
    authority.load_bootstrap(Bootstrap.from_json(_bootstrap(new_key())))
    assert not authority.is_revoked("old")
    revoke = {"seq": 18, "kind": "revoke", "token_id": "t1", "access_key_id": AK}
    page = {"seq": 18, "events": [{**revoke, "instance_id": INSTANCE, "expire_ms": NOW + 5}]}
    assert authority.apply_feed(FeedPage.from_json(page)) == Changes()
    assert not authority.is_revoked("t1") and authority.seq == 18  # the feed still moves
