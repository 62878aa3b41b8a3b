"""A real mock AuthServer and a real AppServer on free ports, sharing one clock: the one
stack (sim.harness.stack) without its broker, with helpers the AppServer tests share."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from mock_authserver.config import AuthServerConfig
from mock_authserver.runner import AuthServerHandle, run_authserver
from sim.customer.appserver.config import AppServerConfig
from sim.customer.appserver.runner import AppServerHandle
from sim.customer.appserver.upstream import LegacyTokenClient
from sim.harness.admin import AdminClient
from sim.harness.stack import StackConfig, StackHandle, run_stack
from sim.shared.clock import Clock
from sim.shared.promtext import MetricsSnapshot

from .conftest import CHEAP, basic

GRANTS = [
    {"resources": ["devices/+/state", "fleet/#"], "actions": "R"},
    {"resources": ["devices/d1/cmd"], "actions": "R,W"},
]


@dataclass
class Stack:
    handle: StackHandle

    @property
    def auth(self) -> AuthServerHandle:
        assert self.handle.authserver is not None
        return self.handle.authserver

    @property
    def app(self) -> AppServerHandle:
        assert self.handle.appserver is not None
        return self.handle.appserver

    @property
    def admin(self) -> AdminClient:
        return self.handle.admin

    @property
    def http(self) -> aiohttp.ClientSession:
        return self.handle.admin.http

    @property
    def clock(self) -> Clock:
        return self.handle.clock

    @property
    def config(self) -> AppServerConfig:
        return self.handle.config.appserver

    async def put_account(
        self,
        client_id: str = "c1",
        secret: str = "pw",
        grants: list[Any] | None = None,
        enabled: bool = True,
    ) -> dict[str, Any]:
        return await self.admin.appserver.put_account(
            client_id, secret=secret, grants=GRANTS if grants is None else grants, enabled=enabled
        )

    async def ask(
        self, resources: list[str], actions: str = "R", client_id: str = "c1", secret: str = "pw"
    ) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
        async with self.http.post(
            f"{self.app.url}/v1/tokens",
            json={"resources": resources, "actions": actions},
            headers=basic(client_id, secret),
        ) as resp:
            return resp.status, dict(await resp.json()), resp

    async def applies(self, code: str | None = "200") -> float:
        labels = {"operation": "apply"} | ({"code": code} if code else {})
        metrics = await self.admin.authserver.metrics()
        return metrics.total("mqtt_authserver_requests_total", **labels)

    async def app_metrics(self) -> MetricsSnapshot:
        return await self.admin.appserver.metrics()

    async def fault(self, **fault: Any) -> None:
        await self.admin.authserver.add_fault(fault)

    async def clear_faults(self) -> None:
        await self.admin.authserver.clear_faults()

    async def health(self) -> dict[str, Any]:
        return await self.admin.appserver.health()

    def query_client(self) -> LegacyTokenClient:
        c = self.config
        return LegacyTokenClient(
            self.auth.url, c.access_key, c.secret_key, c.instance_id, timeout_s=5
        )


def app_config(auth_url: str, data_dir: Path | None, **overrides: Any) -> AppServerConfig:
    """An AppServer on its own (one part: no stack), e.g. against a dead AuthServer."""
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
    """An AuthServer on its own (one part: no stack)."""
    async with run_authserver(
        AuthServerConfig(host="127.0.0.1", port=0, data_dir=data_dir), clock=clock
    ) as auth:
        yield auth


@contextlib.asynccontextmanager
async def stack(clock: Clock, tmp_path: Path, **overrides: Any) -> AsyncIterator[Stack]:
    """AuthServer and AppServer (``overrides``: AppServerConfig fields) on ``clock``."""
    config = (
        StackConfig(data_dir=tmp_path / "stack", without=frozenset({"broker"}), dev_client=False)
        .with_free_ports()
        .with_appserver(**{"password_hash_cost": CHEAP, "seed": 1, **overrides})
    )
    async with run_stack(config, clock=clock) as handle:
        yield Stack(handle)
