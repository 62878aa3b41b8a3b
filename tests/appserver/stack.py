"""A real mock AuthServer and a real AppServer on free ports, sharing one clock."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from mock_authserver.config import AuthServerConfig
from mock_authserver.runner import AuthServerHandle, run_authserver
from sim.customer.appserver.config import AppServerConfig
from sim.customer.appserver.runner import AppServerHandle, run_appserver
from sim.customer.appserver.upstream import LegacyTokenClient
from sim.shared.clock import Clock

from .conftest import CHEAP, basic

GRANTS = [
    {"resources": ["devices/+/state", "fleet/#"], "actions": "R"},
    {"resources": ["devices/d1/cmd"], "actions": "R,W"},
]


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@dataclass
class Stack:
    auth: AuthServerHandle
    app: AppServerHandle
    http: aiohttp.ClientSession
    clock: Clock
    config: AppServerConfig

    async def put_account(
        self,
        client_id: str = "c1",
        secret: str = "pw",
        grants: list[Any] | None = None,
        enabled: bool = True,
    ) -> dict[str, Any]:
        async with self.http.put(
            f"{self.app.url}/admin/accounts/{client_id}",
            json={
                "secret": secret,
                "grants": GRANTS if grants is None else grants,
                "enabled": enabled,
            },
        ) as resp:
            assert resp.status in (200, 201), await resp.text()
            return dict(await resp.json())

    async def ask(
        self, resources: list[str], actions: str = "R", client_id: str = "c1", secret: str = "pw"
    ) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
        async with self.http.post(
            f"{self.app.url}/v1/tokens",
            json={"resources": resources, "actions": actions},
            headers=basic(client_id, secret),
        ) as resp:
            return resp.status, dict(await resp.json()), resp

    async def auth_metrics(self) -> str:
        async with self.http.get(f"{self.auth.url}/admin/metrics") as resp:
            return await resp.text()

    async def applies(self, code: str | None = "200") -> float:
        labels = {"operation": "apply"} | ({"code": code} if code else {})
        return metric(await self.auth_metrics(), "mqtt_authserver_requests_total", **labels)

    async def app_metrics(self) -> str:
        async with self.http.get(f"{self.app.url}/admin/metrics") as resp:
            assert resp.status == 200
            return await resp.text()

    async def fault(self, **fault: Any) -> None:
        async with self.http.post(f"{self.auth.url}/admin/faults", json=fault) as resp:
            assert resp.status in (200, 201), await resp.text()

    async def clear_faults(self) -> None:
        async with self.http.delete(f"{self.auth.url}/admin/faults") as resp:
            assert resp.status < 300

    async def health(self) -> dict[str, Any]:
        async with self.http.get(f"{self.app.url}/admin/health") as resp:
            return dict(await resp.json())

    def query_client(self) -> LegacyTokenClient:
        c = self.config
        return LegacyTokenClient(
            self.auth.url, c.access_key, c.secret_key, c.instance_id, timeout_s=5
        )


def app_config(auth_url: str, data_dir: Path | None, **overrides: Any) -> AppServerConfig:
    base = AppServerConfig(
        host="127.0.0.1",
        port=0,
        authserver_url=auth_url,
        data_dir=data_dir,
        password_hash_cost=CHEAP,
        seed=1,
    )
    return dataclasses.replace(base, **overrides)


@contextlib.asynccontextmanager
async def authserver(clock: Clock, data_dir: Path) -> AsyncIterator[AuthServerHandle]:
    async with run_authserver(
        AuthServerConfig(host="127.0.0.1", port=0, data_dir=data_dir), clock=clock
    ) as auth:
        yield auth


@contextlib.asynccontextmanager
async def stack(clock: Clock, tmp_path: Path, **overrides: Any) -> AsyncIterator[Stack]:
    async with authserver(clock, tmp_path / "auth") as auth:
        config = app_config(auth.url, tmp_path / "app", **overrides)
        async with run_appserver(config, clock=clock) as app, aiohttp.ClientSession() as http:
            yield Stack(auth, app, http, clock, config)
