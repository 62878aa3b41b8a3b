"""The TTL engine on its own: no loop, no port, a manual clock, an in-memory repository."""

from __future__ import annotations

import pytest

from mock_authserver.config import DEV_ACCOUNT, AccountSpec
from mock_authserver.errors import (
    AccessKeyDisabled,
    AccessKeyNotFound,
    ParameterError,
    RevokeFailed,
    RevokeForbidden,
    TokenExpired,
    TokenForged,
    TokenGenerationError,
    TokenRevoked,
    UnknownInstance,
)
from mock_authserver.ttl import MAX_TTL_MS, MemoryRepository, TTLEngine
from mock_authserver.validation import ApplyRequest
from sim.shared.clock import ManualClock

NOW = 1_800_000_000.0
NOW_MS = int(NOW * 1000)


def make(repo=None, clock=None, **kw):
    clock = clock or ManualClock(NOW)
    repo = repo or MemoryRepository()
    return TTLEngine(clock, repo, dev_account=DEV_ACCOUNT, **kw), clock, repo


def req(expire_ms, ak="dev-ak", inst="mqtt-dev", resources=("a/+",), actions=("R",)):
    return ApplyRequest(ak, inst, frozenset(actions), tuple(resources), expire_ms)


def test_issue_and_query_until_expiry():
    engine, clock, _ = make()
    issued = engine.apply(req(NOW_MS + 120_000))
    claims = engine.query("dev-ak", issued.token)
    assert claims.expire_ms == NOW_MS + 120_000
    assert claims.issued_ms == NOW_MS
    clock.advance(119.9)
    engine.query("dev-ak", issued.token)
    clock.advance(0.1)
    with pytest.raises(TokenExpired):
        engine.query("dev-ak", issued.token)


def test_minimum_ttl_is_60_s_of_virtual_time():
    engine, clock, _ = make()
    with pytest.raises(ParameterError, match="at least now"):
        engine.apply(req(NOW_MS + 59_999))
    engine.apply(req(NOW_MS + 60_000))
    clock.advance(1000)  # "now" is the virtual clock's, not the wall's
    with pytest.raises(ParameterError):
        engine.apply(req(NOW_MS + 60_000))


@pytest.mark.parametrize("asked", [NOW_MS + MAX_TTL_MS + 1, 10**30])
def test_expiry_capped_at_30_days(asked):
    engine, _, _ = make()
    assert engine.apply(req(asked)).claims.expire_ms == NOW_MS + 30 * 86400 * 1000


def test_unknown_access_key_instance_and_disabled_account():
    engine, _, _ = make()
    with pytest.raises(AccessKeyNotFound):
        engine.apply(req(NOW_MS + 120_000, ak="nobody"))
    with pytest.raises(UnknownInstance):
        engine.apply(req(NOW_MS + 120_000, inst="someone-elses"))
    engine.put_account(AccountSpec("dev-ak", "dev-sk", ("mqtt-dev",), enabled=False))
    with pytest.raises(AccessKeyDisabled):
        engine.apply(req(NOW_MS + 120_000))


def test_revoke_then_query_and_feed():
    engine, _, _repo = make()
    seen = []
    engine.add_listener(seen.append)
    token = engine.apply(req(NOW_MS + 120_000)).token
    before = engine.seq
    engine.revoke("dev-ak", token)
    with pytest.raises(TokenRevoked):
        engine.query("dev-ak", token)
    assert engine.seq == before + 1
    assert seen[-1].kind == "revoke" and seen[-1].seq == engine.seq
    engine.revoke("dev-ak", token)  # idempotent, no second event
    assert engine.seq == before + 1
    feed = engine.feed(before)
    assert [e.kind for e in feed.events] == ["revoke"]
    assert feed.seq == engine.seq
    assert engine.feed(engine.seq).to_json() == {"seq": engine.seq, "events": []}
    assert engine.feed(engine.seq + 5).reset is True
    boot = engine.bootstrap().to_json()
    assert boot["revoked"] == [{"token_id": seen[-1].token_id, "expire_ms": NOW_MS + 120_000}]


def test_feed_reset_when_after_is_older_than_kept():
    engine, _, _ = make(feed_keep=2)
    for i in range(5):
        engine.put_account(AccountSpec(f"ak{i}", "s", ("i",)))
    assert engine.feed(0).reset is True
    assert engine.feed(engine.seq - 1).to_json()["events"][0]["access_key_id"] == "ak4"


