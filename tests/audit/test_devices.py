"""Devices that are not ours -- shell loops around ``mosquitto_pub`` and ``curl`` -- against
our broker and a foreign AppServer (its own process), found by ``mqtt-token-sim audit``
with the right rule and client id (docs/your-appserver.md "The device audit")."""

from __future__ import annotations

import asyncio
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

from sim.harness.stack import StackHandle
from tests.clirun import cli_async

from ..check.conftest import foreign_appserver
from .conftest import audited_stack, metrics_url, need_mosquitto_clients

#: Asks the AppServer for a token before every connect (the seed: "persistence of the
#: tokens ... to avoid applying for the same token during each reconnection").
ASKS_EVERY_TIME = r"""
set -u
for i in 1 2 3 4; do
  answer=$(curl -sf -u "$DEVICE:$KEY" -H 'Content-Type: application/json' \
    -d "{\"topics\": [\"shop/dev-1/#\"], \"access\": \"R,W\"}" "$APPSERVER/api/mqtt/token") \
    || exit 3
  user=$(printf '%s' "$answer" | sed -n 's/.*"username": *"\([^"]*\)".*/\1/p')
  pass=$(printf '%s' "$answer" | sed -n 's/.*"password": *"\([^"]*\)".*/\1/p')
  mosquitto_pub -h 127.0.0.1 -p "$PORT" -i "$DEVICE" -u "$user" -P "$pass" \
    -t "shop/dev-1/t" -m "reading $i" -q 1 || exit 4
done
"""

#: Retries at once, as long as it is refused (no backoff, no jitter).
RETRIES_AT_ONCE = r"""
set -u
n=0
until mosquitto_pub -h 127.0.0.1 -p "$PORT" -i "$DEVICE" -u "$USER" -P "$PASS" \
    -t "shop/dev-2/t" -m hi -q 1 2>/dev/null; do
  n=$((n + 1))
  [ "$n" -ge 15 ] && exit 0
done
exit 5
"""


async def sh(script: str, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def audit_cli(*args: str) -> tuple[int, str, str]:
    return await cli_async("--log-level", "WARNING", "audit", *args)


async def ask_once(url: str, device: str, key: str, topics: list[str]) -> dict[str, str]:
    code, out = await sh(
        'curl -sf -u "$DEVICE:$KEY" -H "Content-Type: application/json" -d "$BODY" "$URL"',
        DEVICE=device,
        KEY=key,
        URL=url + "/api/mqtt/token",
        BODY=json.dumps({"topics": topics, "access": "R,W"}),
    )
    assert code == 0, out
    creds: dict[str, str] = json.loads(out)["mqtt"]
    return creds


async def test_shell_devices_are_flagged_by_the_audit_command(tmp_path: Path) -> None:
    need_mosquitto_clients()
    async with (
        audited_stack(tmp_path) as handle,
        # An AppServer without a cache, as many are: each ask is a new token, which the
        # broker can tell from the one before (with a caching AppServer the device gets
        # the same token back, and the broker sees nothing wrong: docs/your-appserver.md).
        foreign_appserver(handle, tmp_path / "f.sqlite", "--no-cache", manual=False) as foreign,
    ):
        port = str(handle.broker.port if handle.broker else 0)
        code, out = await sh(
            ASKS_EVERY_TIME, DEVICE="GID_shop@@@dev-1", KEY="secret-1", APPSERVER=foreign.url,
            PORT=port,
        )  # fmt: skip
        assert code == 0, out
        creds = await ask_once(foreign.url, "GID_shop@@@dev-2", "secret-2", ["shop/dev-2/#"])
        await handle.advance(2 * 3600)  # the device keeps a token that expired
        code, out = await sh(
            RETRIES_AT_ONCE, DEVICE="GID_shop@@@dev-2", USER=creds["username"],
            PASS=creds["password"], PORT=port,
        )  # fmt: skip
        assert code == 0, out  # refused 15 times in a row

        json_file, junit_file = tmp_path / "audit.json", tmp_path / "audit.xml"
        code, out, err = await audit_cli(
            "--broker-metrics", metrics_url(handle), "--authserver", handle.authserver_url,
            "--json", str(json_file), "--junit", str(junit_file),
        )  # fmt: skip
        assert code == 1, (out, err)
        doc = json.loads(json_file.read_text())
        by_rule: dict[str, set[str]] = {}
        for f in doc["findings"]:
            by_rule.setdefault(f["rule"], set()).update(f["client_ids"])
        assert by_rule == {
            "new-token-while-valid": {"GID_shop@@@dev-1"},
            "dead-token-reuse": {"GID_shop@@@dev-2"},
            "tight-retry": {"GID_shop@@@dev-2"},
        }
        (every,) = [f for f in doc["findings"] if f["rule"] == "new-token-while-valid"]
        assert every["count"] == 3  # four connects, three with a new token
        # the AuthServer's word on the tokens named: issued then, never revoked (expired
        # by now: the clock moved two hours since)
        prev = every["evidence"]["previous_token_id"]
        facts = every["evidence"]["authserver"][prev]
        assert facts["issued_ms"] == every["evidence"]["previous_issued_ms"]
        assert facts["status"] == "expired" and facts["revoked_ms"] is None
        assert "new-token-while-valid" in out and "GID_shop@@@dev-1" in out
        assert creds["password"].split("|", 1)[1] not in json_file.read_text()  # ids only
        cases = {c.get("name"): c.find("failure") for c in ET.parse(junit_file).iter("testcase")}  # noqa: S314 - our own file
        assert cases["tight-retry"] is not None and "GID_shop@@@dev-2" in (
            cases["tight-retry"].get("message") or ""
        )
        assert cases["reconnect-lockstep"] is None

        code, out, _ = await audit_cli(
            "--broker-metrics", metrics_url(handle), "--ignore", "new-token-while-valid",
            "--ignore", "dead-token-reuse", "--ignore", "tight-retry",
        )  # fmt: skip
        assert code == 0 and "device audit: clean" in out


async def test_the_audit_command_could_not_run(tmp_path: Path) -> None:
    code, out, err = await audit_cli("--broker-metrics", "http://127.0.0.1:9")
    assert code == 2 and out == ""
    assert err.startswith("mqtt-token-sim audit: ") and err.count("\n") == 1
    assert "not reachable" in err


async def _clean_stack_audit(handle: StackHandle) -> tuple[int, str]:
    code, out, _ = await audit_cli("--broker-metrics", metrics_url(handle))
    return code, out


async def test_no_device_no_finding(tmp_path: Path) -> None:
    async with audited_stack(tmp_path) as handle:
        code, out = await _clean_stack_audit(handle)
        assert code == 0 and out.startswith("device audit: clean"), out
