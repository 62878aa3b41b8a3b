"""The one client of the parts' admin APIs (docs/CONTRACTS.md, docs/appserver.md).

Everything the harness, the scenarios, the tests and the benchmarks ask of the
AuthServer's and the AppServer's ``/admin/`` routes goes through here::

    async with AdminClient(authserver_url, appserver_url) as admin:
        await admin.authserver.add_fault({"operation": "apply", "kind": "outage",
                                          "seconds": 60})
        await admin.appserver.import_accounts([ClientAccount("GID_a@@@d1", "pw", ("a/#",))])
        applies = (await admin.authserver.metrics()).total(
            "mqtt_authserver_requests", operation="apply")

Errors: :class:`AdminError` (which call failed and why), :class:`AdminUnreachable`
(nothing answered), :class:`AdminRefused` (an error status); :mod:`sim.harness.errors`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from sim.shared.clockspec import ClockMode
from sim.shared.promtext import MetricsSnapshot, parse_metrics

from .errors import AdminError, AdminRefused, AdminUnreachable

__all__ = [
    "AdminClient",
    "AdminError",
    "AdminRefused",
    "AdminUnreachable",
    "AppServerAdmin",
    "AuthServerAdmin",
    "BrokerAdmin",
    "ClientAccount",
    "ClockInfo",
]

#: Accounts per bulk-import request (the AppServer takes up to 10,000 and 4 MiB).
IMPORT_CHUNK = 1000


@dataclass(frozen=True)
class ClockInfo:
    """``GET /admin/clock``: the AuthServer's virtual time."""

    now_ms: int
    scale: float
    mode: ClockMode


@dataclass(frozen=True)
class ClientAccount:
    """An AppServer client account with one grant (the bulk-import shape)."""

    client_id: str
    secret: str
    resources: tuple[str, ...]
    actions: str = "R,W"
    enabled: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "secret": self.secret,
            "grants": [{"resources": list(self.resources), "actions": self.actions}],
            "enabled": self.enabled,
        }


def _message(body: Any, text: str) -> str:
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return str(body["message"])
    return text[:300] or "(no body)"


class _Api:
    """Calls to one part's admin API."""

    part = "part"
    health_path = "/admin/health"
    metrics_path = "/admin/metrics"

    def __init__(self, base_url: str, http: aiohttp.ClientSession, timeout_s: float):
        self.base_url = base_url.rstrip("/")
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _call(self, method: str, path: str, *, body: Any = None, text: bool = False) -> Any:
        url = f"{self.base_url}{path}"
        what = f"{self.part} {method} {path}"
        try:
            async with self._http.request(method, url, json=body, timeout=self._timeout) as resp:
                raw = await resp.text()
                status = resp.status
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise AdminUnreachable(
                f"{what}: the {self.part} at {self.base_url} is not reachable: "
                f"{exc or type(exc).__name__}"
            ) from None
        doc: Any = None
        if not text or status >= 300:
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                if status < 300:
                    raise AdminError(f"{what} answered something that is not JSON") from None
        if status >= 300:
            raise AdminRefused(what, status, _message(doc, raw))
        return raw if text else doc

    async def _object(self, method: str, path: str, *, body: Any = None) -> dict[str, Any]:
        doc = await self._call(method, path, body=body)
        if not isinstance(doc, dict):
            raise AdminError(f"{self.part} {method} {path} answered {doc!r}, not an object")
        return doc

    async def health(self) -> dict[str, Any]:
        """``GET /admin/health`` (the broker's ``/health``)."""
        return await self._object("GET", self.health_path)

    async def metrics(self) -> MetricsSnapshot:
        """``GET /admin/metrics`` (the broker's ``/metrics``), parsed."""
        text = await self._call("GET", self.metrics_path, text=True)
        try:
            return parse_metrics(text)
        except ValueError as exc:
            raise AdminError(f"{self.part} metrics are not Prometheus text: {exc}") from None


