"""The built-in adapter's account provisioning: the reference AppServer's bulk import
(``POST /admin/accounts:bulk``, docs/appserver.md), named by the built-in adapter file as
``[adapter] provision`` (:data:`~.parse.BUILTIN_TOML`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp

from .model import ClientIdentity

__all__ = ["provision"]

#: Accounts per bulk request (the AppServer takes at most 10,000 per call).
CHUNK = 500


async def provision(
    session: aiohttp.ClientSession,
    appserver_url: str,
    clients: Sequence[ClientIdentity],
    *,
    chunk: int = CHUNK,
) -> None:
    """Create (or update) one account per client, granted exactly its resources and
    actions; raises :class:`RuntimeError` with the AppServer's answer if it refuses."""
    url = appserver_url.rstrip("/") + "/admin/accounts:bulk"
    for start in range(0, len(clients), chunk):
        body = {
            "accounts": [
                {
                    "client_id": c.login,
                    "secret": c.secret,
                    "grants": [{"resources": list(c.resources), "actions": c.actions}],
                    "enabled": True,
                }
                for c in clients[start : start + chunk]
            ]
        }
        async with session.post(url, json=body) as resp:
            answer: Any = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"AppServer bulk import failed: {resp.status} {answer}")