def test_other_accounts_token_is_forged_for_query_and_fails_revoke():
    engine, _, _ = make()
    engine.put_account(AccountSpec("ak2", "s2", ("i2",)))
    engine.put_account(AccountSpec("dev-ak", "dev-sk", ("mqtt-dev", "mqtt-dev2")))
    token = engine.apply(req(NOW_MS + 120_000)).token
    with pytest.raises(TokenForged):
        engine.query("ak2", token)
    with pytest.raises(TokenForged):  # the caller's other instance: not this token's
        engine.query("dev-ak", token, instance_id="mqtt-dev2")
    with pytest.raises(RevokeForbidden):
        engine.revoke("ak2", token)
    with pytest.raises(RevokeForbidden):
        engine.revoke("dev-ak", token, instance_id="mqtt-dev2")
    with pytest.raises(RevokeFailed) as forged:
        engine.revoke("dev-ak", "bm90IGEgdG9rZW4=")
    assert type(forged.value) is RevokeFailed
    with pytest.raises(TokenForged):
        engine.query("dev-ak", token[:-4] + "AAA=")


@pytest.mark.parametrize("op", ["apply", "query", "revoke"])
def test_an_instance_not_the_callers_is_refused_as_the_provider_does(op):
    # SPEC §3b: InstancePermissionCheckFailed for an unknown instance and for another
    # account's alike (the OpenAPI names an instance on every call; the legacy
    # query/revoke do not, so they pass None and are not checked).
    engine, _, _ = make()
    engine.put_account(AccountSpec("ak2", "s2", ("i2",)))
    token = engine.apply(req(NOW_MS + 120_000)).token
    for instance in ("i2", "nowhere"):
        with pytest.raises(UnknownInstance) as err:
            if op == "apply":
                engine.apply(req(NOW_MS + 120_000, inst=instance))
            elif op == "query":
                engine.query("dev-ak", token, instance_id=instance)
            else:
                engine.revoke("dev-ak", token, instance_id=instance)
        assert (err.value.openapi_code, err.value.http_status) == (
            "InstancePermissionCheckFailed",
            400,
        )


def test_too_large_token_is_a_generation_error():
    engine, _, _ = make()
    resources = sorted(f"t/{i:03d}/" + "x" * 1000 for i in range(100))
    with pytest.raises(TokenGenerationError):
        engine.apply(req(NOW_MS + 120_000, resources=resources))


def test_restart_keeps_key_accounts_revocations_and_feed():
    engine, clock, repo = make()
    token = engine.apply(req(NOW_MS + 120_000)).token
    other = engine.apply(req(NOW_MS + 120_000)).token
    engine.revoke("dev-ak", token)
    engine.put_account(AccountSpec("ak2", "s2", ("i2",)))
    seq = engine.seq
    again = TTLEngine(clock, repo, dev_account=DEV_ACCOUNT)
    with pytest.raises(TokenRevoked):
        again.query("dev-ak", token)
    again.query("dev-ak", other)
    assert again.seq == seq
    assert again.get_account("ak2") is not None
    assert again.feed(seq - 1).events[0].kind == "account"


def test_dev_account_only_in_a_fresh_store():
    engine, clock, repo = make()
    engine.delete_account("dev-ak")
    again = TTLEngine(clock, repo, dev_account=DEV_ACCOUNT)
    assert again.get_account("dev-ak") is None


def test_sweep_forgets_expired_revocations():
    engine, clock, _ = make()
    token = engine.apply(req(NOW_MS + 120_000)).token
    engine.revoke("dev-ak", token)
    assert engine.sweep() == 0
    clock.advance(121)
    assert engine.sweep() == 1
    assert engine.bootstrap().revoked == ()
    with pytest.raises(TokenExpired):
        engine.query("dev-ak", token)


def test_inspect():
    engine, clock, _ = make()
    issued = engine.apply(req(NOW_MS + 120_000, actions=("R", "W")))
    info = engine.inspect(issued.claims.token_id)
    assert info["status"] == "valid" and info["actions"] == ["R", "W"]
    assert info["revoked_ms"] is None
    clock.advance(7)
    engine.revoke("dev-ak", issued.token)
    info = engine.inspect(issued.claims.token_id)
    assert info["status"] == "revoked"
    # when: the device audit tells a token replaced because it was revoked
    assert info["revoked_ms"] == NOW_MS + 7000
    assert engine.inspect("nope") is None
