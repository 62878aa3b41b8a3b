"""The one stack in a child process (scenarios.stack_proc): its levers over the control
API, its configuration kept off the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from scenarios.env import scenario_stack
from scenarios.stack_proc import subprocess_environment
from sim.harness.admin import ClientAccount
from sim.shared.devaccount import DEV_SECRET_KEY

pytestmark = pytest.mark.timeout(90)


async def test_child_stack_levers_and_a_secret_free_command_line() -> None:
    config = scenario_stack().with_appserver(secret_key="not-on-the-command-line")
    async with subprocess_environment(config) as env:
        levers = env.levers
        assert levers is not None and env.embedded
        pid = getattr(levers, "pid")  # noqa: B009 - the child's pid, for /proc
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()  # noqa: ASYNC240 - procfs
        assert b"not-on-the-command-line" not in cmdline and DEV_SECRET_KEY.encode() not in cmdline
        assert b"scenarios.stack_proc" in cmdline
        # The AppServer restarts on its port with its data: the account is still there.
        await env.admin.appserver.import_accounts([ClientAccount("GID_c@@@1", "pw", ("c/#",))])
        url = env.endpoints.appserver_url
        await env.restart("appserver")
        assert (await env.admin.appserver.account("GID_c@@@1"))["enabled"] is True
        assert env.endpoints.appserver_url == url
        assert await env.kick_all() == 0  # nobody connected
        cpu = env.stack_cpu_seconds()
        assert cpu is not None and cpu > 0
