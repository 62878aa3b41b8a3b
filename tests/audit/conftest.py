"""A stack of ours with the broker's metrics port open (where ``GET /audit`` is), on a
manual clock: devices that run in real time (shell loops) see the stack's time stand
still, so what the audit judges is their behaviour, never the machine's speed."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sim.harness.stack import StackConfig, StackHandle, run_stack
from sim.shared.clock import Clock, ManualClock
from sim.shared.devaccount import DEV_INSTANCE


def need_mosquitto_clients() -> None:
    """The shell devices are Debian's ``mosquitto-clients`` (``.ci/run`` installs it);
    a machine without it fails the test rather than skipping it in CI."""
    if shutil.which("mosquitto_pub") is None:
        pytest.fail("mosquitto_pub not found: apt-get install mosquitto-clients (.ci/run does)")


@contextlib.asynccontextmanager
async def audited_stack(tmp_path: Path, clock: Clock | None = None) -> AsyncIterator[StackHandle]:
    config = (
        StackConfig(data_dir=tmp_path / "stack", dev_client=False)
        .with_free_ports()
        .with_appserver(password_hash_cost=4, seed=0)
        .with_broker(metrics_port=0)
    )
    # The manual clock starts at the real time (SPEC §2), so an AppServer on the wall
    # clock (a foreign one) asks for expiry times the AuthServer finds in the future.
    clock = clock or ManualClock(time.time())
    async with run_stack(config, clock=clock) as handle:
        await handle.admin.authserver.add_parent_topic(DEV_INSTANCE, "shop")
        yield handle


def metrics_url(handle: StackHandle) -> str:
    assert handle.broker is not None and handle.broker.metrics_port is not None
    return f"http://127.0.0.1:{handle.broker.metrics_port}"
