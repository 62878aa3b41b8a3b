"""Client of the AuthServer's legacy token API (SPEC §3a): ``/token/apply``,
``/token/revoke``, ``/token/query``, signed with :func:`sim.shared.protocol.legacy_sign`.

Talks only to the public signed API, so it works against the real provider too.
Every failure -- an error answer, an HTTP error status, a timeout, a refused or reset
connection, an unparseable body -- becomes one
:class:`~sim.customer.appserver.errors.UpstreamError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from sim.shared.protocol import legacy_sign, render_actions

from .errors import UpstreamError

__all__ = ["LegacyTokenClient", "QueryResult", "Upstream"]


@dataclass(frozen=True)
class QueryResult:
    valid: bool
    code: int  # 200 valid · 1 forged · 2 expired · 3 revoked
    message: str


class Upstream(Protocol):
    """What the service needs from the AuthServer (a fake in unit tests)."""

    async def apply(
        self, actions: Iterable[str], resources: Iterable[str], expire_ms: int
    ) -> str: ...

    async def revoke(self, token: str) -> None: ...

    async def query(self, token: str) -> QueryResult: ...


class LegacyTokenClient:
    """One aiohttp session; :meth:`start` / :meth:`close` bracket its life."""

    def __init__(
        self,
        base_url: str,
        access_key: str,
        secret_key: str,
        instance_id: str,
        *,
        timeout_s: float,
    ):
        self.base_url = base_url.rstrip("/")
        self.access_key = access_key
        self._secret = secret_key
        self.instance_id = instance_id
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=100),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the three operations ---------------------------------------------------------

    async def apply(self, actions: Iterable[str], resources: Iterable[str], expire_ms: int) -> str:
        signed = {
            "actions": render_actions(actions),
            "expireTime": str(expire_ms),
            "instanceId": self.instance_id,
            "resources": ",".join(sorted(resources)),
            "serviceName": "mq",
        }
        answer = await self._call("apply", signed, {"proxyType": "MQTT"})
        token = answer.get("tokenData")
        if not isinstance(token, str) or not token:
            raise UpstreamError("AuthServer apply answered without a token", reason="protocol")
        return token

    async def revoke(self, token: str) -> None:
        await self._call("revoke", {"token": token}, {})

    async def query(self, token: str) -> QueryResult:
        try:
            answer = await self._call("query", {"token": token}, {})
        except UpstreamError as exc:
            if exc.reason == "provider" and exc.provider_code in (1, 2, 3):
                return QueryResult(False, exc.provider_code, exc.message)
            raise
        return QueryResult(True, 200, str(answer.get("message", "")))

    # -- transport -------------------------------------------------------------------------

    async def _call(
        self, operation: str, signed: Mapping[str, str], extra: Mapping[str, str]
    ) -> dict[str, object]:
        if self._session is None:
            raise UpstreamError("the upstream client is not started", reason="connect")
        form = {
            **signed,
            **extra,
            "accessKey": self.access_key,
            "signature": legacy_sign(signed, self._secret),
        }
        url = f"{self.base_url}/token/{operation}"
        try:
            async with self._session.post(url, data=form) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            raise UpstreamError(
                f"AuthServer {operation} timed out after {self.timeout_s:g} s", reason="timeout"
            ) from None
        except aiohttp.ClientConnectorError:
            raise UpstreamError(
                f"AuthServer unreachable at {self.base_url}", reason="connect"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(
                f"AuthServer {operation} failed: {type(exc).__name__}", reason="reset"
            ) from None
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            if status >= 400:
                raise UpstreamError(f"AuthServer {operation}: HTTP {status}", reason="http")
            raise UpstreamError(f"AuthServer {operation}: answer is not JSON", reason="protocol")
        if answer.get("success") is True and status < 400:
            return answer
        code = answer.get("code")
        message = str(answer.get("message") or answer.get("Message") or "")[:200]
        if isinstance(code, int) and not isinstance(code, bool):
            raise UpstreamError(
                f"AuthServer {operation} refused: code {code} {message}".rstrip(),
                reason="provider",
                provider_code=code,
            )
        raise UpstreamError(
            f"AuthServer {operation}: HTTP {status} {message}".rstrip(), reason="http"
        )