class AuthServerAdmin(_Api):
    """The mock AuthServer's admin API (loopback only by default)."""

    part = "AuthServer"

    async def feed_position(self) -> int:
        """The revocation feed's last sequence number (``seq`` of the health answer)."""
        return int((await self.health())["seq"])

    async def clock(self) -> ClockInfo:
        doc = await self._object("GET", "/admin/clock")
        return ClockInfo(int(doc["now_ms"]), float(doc["scale"]), doc["mode"])

    async def advance_clock(self, seconds: float) -> ClockInfo:
        """Advance the stack's manual clock (409 :class:`AdminRefused` on another)."""
        doc = await self._object("POST", "/admin/clock/advance", body={"seconds": seconds})
        return ClockInfo(int(doc["now_ms"]), float(doc["scale"]), doc["mode"])

    async def bootstrap(self) -> dict[str, Any]:
        """What a broker needs to verify tokens offline (keys, accounts, revoked, seq)."""
        return await self._object("GET", "/admin/broker/bootstrap")

    async def token(self, token_id: str) -> dict[str, Any]:
        return await self._object("GET", f"/admin/tokens/{quote(token_id, safe='')}")

    # -- faults ---------------------------------------------------------------------------
    async def add_fault(self, fault: Mapping[str, Any]) -> str:
        """Inject a fault (CONTRACTS.md "Faults"); return its id."""
        return str((await self._object("POST", "/admin/faults", body=dict(fault)))["id"])

    async def faults(self) -> list[dict[str, Any]]:
        return list((await self._object("GET", "/admin/faults"))["faults"])

    async def remove_fault(self, fault_id: str) -> None:
        await self._call("DELETE", f"/admin/faults/{quote(fault_id, safe='')}")

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/admin/faults")

    async def seed_faults(self, seed: int) -> None:
        await self._call("POST", "/admin/faults/seed", body={"seed": seed})

    # -- cloud accounts (AccessKey pairs) ------------------------------------------------
    async def accounts(self) -> list[dict[str, Any]]:
        return list((await self._object("GET", "/admin/accounts"))["accounts"])

    async def account(self, access_key_id: str) -> dict[str, Any]:
        return await self._object("GET", f"/admin/accounts/{quote(access_key_id, safe='')}")

    async def put_account(
        self,
        access_key_id: str,
        *,
        secret: str | None = None,
        instances: Iterable[str] | None = None,
        enabled: bool | None = None,
    ) -> dict[str, Any]:
        """Create or update an AccessKey account; omitted fields keep their value."""
        body: dict[str, Any] = {}
        if secret is not None:
            body["secret"] = secret
        if instances is not None:
            body["instances"] = list(instances)
        if enabled is not None:
            body["enabled"] = enabled
        path = f"/admin/accounts/{quote(access_key_id, safe='')}"
        return await self._object("PUT", path, body=body)

    async def delete_account(self, access_key_id: str) -> None:
        await self._call("DELETE", f"/admin/accounts/{quote(access_key_id, safe='')}")

    # -- instances and their parent topics (docs/authserver.md) --------------------------
    async def instances(self) -> list[dict[str, Any]]:
        """Every instance: ``{"instance_id", "owners", "parent_topics"}``."""
        return list((await self._object("GET", "/admin/instances"))["instances"])

    async def instance(self, instance_id: str) -> dict[str, Any]:
        return await self._object("GET", self._topics(instance_id))

    async def set_parent_topics(self, instance_id: str, topics: Iterable[str]) -> dict[str, Any]:
        """Replace the instance's parent topics."""
        body = {"parent_topics": list(topics)}
        return await self._object("PUT", self._topics(instance_id), body=body)

    async def add_parent_topic(self, instance_id: str, parent: str) -> dict[str, Any]:
        path = f"{self._topics(instance_id)}/{quote(parent, safe='')}"
        return await self._object("PUT", path)

    async def remove_parent_topic(self, instance_id: str, parent: str) -> None:
        await self._call("DELETE", f"{self._topics(instance_id)}/{quote(parent, safe='')}")

    @staticmethod
    def _topics(instance_id: str) -> str:
        return f"/admin/instances/{quote(instance_id, safe='')}/topics"


