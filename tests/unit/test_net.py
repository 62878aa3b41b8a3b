import pytest

from sim.shared.net import is_loopback_peer


@pytest.mark.parametrize(
    ("remote", "expected"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("::1%lo", True),
        # look like loopback to a prefix test, are not
        ("::1234:5678", False),
        ("::1.2.3.4", False),
        ("::ffff:10.0.0.1", False),
        ("127.example.com", False),
        ("10.0.0.1", False),
        ("localhost", False),
        ("", False),
        (None, False),
    ],
)
def test_is_loopback_peer(remote: str | None, expected: bool) -> None:
    assert is_loopback_peer(remote) is expected
