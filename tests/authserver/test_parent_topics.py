"""Parent topics per instance (SPEC §4a): engine, SQLite, admin API and accounts file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mock_authserver.config import (
    DEV_ACCOUNT,
    DEV_PARENT_TOPICS,
    MAX_PARENT_TOPICS,
    AccountSpec,
    AuthServerConfig,
    InstanceSpec,
    load_accounts_file,
)
from mock_authserver.runner import run_authserver
from mock_authserver.store import SqliteStore
from mock_authserver.ttl import MemoryRepository, TTLEngine
from sim.shared.clock import ManualClock

DEV_SET = ("bench", "demo", "dev", "devices", "fleet", "locust", "rawrate", "test")


def engine(repo=None, **kw) -> TTLEngine:
    kw.setdefault("dev_account", DEV_ACCOUNT)
    kw.setdefault("dev_instance", DEV_PARENT_TOPICS)
    return TTLEngine(ManualClock(1000.0), repo or MemoryRepository(), **kw)


def test_the_dev_instance_ships_its_documented_set():
    assert engine().parent_topics() == {"mqtt-dev": DEV_SET}
    assert engine(dev_account=None, dev_instance=None).parent_topics() == {}


def test_add_delete_and_rules():
    e = engine(accounts=[AccountSpec("ak2", "s2", ("i2",))])
    assert e.add_parent_topic("i2", "plant")
    assert not e.add_parent_topic("i2", "plant")  # already there
    assert e.parent_topics_of("i2") == ("plant",)
    assert e.parent_topics_of("mqtt-dev") == DEV_SET  # instances are apart
    with pytest.raises(ValueError, match="not owned"):
        e.add_parent_topic("nobody", "plant")
    assert e.delete_parent_topic("i2", "plant")
    assert not e.delete_parent_topic("i2", "plant")
    e.set_parent_topics(InstanceSpec("i2", ("aaa", "bbb")))
    e.set_parent_topics(InstanceSpec("i2", ("bbb", "ccc")))
    assert e.parent_topics_of("i2") == ("bbb", "ccc")


def test_at_most_max_parent_topics_per_instance():
    e = engine(dev_instance=None)
    for i in range(MAX_PARENT_TOPICS):
        e.add_parent_topic("mqtt-dev", f"p{i:04d}")
    with pytest.raises(ValueError, match="parent topics"):
        e.add_parent_topic("mqtt-dev", "onemore")


@pytest.mark.parametrize(
    "topics", [("t",), ("a/b",), ("dev:1",), ("x" * 65,), ("dup", "dup"), "fleet"]
)
def test_instance_spec_refuses_what_the_provider_refuses(topics):
    with pytest.raises(ValueError):
        InstanceSpec("i", topics)


def test_kept_in_sqlite_across_restarts_and_seeded_once(tmp_path):
    path = tmp_path / "a.sqlite3"
    store = SqliteStore(path)
    e = engine(store)
    e.delete_parent_topic("mqtt-dev", "bench")
    e.add_parent_topic("mqtt-dev", "plant")
    store.close()
    store = SqliteStore(path)
    again = engine(store)  # a deleted dev topic is not seeded again
    assert "bench" not in again.parent_topics_of("mqtt-dev")
    assert "plant" in again.parent_topics_of("mqtt-dev")
    store.close()


def test_a_data_dir_older_than_parent_topics_gets_the_dev_set(tmp_path):
    store = SqliteStore(tmp_path / "a.sqlite3")
    engine(store, dev_instance=None)  # as before parent topics existed
    store.close()
    store = SqliteStore(tmp_path / "a.sqlite3")
    assert engine(store).parent_topics_of("mqtt-dev") == DEV_SET
    store.close()


def test_accounts_file_instances_json_and_toml(tmp_path):
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "accounts": [{"access_key_id": "ak2", "secret": "s2", "instances": ["i2"]}],
                "instances": {"i2": {"parent_topics": ["plant", "yard"]}},
            }
        )
    )
    (tmp_path / "a.toml").write_text(
        '[[accounts]]\naccess_key_id = "ak3"\nsecret = "s3"\ninstances = ["i3"]\n'
        '[instances.i3]\nparent_topics = ["line-1"]\n'
    )
    a, b = load_accounts_file(tmp_path / "a.json"), load_accounts_file(tmp_path / "a.toml")
    assert a.instances == (InstanceSpec("i2", ("plant", "yard")),)
    assert b.instances == (InstanceSpec("i3", ("line-1",)),)
    e = engine(accounts=a.accounts + b.accounts, instances=a.instances + b.instances)
    assert e.parent_topics_of("i2") == ("plant", "yard")
    assert e.parent_topics_of("i3") == ("line-1",)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"instances": {"i": {"parent_topics": ["t"]}}}, "3 to 64"),
        ({"instances": {"i": {"parent_topics": ["a:b"]}}}, "letters, digits"),
        ({"instances": {"i": {"parent_topics": "fleet"}}}, "must be a list"),
        ({"instances": {"i": {"topics": []}}}, "unknown keys"),
        ({"instances": ["i"]}, "expected an object under 'instances'"),
        ({"instances": {"i": 3}}, "is not an object"),
        ({"accounts": [], "extra": 1}, "unknown top-level keys"),
    ],
)
def test_accounts_file_errors_say_what_and_where(tmp_path, data, fragment):
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=fragment) as err:
        load_accounts_file(tmp_path / "bad.json")
    assert "bad.json" in str(err.value)


def test_an_instance_no_account_owns_is_refused_at_start():
    with pytest.raises(ValueError, match="not owned by any account"):
        engine(instances=[InstanceSpec("ghost", ("plant",))])


def test_cli_refuses_a_file_with_an_unowned_instance(tmp_path):
    (tmp_path / "a.json").write_text(
        json.dumps({"instances": {"ghost": {"parent_topics": ["plant"]}}})
    )
    argv = ["authserver", "--port", "0", "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(
        [sys.executable, "-m", "sim.harness.cli", *argv, "--accounts", str(tmp_path / "a.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "not owned by any account" in done.stderr and "Traceback" not in done.stderr


# -- the admin API -------------------------------------------------------------------------------


async def test_admin_api(auth, http):
    base = f"{auth.url}/admin/instances"
    async with http.get(f"{base}/mqtt-dev/topics") as r:
        assert r.status == 200
        assert await r.json() == {
            "instance_id": "mqtt-dev",
            "owners": ["dev-ak"],
            "parent_topics": list(DEV_SET),
        }
    async with http.put(f"{base}/mqtt-dev/topics/plant") as r:
        assert r.status == 201 and (await r.json())["created"] is True
    async with http.put(f"{base}/mqtt-dev/topics/plant") as r:
        assert r.status == 200 and (await r.json())["created"] is False
    assert "plant" in auth.engine.parent_topics_of("mqtt-dev")
    async with http.put(f"{base}/mqtt-dev/topics/ab") as r:
        assert r.status == 400 and "3 to 64" in (await r.json())["message"]
    async with http.put(f"{base}/nowhere/topics/plant") as r:
        assert r.status == 404
    async with http.delete(f"{base}/mqtt-dev/topics/plant") as r:
        assert r.status == 200
    async with http.delete(f"{base}/mqtt-dev/topics/plant") as r:
        assert r.status == 404
    async with http.put(f"{base}/mqtt-dev/topics", json={"parent_topics": ["dev", "yard"]}) as r:
        assert r.status == 200 and (await r.json())["parent_topics"] == ["dev", "yard"]
    async with http.put(f"{base}/mqtt-dev/topics", json={"parent_topics": ["x/y"]}) as r:
        assert r.status == 400
    assert auth.engine.parent_topics_of("mqtt-dev") == ("dev", "yard")  # nothing lost
    async with http.get(f"{base}/nowhere/topics") as r:
        assert r.status == 404
    async with http.get(base) as r:
        assert (await r.json())["instances"] == [
            {"instance_id": "mqtt-dev", "owners": ["dev-ak"], "parent_topics": ["dev", "yard"]}
        ]


async def test_config_instances_reach_the_running_server(tmp_path, http, clock):
    config = AuthServerConfig(
        data_dir=tmp_path / "d",
        accounts=(AccountSpec("ak2", "s2", ("i2",)),),
        instances=(InstanceSpec("i2", ("plant",)),),
    )
    async with (
        run_authserver(config, clock=clock) as auth,
        http.get(f"{auth.url}/admin/instances/i2/topics") as r,
    ):
        assert (await r.json())["parent_topics"] == ["plant"]


def test_brokers_get_parent_topics_in_the_bootstrap_and_each_change_in_the_feed():
    e = engine(accounts=[AccountSpec("ak2", "s2", ("i2",))])
    assert e.bootstrap().parent_topics == {"mqtt-dev": DEV_SET}  # seeded: no event
    start = e.seq
    e.add_parent_topic("i2", "plant")
    e.add_parent_topic("i2", "plant")  # no change, no event
    e.set_parent_topics(InstanceSpec("i2", ("line", "yard")))  # one event for the set
    e.delete_parent_topic("i2", "line")
    events = e.feed(start).events
    assert [(ev.kind, ev.instance_id, ev.parent_topics) for ev in events] == [
        ("parent_topics", "i2", ("plant",)),
        ("parent_topics", "i2", ("line", "yard")),
        ("parent_topics", "i2", ("yard",)),
    ]
    assert e.bootstrap().parent_topics == {"i2": ("yard",), "mqtt-dev": DEV_SET}