class AppServerAdmin(_Api):
    """The reference AppServer's admin API (client accounts, metrics)."""

    part = "AppServer"

    async def import_accounts(
        self, accounts: Sequence[ClientAccount | Mapping[str, Any]]
    ) -> dict[str, int]:
        """Bulk-create or update accounts (``POST /admin/accounts:bulk``, in chunks);
        return the summed counts of the answers."""
        total: dict[str, int] = {}
        docs = [a.to_json() if isinstance(a, ClientAccount) else dict(a) for a in accounts]
        for i in range(0, len(docs), IMPORT_CHUNK):
            answer = await self._object(
                "POST", "/admin/accounts:bulk", body={"accounts": docs[i : i + IMPORT_CHUNK]}
            )
            for key, value in answer.items():
                if isinstance(value, int):
                    total[key] = total.get(key, 0) + value
        return total

    async def put_account(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        grants: Sequence[Mapping[str, Any]] | None = None,
        enabled: bool | None = None,
    ) -> dict[str, Any]:
        """Create or update one account; omitted fields keep their value.  Disabling or
        narrowing it revokes the tokens it may no longer hold (SPEC §5)."""
        body: dict[str, Any] = {}
        if secret is not None:
            body["secret"] = secret
        if grants is not None:
            body["grants"] = [dict(g) for g in grants]
        if enabled is not None:
            body["enabled"] = enabled
        return await self._object("PUT", self._path(client_id), body=body)

    async def disable_account(self, client_id: str) -> dict[str, Any]:
        """Disable an account (it stays, refused with 403); its tokens are dropped and
        queued for revocation at the AuthServer (``dropped``, ``queued`` in the answer;
        docs/appserver.md)."""
        return await self.put_account(client_id, enabled=False)

    async def enable_account(self, client_id: str) -> dict[str, Any]:
        return await self.put_account(client_id, enabled=True)

    async def delete_account(self, client_id: str) -> dict[str, Any]:
        """Delete an account (then unknown: 401); its tokens are revoked too."""
        return await self._object("DELETE", self._path(client_id))

    async def account(self, client_id: str) -> dict[str, Any]:
        return await self._object("GET", self._path(client_id))

    async def accounts(self) -> list[dict[str, Any]]:
        return list((await self._object("GET", "/admin/accounts"))["accounts"])

    @staticmethod
    def _path(client_id: str) -> str:
        return f"/admin/accounts/{quote(client_id, safe='@')}"


class BrokerAdmin(_Api):
    """The broker's metrics port (``--metrics-port``): health, the fidelity report and the
    device audit as JSON (loopback peers only)."""

    part = "broker"
    health_path = "/health"
    metrics_path = "/metrics"

    async def fidelity(self) -> dict[str, Any]:
        """``GET /fidelity``: what clients used that the provider lacks (docs/fidelity.md)."""
        return await self._object("GET", "/fidelity")

    async def audit(self) -> dict[str, Any]:
        """``GET /audit``: the device audit (docs/your-appserver.md)."""
        return await self._object("GET", "/audit")


class AdminClient:
    """The parts' admin APIs over one HTTP session (its own unless ``http`` is given)."""

    def __init__(
        self,
        authserver_url: str | None = None,
        appserver_url: str | None = None,
        *,
        broker_metrics_url: str | None = None,
        http: aiohttp.ClientSession | None = None,
        timeout_s: float = 30.0,
    ):
        self._own_http = http is None
        self.http = http if http is not None else aiohttp.ClientSession()
        self._authserver = (
            AuthServerAdmin(authserver_url, self.http, timeout_s) if authserver_url else None
        )
        self._appserver = (
            AppServerAdmin(appserver_url, self.http, timeout_s) if appserver_url else None
        )
        self._broker = (
            BrokerAdmin(broker_metrics_url, self.http, timeout_s) if broker_metrics_url else None
        )

    @property
    def authserver(self) -> AuthServerAdmin:
        if self._authserver is None:
            raise AdminError("this admin client has no AuthServer URL")
        return self._authserver

    @property
    def appserver(self) -> AppServerAdmin:
        if self._appserver is None:
            raise AdminError("this admin client has no AppServer URL")
        return self._appserver

    @property
    def broker(self) -> BrokerAdmin:
        if self._broker is None:
            raise AdminError("this admin client has no broker metrics URL")
        return self._broker

    async def close(self) -> None:
        if self._own_http:
            await self.http.close()

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
