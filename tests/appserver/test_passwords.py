"""Salted slow hashes and the cache of verified credentials."""

from __future__ import annotations

import time

from sim.customer.appserver.passwords import VerifiedCache, dummy_hash, hash_secret, verify_secret


def test_hash_is_salted_and_verifies() -> None:
    a, b = hash_secret("s3cret", 4), hash_secret("s3cret", 4)
    assert a != b  # salted
    assert "s3cret" not in a
    assert a.startswith("scrypt$4$")
    assert verify_secret("s3cret", a) and verify_secret("s3cret", b)
    assert not verify_secret("s3cret!", a)


def test_malformed_hash_verifies_nothing() -> None:
    for bad in (
        "",
        "plain",
        "scrypt$4$8$1$!!$!!",
        "md5$4$8$1$AA==$AA==",
        "scrypt$99$8$1$AA==$AA==",
    ):
        assert not verify_secret("x", bad)
    assert not verify_secret("x", dummy_hash(4))


def test_cost_makes_the_hash_slow_and_the_cache_fast() -> None:
    """The production cost is slow on purpose; the cache makes it once per period."""
    encoded = hash_secret("pw", 14)
    t0 = time.perf_counter()
    assert verify_secret("pw", encoded)
    slow = time.perf_counter() - t0
    cache = VerifiedCache(60, 1000)
    cache.remember("c", "pw", encoded, now=0)
    t0 = time.perf_counter()
    for _ in range(1000):
        assert cache.check("c", "pw", encoded, now=1)
    fast = (time.perf_counter() - t0) / 1000
    assert slow > 0.005  # scrypt N=2**14: tens of ms
    assert fast * 100 < slow


def test_cache_keys_never_hold_the_plaintext() -> None:
    cache = VerifiedCache(60, 10, key=b"k" * 32)
    cache.remember("client", "hunter2", "h", now=0)
    assert all(b"hunter2" not in d for d in cache._entries)
    assert "hunter2" not in repr(list(cache._entries.values()))


def test_cache_misses_on_wrong_secret_expiry_changed_hash_and_forget() -> None:
    cache = VerifiedCache(10, 10)
    cache.remember("c", "pw", "h1", now=0)
    assert cache.check("c", "pw", "h1", now=9.9)
    assert not cache.check("c", "other", "h1", now=1)
    assert not cache.check("d", "pw", "h1", now=1)
    assert not cache.check("c", "pw", "h2", now=1)  # the secret was changed
    cache.remember("c", "pw", "h1", now=0)
    assert not cache.check("c", "pw", "h1", now=10)  # expired
    cache.remember("c", "pw", "h1", now=0)
    cache.forget("c")
    assert not cache.check("c", "pw", "h1", now=1)


def test_cache_is_bounded() -> None:
    cache = VerifiedCache(60, 3)
    for i in range(5):
        cache.remember(f"c{i}", "pw", "h", now=0)
    assert len(cache) == 3
    assert not cache.check("c0", "pw", "h", now=1)
    assert cache.check("c4", "pw", "h", now=1)
