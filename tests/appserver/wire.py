"""Talking to a real AppServer and a real mock AuthServer over HTTP, for the tests of
account changes and revocation (docs/appserver.md "Account changes" and "Revocation
queue").  Only public and admin HTTP APIs, the admin ones through the one admin client
(sim.harness.admin)."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from sim.harness.admin import AppServerAdmin, AuthServerAdmin
from sim.shared.waiting import wait_until

from .conftest import basic

#: A wide grant, and what "narrowed" keeps of it.
WIDE = [{"resources": ["fleet/#", "devices/#"], "actions": "R,W"}]
NARROW = [{"resources": ["fleet/#"], "actions": "R"}]
KEEP = (["fleet/x"], "R")  # allowed by WIDE and NARROW
LOSE = (["devices/d1/cmd"], "W")  # allowed by WIDE only


async def ask(
    http: aiohttp.ClientSession, url: str, client_id: str, what: tuple[list[str], str]
) -> tuple[int, dict[str, Any]]:
    resources, actions = what
    async with http.post(
        f"{url}/v1/tokens",
        json={"resources": resources, "actions": actions},
        headers=basic(client_id, "pw"),
    ) as resp:
        return resp.status, dict(await resp.json())


async def bulk(
    http: aiohttp.ClientSession, url: str, accounts: list[dict[str, Any]]
) -> dict[str, Any]:
    return dict(await AppServerAdmin(url, http, 30).import_accounts(accounts))


async def fault(http: aiohttp.ClientSession, auth_url: str, **spec: Any) -> None:
    await AuthServerAdmin(auth_url, http, 30).add_fault(spec)


async def total(http: aiohttp.ClientSession, url: str, name: str, **labels: str) -> float:
    """A counter or gauge of the AppServer's ``/admin/metrics``, summed over ``labels``."""
    return (await AppServerAdmin(url, http, 30).metrics()).total(name, **labels)


async def revokes_seen(http: aiohttp.ClientSession, auth_url: str, **labels: str) -> float:
    """Revoke requests the AuthServer received (whatever their answer)."""
    metrics = await AuthServerAdmin(auth_url, http, 30).metrics()
    return metrics.total("mqtt_authserver_requests_total", operation="revoke", **labels)


def token_id(token: str) -> str:
    """The id inside a token (SPEC §3c codec: version, kid, JSON claims, 16-byte MAC);
    read without the key, only to ask the AuthServer's admin API about it."""
    raw = base64.b64decode(token)
    return str(json.loads(raw[2 + raw[1] : -16])["id"])


async def token_status(http: aiohttp.ClientSession, auth_url: str, token: str) -> str:
    """``valid``, ``revoked`` or ``expired``, as the AuthServer's admin API says."""
    return str((await AuthServerAdmin(auth_url, http, 30).token(token_id(token)))["status"])


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    """Poll an async condition with a deadline (real seconds); fail if it never holds."""
    await wait_until(check, timeout=within, what=getattr(check, "__name__", "the condition"))
