"""The pytest plugin as another project sees it, and run_stack with external parts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from base64 import b64encode
from pathlib import Path

import pytest

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
    base = dict(authserver_port=0, broker_port=0, appserver_port=0, password_hash_cost=4)
    first_cfg = StackConfig(
        data_dir=tmp_path / "a", authserver_rate_limits={"legacy_revoke": "off"}, **base
    )
    async with run_stack(first_cfg, clock=clock) as first:
        limits = first.authserver.config.rate_limits
        assert limits.rate("legacy", "revoke") is None  # the override reached the AuthServer
        assert str(limits.rate("legacy", "apply")) == "1000/s"  # the rest as the provider's
        cfg = StackConfig(
            data_dir=tmp_path / "b", authserver_url=first.authserver_url, dev_client=False, **base
        )
        async with run_stack(cfg, clock=clock) as second:
            assert second.authserver is None
            assert second.authserver_url == first.authserver_url
            assert second.broker_url != first.broker_url
            assert not (tmp_path / "b" / "authserver").exists()
            # the second AppServer applies at the first AuthServer
            await second.create_accounts(
                [
                    {
                        "client_id": "GID_x@@@y",
                        "secret": "s",
                        "grants": [{"resources": ["x/#"], "actions": "R"}],
                        "enabled": True,
                    }
                ]
            )
            assert second.http is not None
            async with second.http.post(
                f"{second.appserver_url}/v1/tokens",
                json={"resources": ["x/#"], "actions": "R"},
                headers={"Authorization": "Basic " + b64encode(b"GID_x@@@y:s").decode()},
            ) as resp:
                assert resp.status == 200
            async with second.http.get(f"{first.authserver_url}/admin/metrics") as resp:
                text = await resp.text()
            assert 'operation="apply"' in text


def test_stack_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="broker_port"):
        StackConfig(data_dir=tmp_path, broker_port=70000)
    with pytest.raises(ValueError, match="authserver_url"):
        StackConfig(data_dir=tmp_path, authserver_url="ftp://x")
    with pytest.raises(ValueError, match="token_ttl_s"):
        StackConfig(data_dir=tmp_path, token_ttl_s=10)
    with pytest.raises(ValueError, match="unknown rate limit"):
        StackConfig(data_dir=tmp_path, authserver_rate_limits={"legacy_everything": "off"})
