"""The provider profile's pure core (SPEC §4, §4a): client ids, the §4a rulings, P2P
authorisation, the fidelity ledger, the CONNECT level check, the upload key.  No event
loop, no port."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mock_broker.authority import TokenAuthority
from mock_broker.connect import UnsupportedLevel, parse_connect
from mock_broker.decision import SessionAccess, decide_publish
from mock_broker.fidelity import Feature, FidelityLedger
from mock_broker.profile import (
    MAX_MESSAGE_BYTES,
    MAX_SUBSCRIPTIONS,
    Outcome,
    rule_publish,
    rule_subscribe,
    rule_will,
)
from sim.shared.clock import ManualClock
from sim.shared.protocol import (
    Bootstrap,
    FeedPage,
    InvalidCode,
    InvalidCredentials,
    InvalidPayload,
    ParentTopicsEvent,
    TokenType,
    UploadToken,
    p2p_target,
    p2p_topic,
    validate_client_id,
)
from sim.shared.protocol.tokens import TokenCodec, new_key

from .conftest import AK, INSTANCE, Minter

PARENTS = frozenset({"demo", "dev"})

# -- client ids (SPEC §4; CreateGroupId API, Limits page) --------------------------------------


@pytest.mark.parametrize(
    "client_id",
    [
        "GID-demo@@@dev1",  # GID- is a Group ID prefix too
        "GID_demo@@@device001",
        "GID_abc@@@d",  # a 7-character Group ID
        "GID_" + "g" * 56 + "@@@d",  # 64 characters
    ],
)
def test_client_ids_the_provider_accepts(client_id: str) -> None:
    assert validate_client_id(client_id) == client_id


@pytest.mark.parametrize(
    "client_id",
    [
        "GID_a@@@d",  # Group ID of 5 characters (7..64)
        "GID_x@@@dev:1",  # ':' in the device id
        "GID_x@@@dev.1",  # '.' in the device id
        "GID_demo@@@dev:1",
        "GID_demo@@@dev.1",
        "GID_demo@@@dev/1",
        "GID_demo@@@",  # no device id
        "gid_demo@@@d",
        "GIDXdemo@@@d",
        "GID_de.mo@@@d",
        "GID_demo@@@" + "d" * 54,  # 65 characters
        "GID_demo@@d",
    ],
)
def test_client_ids_the_provider_refuses(client_id: str) -> None:
    with pytest.raises(InvalidCredentials):
        validate_client_id(client_id)


_CHARS = "abcXYZ019_-"


@given(
    st.sampled_from(["GID_", "GID-"]),
    st.text(_CHARS, min_size=3, max_size=60),
    st.text(_CHARS, min_size=1, max_size=60),
)
def test_client_id_rule_is_the_documented_one(prefix: str, group: str, device: str) -> None:
    client_id = f"{prefix}{group}@@@{device}"
    if len(client_id) <= 64:
        assert validate_client_id(client_id)
    else:
        with pytest.raises(InvalidCredentials):
            validate_client_id(client_id)


# -- P2P topics and who may send them --------------------------------------------------------


def test_p2p_topics() -> None:
    assert p2p_topic("demo", "GID_demo@@@device001") == "demo/p2p/GID_demo@@@device001"
    assert p2p_target("demo/p2p/GID_demo@@@device001") == ("demo", "GID_demo@@@device001")
    for other in ("demo/p2p", "demo/p2p/", "demo/x/GID_a@@@b", "demo/p2p/a/b", "/p2p/x"):
        assert p2p_target(other) is None


def _writer(*resources: str) -> SessionAccess:
    minter = Minter(TokenCodec({"k1": new_key()}, "k1"), ManualClock(1_800_000_000.0))
    claims = minter.claims(("R", "W"), resources)
    return SessionAccess("Token", AK, INSTANCE, "GID_demo@@@device001", {TokenType.RW: claims})


def test_a_write_token_under_the_parent_topic_may_send_p2p() -> None:
    # The provider's Java token demo: token for demo/testMq4Iot, P2P to demo/p2p/<id>.
    access = _writer("demo/testMq4Iot")
    assert decide_publish(access, "demo/p2p/GID_demo@@@device001") is None
    assert decide_publish(_writer("+/x"), "demo/p2p/GID_demo@@@device001") is None
    refused = decide_publish(access, "other/p2p/GID_demo@@@device001")
    assert refused == InvalidCode.RESOURCE_MISMATCH
    # Not a P2P topic: the ordinary rule.
    assert decide_publish(access, "demo/x/GID_demo@@@device001") == InvalidCode.RESOURCE_MISMATCH


# -- the §4a rulings ---------------------------------------------------------------------------


def test_publish_rulings_under_both_profiles() -> None:
    def ruling(topic: str, size: int = 1, retain: bool = False, provider: bool = True):  # type: ignore[no-untyped-def]
        return rule_publish(topic, size, retain, parents=PARENTS, provider=provider)

    assert ruling("demo/a") == rule_publish("demo/a", 1, False, parents=None, provider=True)
    assert ruling("demo/a").outcome is Outcome.ALLOW and ruling("demo/a").uses == ()
    cases = {
        ("demo/" + "x" * 60, 1, False): (Outcome.DROP, (Feature.TOPIC_LIMITS,)),
        ("demo/a:b", 1, False): (Outcome.DROP, (Feature.TOPIC_LIMITS,)),
        ("demo/a%b", 1, False): (Outcome.DROP, (Feature.TOPIC_LIMITS,)),
        ("other/a", 1, False): (Outcome.CLOSE, (Feature.PARENT_TOPIC,)),
        ("demo/a", MAX_MESSAGE_BYTES + 1, False): (Outcome.DROP, (Feature.MESSAGE_SIZE,)),
        ("demo/a", 1, True): (Outcome.UNRETAINED, (Feature.RETAIN,)),
        ("other/a", MAX_MESSAGE_BYTES + 1, True): (
            Outcome.CLOSE,
            (Feature.PARENT_TOPIC, Feature.MESSAGE_SIZE, Feature.RETAIN),
        ),
    }
    for (topic, size, retain), (outcome, uses) in cases.items():
        got = ruling(topic, size, retain)
        assert (got.outcome, got.uses) == (outcome, uses), topic
        plain = ruling(topic, size, retain, provider=False)
        assert (plain.outcome, plain.uses) == (Outcome.ALLOW, uses), topic  # counted, allowed
    assert ruling("demo/a", MAX_MESSAGE_BYTES).uses == ()  # 64 KB itself is fine
    # A P2P topic: the parent is held to the rules, the client id (with @@@) is not.
    assert ruling("demo/p2p/GID_demo@@@device001").uses == ()
    assert ruling("nope/p2p/GID_demo@@@device001").uses == (Feature.PARENT_TOPIC,)
    # No instance (auth off): no parent topics to check.
    assert rule_publish("any/a", 1, False, parents=None, provider=True).uses == ()


def test_subscribe_rulings_under_both_profiles() -> None:
    def ruling(  # type: ignore[no-untyped-def]
        f: str, qos: int = 1, *, clean: bool = True, held: int = 0, renewed: bool = False,
        provider: bool = True,
    ):  # fmt: skip
        return rule_subscribe(
            f, qos, clean_session=clean, held=held, renewed=renewed, parents=PARENTS,
            provider=provider,
        )  # fmt: skip

    assert ruling("demo/#") == rule_subscribe(
        "demo/#", 1, clean_session=True, held=0, renewed=False, parents=PARENTS, provider=True
    )
    assert (ruling("demo/+/x").outcome, ruling("demo/+/x").qos) == (Outcome.ALLOW, 1)
    assert (ruling("#").outcome, ruling("#").uses) == (Outcome.CLOSE, (Feature.PARENT_TOPIC,))
    assert ruling("demo/" + "x" * 60).uses == (Feature.TOPIC_LIMITS,)
    full = ruling("demo/a", held=MAX_SUBSCRIPTIONS)
    assert (full.outcome, full.uses) == (Outcome.DROP, (Feature.SUBSCRIPTIONS,))
    assert ruling("demo/a", held=MAX_SUBSCRIPTIONS, renewed=True).uses == ()  # replaces
    assert ruling("demo/a", held=MAX_SUBSCRIPTIONS - 1).uses == ()
    persistent = ruling("demo/a", 2, clean=False)
    assert (persistent.outcome, persistent.qos) == (Outcome.ALLOW, 1)
    assert persistent.uses == (Feature.QOS2_PERSISTENT,)
    assert ruling("demo/a", 2, clean=True).qos == 2
    plain = ruling("demo/a", 2, clean=False, provider=False)
    assert (plain.outcome, plain.qos, plain.uses) == (Outcome.ALLOW, 2, (Feature.QOS2_PERSISTENT,))
    assert ruling("#", provider=False).outcome is Outcome.ALLOW


def test_will_ruling() -> None:
    assert rule_will(provider=True).outcome is Outcome.DROP
    assert rule_will(provider=False).outcome is Outcome.ALLOW
    assert rule_will(provider=False).uses == (Feature.WILL,)


# -- the fidelity ledger -------------------------------------------------------------------------


def test_ledger_counts_per_client_and_in_total() -> None:
    ledger = FidelityLedger("provider")
    ledger.record(INSTANCE, "GID_demo@@@a", Feature.WILL)
    ledger.record(INSTANCE, "GID_demo@@@a", Feature.WILL)
    ledger.record(INSTANCE, "GID_demo@@@b", Feature.RETAIN)
    ledger.record("other-instance", "GID_demo@@@a", Feature.RETAIN)  # tenants apart
    assert ledger.uses_of("GID_demo@@@a", INSTANCE) == {Feature.WILL: 2}
    report = ledger.report()
    assert report.totals == {Feature.WILL: 2, Feature.RETAIN: 2}
    doc = json.loads(json.dumps(report.to_json()))
    assert doc["totals"] == {"retain": 2, "will": 2}
    assert doc["clients"][0] == {
        "instance_id": INSTANCE,
        "client_id": "GID_demo@@@a",
        "uses": {"will": 2},
    }
    assert "never publishes" in doc["why"]["will"]
    text = "\n".join(report.lines())
    assert "will x2" in text and "GID_demo@@@b: retain x1" in text
    assert not FidelityLedger("mqtt").report()


def test_ledger_is_bounded_and_keeps_the_most_recent_clients() -> None:
    ledger = FidelityLedger("provider", max_clients=3)
    for i in range(1000):
        ledger.record(INSTANCE, f"GID_demo@@@d{i}", Feature.RETAIN)
    ledger.record(INSTANCE, "GID_demo@@@d997", Feature.WILL)  # seen again: most recent
    ledger.record(INSTANCE, "GID_demo@@@new", Feature.WILL)
    report = ledger.report()
    assert report.totals == {Feature.RETAIN: 1000, Feature.WILL: 2}  # totals stay exact
    kept = {c.client_id for c in report.clients}
    assert kept == {"GID_demo@@@d999", "GID_demo@@@d997", "GID_demo@@@new"}
    assert report.clients_forgotten == 998
    ledger.record(INSTANCE, "GID_demo@@@" + "x" * 100_000, Feature.WILL)  # auth off: any id
    assert max(len(c) for _, c, _ in ledger.clients()) <= 128


# -- MQTT 5 CONNECT (MQTT-3.1.2-2), MQTT 3.1 ------------------------------------------------


def _connect_body(protocol: str, level: int, extra: bytes = b"") -> bytes:
    name = protocol.encode()
    body = struct.pack("!H", len(name)) + name + bytes([level, 0x02]) + struct.pack("!H", 60)
    return body + extra + struct.pack("!H", 1) + b"c"


def test_an_unsupported_level_is_named_as_soon_as_it_is_read() -> None:
    with pytest.raises(UnsupportedLevel) as caught:
        parse_connect(_connect_body("MQTT", 5, extra=b"\x00"))  # MQTT 5: properties follow
    assert caught.value.level == 5
    assert parse_connect(_connect_body("MQIsdp", 3)).level == 3  # MQTT 3.1 is spoken
    assert parse_connect(_connect_body("MQTT", 4)).client_id == "c"


# -- $SYS/uploadToken spelled as the provider's English docs spell it (SPEC §4) ---------------


def test_upload_accepts_token_and_Token() -> None:
    for key in ("token", "Token"):
        upload = UploadToken.parse(json.dumps({key: "t1", "type": "RW"}).encode())
        assert upload == UploadToken("t1", TokenType.RW)
    with pytest.raises(InvalidPayload, match="both"):
        UploadToken.parse(b'{"token": "a", "Token": "b", "type": "R"}')


# -- the authority follows parent topics (bootstrap, feed) --------------------------------------


def test_authority_follows_parent_topics() -> None:
    authority = TokenAuthority()
    boot = Bootstrap({"k1": new_key()}, "k1", seq=3, parent_topics={INSTANCE: ("demo", "dev")})
    authority.load_bootstrap(boot)
    assert authority.parent_topics(INSTANCE) == {"demo", "dev"}
    assert authority.parent_topics("other") == frozenset()
    authority.apply_feed(FeedPage(4, (ParentTopicsEvent(4, INSTANCE, ("plant",)),)))
    assert authority.parent_topics(INSTANCE) == {"plant"}
    authority.apply_feed(FeedPage(5, (ParentTopicsEvent(5, INSTANCE, ()),)))
    assert authority.parent_topics(INSTANCE) == frozenset()
