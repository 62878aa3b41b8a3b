"""The AuthServer's legacy token API as the broker tests call it (dev account)."""

from __future__ import annotations

import aiohttp

from sim.shared.protocol.signing import LEGACY_APPLY_SIGNED, legacy_sign

AK, SK, INSTANCE = "dev-ak", "dev-sk", "mqtt-dev"


async def apply_token(
    http: aiohttp.ClientSession,
    auth_url: str,
    expire_ms: int,
    actions: str = "R,W",
    resources: str = "a/+,b/#",
) -> str:
    """``/token/apply`` for the dev account; the token."""
    params = {
        "actions": actions, "expireTime": str(expire_ms), "instanceId": INSTANCE,
        "resources": resources, "serviceName": "mq", "proxyType": "MQTT", "accessKey": AK,
    }  # fmt: skip
    params["signature"] = legacy_sign({k: params[k] for k in LEGACY_APPLY_SIGNED}, SK)
    async with http.post(f"{auth_url}/token/apply", data=params) as resp:
        body = await resp.json()
    assert body["success"], body
    return str(body["tokenData"])


async def revoke_token(http: aiohttp.ClientSession, auth_url: str, token: str) -> None:
    params = {"token": token, "accessKey": AK, "signature": legacy_sign({"token": token}, SK)}
    async with http.post(f"{auth_url}/token/revoke", data=params) as resp:
        body = await resp.json()
    assert body["success"], body
