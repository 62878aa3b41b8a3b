import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.shared.protocol import (
    InvalidTopic,
    covers,
    is_sys_topic,
    matches,
    parent_topic_of,
    validate_filter,
    validate_parent_topic,
    validate_provider_topic,
    validate_topic,
)


@pytest.mark.parametrize(
    ("f", "t", "ok"),
    [
        ("a/+", "a/b", True),
        ("a/+", "a", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a//b", "a//b", True),
        ("+", "a/b", False),
    ],
)
def test_matches(f, t, ok):
    assert matches(f, t) is ok


@pytest.mark.parametrize(
    ("r", "f", "ok"),
    [
        ("a/+", "a/b", True),
        ("a/+", "a/+", True),
        ("a/+", "a/#", False),
        ("a/+", "#", False),
        ("#", "a/#", True),
        ("+/#", "#", True),
        ("a/#", "a", True),
        ("a", "a/#", False),
        ("#", "$SYS/x", False),
    ],
)
def test_covers_examples(r, f, ok):
    assert covers(r, f) is ok


@pytest.mark.parametrize("bad", ["", "a/#/b", "a/b#", "a+/b", "\x00"])
def test_invalid_filters(bad):
    with pytest.raises(InvalidTopic):
        validate_filter(bad)


@pytest.mark.parametrize("bad", ["", "a/+", "a/#", "x\x00"])
def test_invalid_topics(bad):
    with pytest.raises(InvalidTopic):
        validate_topic(bad)


# -- coverage against a brute-force model ------------------------------------------------
# Levels are drawn from a tiny alphabet; the universe of topics adds a level ('z') that
# no filter names and goes one level deeper than any filter, so "matches every topic"
# is decided by enumeration, not by the rule under test.
LEVELS = ["a", "b", "$s", "+", "#", ""]
UNIVERSE = [
    "/".join(c)
    for d in range(1, 6)
    for c in itertools.product(["a", "b", "z", "$s", ""], repeat=d)
    if "$s" not in c[1:]
]


def _filter_strategy():
    def build(levels):
        if "#" in levels[:-1] or "$s" in levels[1:]:
            return None
        return "/".join(levels)

    return st.lists(st.sampled_from(LEVELS), min_size=1, max_size=4).map(build).filter(bool)


@given(_filter_strategy(), _filter_strategy())
def test_covers_matches_brute_force(resource, topic_filter):
    truth = all(matches(resource, t) for t in UNIVERSE if matches(topic_filter, t))
    assert covers(resource, topic_filter) is truth


@given(_filter_strategy())
def test_every_filter_covers_itself(topic_filter):
    assert covers(topic_filter, topic_filter)


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("$SYS", True),
        ("$SYS/uploadToken", True),
        ("$SYSX", False),
        ("$SYSX/a", False),
        ("a/$SYS/b", False),
        ("$sys/x", False),
    ],
)
def test_is_sys_topic(topic: str, expected: bool) -> None:
    assert is_sys_topic(topic) is expected


# -- the provider's naming rules (SPEC §4a) ---------------------------------------------------

PROVIDER_OK = st.text(alphabet="abcXYZ019-_/", min_size=1, max_size=64)


@given(PROVIDER_OK)
def test_provider_topics_of_allowed_characters_pass_both_ways(text):
    assert validate_provider_topic(text, filter=False) == text
    assert validate_provider_topic(text, filter=True) == text


@given(st.text(min_size=1, max_size=80))
def test_provider_rule_is_mqtt_rule_plus_length_and_characters(text):
    # Oracle: MQTT's own validity, at most 64 characters, only the allowed characters.
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/+#")
    try:
        validate_filter(text)
        mqtt_ok = True
    except InvalidTopic:
        mqtt_ok = False
    expect = mqtt_ok and len(text) <= 64 and set(text) <= allowed
    try:
        validate_provider_topic(text, filter=True)
        got = True
    except InvalidTopic:
        got = False
    assert got is expect


@given(st.text(alphabet="ab-_/+#.:\x00é", max_size=70), st.booleans())
def test_provider_rule_on_wildcard_heavy_text(text, is_filter):
    """The same oracle on the characters where the rules meet (wildcards, separators,
    one character too many): the one-match fast path accepts exactly what the rules do,
    topics and filters alike."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/+#")
    try:
        (validate_filter if is_filter else validate_topic)(text)
        mqtt_ok = True
    except InvalidTopic:
        mqtt_ok = False
    expect = mqtt_ok and len(text) <= 64 and set(text) <= allowed
    try:
        assert validate_provider_topic(text, filter=is_filter) == text
        got = True
    except InvalidTopic:
        got = False
    assert got is expect


@pytest.mark.parametrize(
    ("text", "is_filter", "fragment"),
    [
        ("a/" + "b" * 198, True, "at most 64"),
        ("x" * 65, False, "at most 64"),
        ("fleet/dev:1", False, "':'"),
        ("fleet/50%", True, "'%'"),
        ("fleet/a,b", True, "','"),
        ("fleet/d.1", False, "'.'"),
        ("fleet/+", False, "wildcards"),
        ("fleet/#/x", True, "'#'"),
        ("", True, "empty"),
    ],
)
def test_provider_topic_refusals_say_why(text, is_filter, fragment):
    with pytest.raises(InvalidTopic, match=re.escape(fragment)):
        validate_provider_topic(text, filter=is_filter)


@pytest.mark.parametrize("name", ["dev", "fleet", "GID-ok_1", "x" * 64])
def test_parent_topic_names(name):
    assert validate_parent_topic(name) == name


@pytest.mark.parametrize("name", ["t", "ab", "x" * 65, "a/b", "dev:1", "a%b", "dé v", ""])
def test_parent_topic_names_refused(name):
    # The provider's console: 3 to 64 letters, digits, '-' and '_'.
    with pytest.raises(InvalidTopic):
        validate_parent_topic(name)


def test_parent_topic_of():
    assert parent_topic_of("fleet/d1/up") == "fleet"
    assert parent_topic_of("fleet") == "fleet"
    assert parent_topic_of("+/x") == "+"
