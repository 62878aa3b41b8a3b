import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.shared.protocol import (
    InvalidTopic,
    covers,
    is_sys_topic,
    matches,
    validate_filter,
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
