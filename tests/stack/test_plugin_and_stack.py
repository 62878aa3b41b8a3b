"""The pytest plugin as another project sees it, and run_stack with external parts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from base64 import b64encode
from dataclasses import replace
from pathlib import Path

import pytest

from mock_authserver.ratelimit import RateLimits
from sim.harness.admin import ClientAccount
from sim.harness.errors import StackError
from sim.harness.stack import StackConfig, run_stack
from sim.shared.clock import ManualClock

pytestmark = pytest.mark.timeout(90)


def _pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_outside.py").write_text(textwrap.dedent(body))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=auto",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=80,
        cwd=tmp_path,  # outside the repo: only the entry-point plugin is in play
    )


def test_plugin_fixtures_work_in_another_project(tmp_path: Path) -> None:
    proc = _pytest(
        tmp_path,
        """
        async def test_uses_fixtures(mqtt_stack, mqtt_client_factory, mqtt_fleet_factory):
            c = await mqtt_client_factory(resources=("test/#",))
            await c.subscribe("test/#")
            await c.publish("test/a", b"x")
            assert (await c.messages.get()).payload == b"x"
            fleet = await mqtt_fleet_factory(3)
            assert fleet.connected_count == 3
            await mqtt_stack.advance(c.token.expire_at - mqtt_stack.clock.now() + 1)
            await mqtt_stack.eventually(lambda: c.counters.reapplies == 1, advance=0.5)
        """,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_plugin_costs_nothing_when_unused(tmp_path: Path) -> None:
    proc = _pytest(
        tmp_path,
        """
        import sys

        def test_nothing_heavy_imported():
            heavy = [m for m in ("sim.harness.stack", "sim.customer.client", "mock_broker",
                                 "amqtt", "gmqtt") if m in sys.modules]
            assert heavy == []
        """,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


async def test_stack_follows_an_external_authserver(tmp_path: Path) -> None:
    clock = ManualClock()
    lifted = RateLimits().with_overrides({"legacy_revoke": "off"})
    base = (
        StackConfig(data_dir=tmp_path / "a")
        .with_free_ports()
        .with_appserver(password_hash_cost=4)
        .with_authserver(rate_limits=lifted)
    )
    async with run_stack(base, clock=clock) as first:
        assert first.authserver is not None
        limits = first.authserver.config.rate_limits
        assert limits.rate("legacy", "revoke") is None  # the override reached the AuthServer
        assert str(limits.rate("legacy", "apply")) == "1000/s"  # the rest as the provider's
        cfg = replace(base, data_dir=tmp_path / "b", authserver_url=first.authserver_url)
        async with run_stack(replace(cfg, dev_client=False), clock=clock) as second:
            assert second.authserver is None
            assert second.authserver_url == first.authserver_url
            assert second.broker_url != first.broker_url
            assert not (tmp_path / "b" / "authserver").exists()
            with pytest.raises(StackError, match="authserver is external"):
                await second.restart("authserver")
            # the second AppServer applies at the first AuthServer
            await second.admin.appserver.import_accounts(
                [ClientAccount("GID_x@@@y", "s", ("x/#",), "R")]
            )
            async with second.admin.http.post(
                f"{second.appserver_url}/v1/tokens",
                json={"resources": ["x/#"], "actions": "R"},
                headers={"Authorization": "Basic " + b64encode(b"GID_x@@@y:s").decode()},
            ) as resp:
                assert resp.status == 200
            metrics = await first.admin.authserver.metrics()
            assert metrics.total("mqtt_authserver_requests_total", operation="apply") == 1


def test_stack_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="port"):
        StackConfig(data_dir=tmp_path).with_broker(port=70000)
    with pytest.raises(ValueError, match="authserver_url"):
        StackConfig(data_dir=tmp_path, authserver_url="ftp://x")
    with pytest.raises(ValueError, match="token_ttl_s"):
        StackConfig(data_dir=tmp_path).with_appserver(token_ttl_s=10)
    with pytest.raises(ValueError, match="AuthServer cannot be left out"):
        StackConfig(data_dir=tmp_path, without=frozenset({"authserver"}))
    with pytest.raises(ValueError, match="unknown parts"):
        StackConfig(data_dir=tmp_path, without=frozenset({"fridge"}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data dirs"):
        StackConfig(data_dir=tmp_path).with_appserver(data_dir=tmp_path / "elsewhere")


def test_stack_config_survives_its_json_form(tmp_path: Path) -> None:
    """What a child process (scenarios.stack_proc) receives is the same configuration."""
    from mock_authserver.config import AccountSpec

    config = (
        StackConfig(data_dir=tmp_path, without=frozenset({"broker"}), dev_client=False)
        .with_free_ports()
        .with_appserver(token_ttl_s=120, refresh_margin_s=30, seed=7)
        .with_broker(expire_notice_lead=12.5)
        .with_authserver(
            accounts=(AccountSpec("ak2", "sk2", ("i2",)),),
            rate_limits=RateLimits().with_overrides(
                {"openapi_revoke": "off", "legacy_apply": "5/s"}
            ),
        )
    )
    doc = json.loads(json.dumps(config.to_json()))
    assert StackConfig.from_json(doc) == config
    assert StackConfig.from_json(StackConfig(data_dir=None).to_json()) == StackConfig(data_dir=None)
