"""The AuthServer as users run it: CLI process, signals, restart persistence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mock_authserver.config import AuthServerConfig
from mock_authserver.runner import run_authserver

from .conftest import apply_token, call, token_params


async def test_restart_keeps_issued_and_revoked_tokens(tmp_path, http, clock):
    config = AuthServerConfig(data_dir=tmp_path)
    async with run_authserver(config, clock=clock) as auth:
        kept = await apply_token(http, auth, clock)
        gone = await apply_token(http, auth, clock)
        assert (await call(http, auth, "revoke", token_params(gone)))[1]["success"]
    assert (tmp_path / "authserver.sqlite3").exists()
    async with run_authserver(config, clock=clock) as auth:
        assert (await call(http, auth, "query", token_params(kept)))[1]["code"] == 200
        assert (await call(http, auth, "query", token_params(gone)))[1]["code"] == 3
        tid = auth.engine.codec.decode(kept).token_id
        async with http.get(f"{auth.url}/admin/tokens/{tid}") as r:
            assert (await r.json())["status"] == "valid"


async def test_accounts_file_json_and_toml(tmp_path, http, clock):
    from mock_authserver.config import load_accounts_file

    (tmp_path / "a.json").write_text(
        json.dumps({"accounts": [{"access_key_id": "ak2", "secret": "s2", "instances": ["i2"]}]})
    )
    (tmp_path / "a.toml").write_text(
        '[[accounts]]\naccess_key_id = "ak3"\nsecret = "s3"\ninstances = ["i3"]\nenabled = false\n'
    )
    accounts = (
        load_accounts_file(tmp_path / "a.json").accounts
        + load_accounts_file(tmp_path / "a.toml").accounts
    )
    config = AuthServerConfig(data_dir=tmp_path / "d", accounts=accounts)
    async with run_authserver(config, clock=clock) as auth:
        token = await apply_token(http, auth, clock, secret="s2", access_key="ak2", instance="i2")
        assert auth.engine.codec.decode(token).instance_id == "i2"
        q = token_params(token, secret="s3", access_key="ak3")
        assert (await call(http, auth, "query", q))[1]["code"] == 407  # disabled
    (tmp_path / "bad.json").write_text('{"accounts": [{"access_key_id": "x"}]}')
    with pytest.raises(ValueError, match="secret"):
        load_accounts_file(tmp_path / "bad.json")


def test_no_dev_account_flag_is_honoured(tmp_path):
    from mock_authserver.ttl import MemoryRepository, TTLEngine
    from sim.shared.clock import ManualClock

    engine = TTLEngine(ManualClock(), MemoryRepository(), dev_account=None)
    assert engine.accounts() == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_serves_and_stops_cleanly(tmp_path, sig):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sim",
            "authserver",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--clock",
            "manual",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = proc.stdout.readline()
        assert "AuthServer listening on http://127.0.0.1:" in line, proc.stderr.read()
        url = line.split()[3]
        import urllib.request

        with urllib.request.urlopen(f"{url}/admin/clock", timeout=5) as r:
            assert json.load(r)["mode"] == "manual"
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "authserver.sqlite3").exists()


def test_cli_help_names_default_port():
    out = subprocess.run(
        [sys.executable, "-m", "sim", "authserver", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "default 18080" in out


def test_cli_rejects_bad_accounts_file(tmp_path):
    (tmp_path / "a.json").write_text("{nope")
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sim",
            "authserver",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path),
            "--accounts",
            str(tmp_path / "a.json"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "not valid" in proc.stderr
    assert time.monotonic() - started < 30


async def test_issued_tokens_are_on_disk_before_the_answer(tmp_path, http, clock):
    import asyncio
    import sqlite3

    async with run_authserver(AuthServerConfig(data_dir=tmp_path), clock=clock) as auth:
        tokens = await asyncio.gather(*(apply_token(http, auth, clock) for _ in range(20)))
        # Read with a separate connection, as another process would: every row is there.
        db = sqlite3.connect(tmp_path / "authserver.sqlite3")
        try:
            ids = {row[0] for row in db.execute("SELECT token_id FROM tokens")}
        finally:
            db.close()
        assert ids == {auth.engine.codec.decode(t).token_id for t in tokens}


def test_cli_clock_flags():
    import argparse

    from mock_authserver.cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    scaled = config_from_args(parser.parse_args(["--time-scale", "60", "--clock-epoch", "1e9"]))
    assert (scaled.clock.mode, scaled.clock.scale, scaled.clock.epoch) == ("scaled", 60.0, 1e9)
    assert config_from_args(parser.parse_args(["--clock", "manual"])).clock.mode == "manual"
    default = config_from_args(parser.parse_args([]))
    assert (default.port, default.clock.mode, default.admin_allow_remote) == (
        18080,
        "system",
        False,
    )
    with pytest.raises(ValueError):
        config_from_args(parser.parse_args(["--clock", "manual", "--time-scale", "2"]))
