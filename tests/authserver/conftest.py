"""Fixtures of the AuthServer tests: a live server on a free port with a manual clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mock_authserver.config import AuthServerConfig
from mock_authserver.runner import AuthServerHandle, run_authserver
from sim.shared.clock import ManualClock
from sim.shared.protocol.signing import (
    LEGACY_APPLY_SIGNED,
    V3Authorization,
    legacy_sign,
    percent_encode,
    rpc_sign,
    sha256_hex,
    v3_canonical_request,
    v3_sign,
)

START = 1_800_000_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def auth(tmp_path: Path, clock: ManualClock) -> AsyncIterator[AuthServerHandle]:
    async with run_authserver(AuthServerConfig(data_dir=tmp_path / "data"), clock=clock) as a:
        yield a


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def apply_params(
    expire_ms: int,
    *,
    secret: str = "dev-sk",
    access_key: str = "dev-ak",
    actions: str = "R,W",
    resources: str = "a/+,b/#",
    instance: str = "mqtt-dev",
    **override: str,
) -> dict[str, str]:
    """Signed legacy apply parameters (signature over the signed names after overrides)."""
    params = {
        "actions": actions,
        "expireTime": str(expire_ms),
        "instanceId": instance,
        "resources": resources,
        "serviceName": "mq",
        "proxyType": "MQTT",
        "accessKey": access_key,
    }
    params.update(override)
    signed = {k: params[k] for k in LEGACY_APPLY_SIGNED if k in params}
    params["signature"] = legacy_sign(signed, secret)
    return params


def token_params(token: str, *, secret: str = "dev-sk", access_key: str = "dev-ak") -> dict:
    return {
        "token": token,
        "accessKey": access_key,
        "signature": legacy_sign({"token": token}, secret),
    }


async def call(
    http: aiohttp.ClientSession,
    auth: AuthServerHandle,
    op: str,
    params: dict[str, Any],
    method: str = "POST",
    **kw: Any,
) -> tuple[int, dict[str, Any]]:
    url = f"{auth.url}/token/{op}"
    if method == "GET":
        resp = await http.get(url, params=params, **kw)
    else:
        resp = await http.post(url, data=params, **kw)
    async with resp:
        return resp.status, await resp.json()


async def apply_token(http, auth, clock, ttl_s: float = 3600, **kw) -> str:
    status, body = await call(
        http, auth, "apply", apply_params(int((clock.now() + ttl_s) * 1000), **kw)
    )
    assert status == 200 and body["success"], body
    return body["tokenData"]


def v3_request(
    port,
    action,
    query,
    *,
    secret="dev-sk",
    access_key="dev-ak",
    date=None,
    nonce=None,
    version=None,
):
    """A hand-signed V3 (ACS3-HMAC-SHA256) OpenAPI request: ``(url, headers)``."""
    headers = {
        "host": f"127.0.0.1:{port}",
        "x-acs-action": action,
        "x-acs-version": version or "2020-04-20",
        "x-acs-date": date or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": sha256_hex(b""),
    }
    signed = sorted(headers)
    canonical = v3_canonical_request("POST", "/", query, headers, signed, sha256_hex(b""))
    headers["Authorization"] = V3Authorization(
        access_key, signed, v3_sign(canonical, secret)
    ).render()
    url = f"http://127.0.0.1:{port}/?" + "&".join(
        f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(query.items())
    )
    return url, headers


async def post_v3(http, url, headers):
    async with http.post(url, headers=headers, skip_auto_headers=["Content-Type"]) as r:
        return r.status, await r.json()


def rpc_params(action, extra, *, secret="dev-sk", access_key="dev-ak", timestamp=None, nonce=None):
    """Hand-signed RPC v1 OpenAPI parameters (for a GET)."""
    params = {
        "Action": action,
        "Version": "2020-04-20",
        "AccessKeyId": access_key,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "Timestamp": timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Format": "JSON",
        **extra,
    }
    params["Signature"] = rpc_sign("GET", params, secret)
    return params
