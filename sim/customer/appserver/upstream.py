"""Clients of the AuthServer's public signed APIs: the legacy token API (SPEC §3a:
``/token/apply``, ``/token/revoke``, ``/token/query``, signed with
:func:`sim.shared.protocol.legacy_sign`) and the OpenAPI's ``RevokeToken`` (SPEC §3b,
signed V3 ``ACS3-HMAC-SHA256`` with :mod:`sim.shared.protocol.signing`).

Talks only to the public signed APIs, so it works against the real provider too.
Every failure -- an error answer, an HTTP error status, a timeout, a refused or reset
connection, an unparseable body -- becomes one
:class:`~sim.customer.appserver.errors.UpstreamError`; a throttling answer of either
wire (SPEC §3b rate limits) has ``reason="throttled"``.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from sim.shared.protocol import legacy_sign, render_actions
from sim.shared.protocol.signing import (
    V3Authorization,
    sha256_hex,
    v3_canonical_query,
    v3_canonical_request,
    v3_sign,
)

from .errors import UpstreamError

__all__ = ["LegacyTokenClient", "OpenApiRevokeClient", "QueryResult", "Revoker", "Upstream"]

#: SPEC §3b: the OpenAPI product version the provider's SDKs call.
OPENAPI_VERSION = "2020-04-20"
#: Legacy: a throttled call answers HTTP 429 with code 429 in the legacy body.
_LEGACY_THROTTLED = 429


def _openapi_throttled(code: str) -> bool:
    """SPEC §3b: ``Throttling.User`` (gateway) and ``ApplyTokenOverFlow`` (applies)."""
    return code.startswith("Throttling") or code == "ApplyTokenOverFlow"


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


class Revoker(Protocol):
    """What the revocation queue needs: one revoke (the legacy client or the OpenAPI's)."""

    async def revoke(self, token: str) -> None: ...


class _SignedClient:
    """A client of the AuthServer signing as one cloud account (AccessKey) for one
    instance.  One aiohttp session; :meth:`start` / :meth:`close` bracket its life.
    :meth:`_send` turns every transport failure into an :class:`UpstreamError`."""

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

    async def _send(
        self,
        operation: str,
        url: str | URL,
        *,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, object]:
        """POST; ``(status, parsed JSON or None)``."""
        if self._session is None:
            raise UpstreamError("the upstream client is not started", reason="connect")
        try:
            async with self._session.post(
                # No body, no Content-Type: the V3 signature covers an empty payload.
                url,
                data=data,
                headers=headers,
                skip_auto_headers=["Content-Type"] if data is None else None,
            ) as resp:
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
        return status, answer


class LegacyTokenClient(_SignedClient):
    """The legacy token API (SPEC §3a)."""

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
        form = {
            **signed,
            **extra,
            "accessKey": self.access_key,
            "signature": legacy_sign(signed, self._secret),
        }
        status, answer = await self._send(
            operation, f"{self.base_url}/token/{operation}", data=form
        )
        if not isinstance(answer, dict):
            if status == _LEGACY_THROTTLED:
                raise UpstreamError(f"AuthServer {operation} throttled", reason="throttled")
            if status >= 400:
                raise UpstreamError(f"AuthServer {operation}: HTTP {status}", reason="http")
            raise UpstreamError(f"AuthServer {operation}: answer is not JSON", reason="protocol")
        if answer.get("success") is True and status < 400:
            return answer
        code = answer.get("code")
        message = str(answer.get("message") or answer.get("Message") or "")[:200]
        if status == _LEGACY_THROTTLED or code == _LEGACY_THROTTLED:
            raise UpstreamError(
                f"AuthServer {operation} throttled: {message}".rstrip(": "), reason="throttled"
            )
        if isinstance(code, int) and not isinstance(code, bool):
            raise UpstreamError(
                f"AuthServer {operation} refused: code {code} {message}".rstrip(),
                reason="provider",
                provider_code=code,
            )
        raise UpstreamError(
            f"AuthServer {operation}: HTTP {status} {message}".rstrip(), reason="http"
        )


class OpenApiRevokeClient(_SignedClient):
    """``RevokeToken`` of the OpenAPI (SPEC §3b), signed V3 as the provider's current SDK
    does: action and version in ``x-acs-*`` headers, ``Token`` and ``InstanceId`` in the
    query string, an empty body.

    The ``x-acs-date`` stamp is real UTC time, whatever clock the AppServer runs on: the
    provider (and the mock) check it against their wall clock (±15 min).
    """

    def __init__(
        self,
        base_url: str,
        access_key: str,
        secret_key: str,
        instance_id: str,
        *,
        timeout_s: float,
        wall: Callable[[], float] = time.time,
    ):
        super().__init__(base_url, access_key, secret_key, instance_id, timeout_s=timeout_s)
        self._wall = wall
        split = urlsplit(self.base_url)
        self._origin = f"{split.scheme}://{split.netloc}"
        self._host = split.netloc
        self._path = split.path or "/"

    def signed_request(self, action: str, query: Mapping[str, str]) -> tuple[URL, dict[str, str]]:
        """The URL and headers of a V3-signed POST with an empty body."""
        payload_hash = sha256_hex(b"")
        stamp = datetime.fromtimestamp(self._wall(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {
            "host": self._host,
            "x-acs-action": action,
            "x-acs-version": OPENAPI_VERSION,
            "x-acs-date": stamp,
            "x-acs-signature-nonce": secrets.token_hex(16),
            "x-acs-content-sha256": payload_hash,
        }
        signed = sorted(headers)
        canonical = v3_canonical_request("POST", self._path, query, headers, signed, payload_hash)
        headers["Authorization"] = V3Authorization(
            self.access_key, signed, v3_sign(canonical, self._secret)
        ).render()
        # Percent-encoded exactly as signed: yarl must not encode it again.
        url = URL(
            f"{self._origin}{quote(self._path, safe='/~')}?{v3_canonical_query(query)}",
            encoded=True,
        )
        return url, headers

    async def revoke(self, token: str) -> None:
        url, headers = self.signed_request(
            "RevokeToken", {"Token": token, "InstanceId": self.instance_id}
        )
        status, answer = await self._send("revoke", url, headers=headers)
        if status < 400 and isinstance(answer, dict) and "RequestId" in answer:
            return
        if not isinstance(answer, dict):
            if status >= 400:
                raise UpstreamError(f"AuthServer RevokeToken: HTTP {status}", reason="http")
            raise UpstreamError("AuthServer RevokeToken: answer is not JSON", reason="protocol")
        code = str(answer.get("Code") or "")[:100]
        message = f"AuthServer RevokeToken refused: {code} {answer.get('Message') or ''}"[:300]
        if _openapi_throttled(code) or status == 429:
            raise UpstreamError(message.rstrip(), reason="throttled", error_code=code or None)
        if code:
            raise UpstreamError(message.rstrip(), reason="provider", error_code=code)
        raise UpstreamError(f"AuthServer RevokeToken: HTTP {status}", reason="http")
