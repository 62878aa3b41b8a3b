"""Every call ``check appserver`` makes to the mock AuthServer's admin API, in one place
(docs/CONTRACTS.md "Admin endpoints"): health, clock, the apply counts of
``/admin/metrics``, faults, token records, the signing keys (to tell which token a
password carries), parent topics.  The user's AppServer is pointed at this AuthServer,
so what it did upstream is seen here, whatever language it is written in.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from sim.shared.protocol import InvalidToken, TokenCodec, parse_token_password
from sim.shared.protocol.errors import WireFormatError
from sim.shared.protocol.feed import Bootstrap

from .verdicts import TokenFacts

__all__ = ["UNKNOWN_TOKEN", "AdminError", "AuthServerAdmin", "ClockView"]

_TIMEOUT = aiohttp.ClientTimeout(total=10)
#: The id given to a token this AuthServer did not issue.
UNKNOWN_TOKEN = "?"  # noqa: S105 - an id, not a secret


class AdminError(RuntimeError):
    """The AuthServer's admin API did not answer as documented."""


@dataclass(frozen=True)
class ClockView:
    now_ms: int
    scale: float
    #: "system", "scaled" or "manual"
    mode: str


class AuthServerAdmin:
    def __init__(self, session: aiohttp.ClientSession, base_url: str):
        self.session = session
        self.base_url = base_url.rstrip("/")
        self._codec: TokenCodec | None = None

    async def _json(self, method: str, path: str, body: Any = None, ok: int = 299) -> Any:
        url = self.base_url + path
        try:
            async with self.session.request(method, url, json=body, timeout=_TIMEOUT) as resp:
                answer = await resp.json(content_type=None)
                if resp.status > ok:
                    raise AdminError(f"{method} {url}: HTTP {resp.status} {answer}")
                return answer
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise AdminError(f"{method} {url}: {type(exc).__name__}: {exc}") from None

    async def health(self) -> None:
        await self._json("GET", "/admin/health")

    async def clock(self) -> ClockView:
        doc = await self._json("GET", "/admin/clock")
        return ClockView(int(doc["now_ms"]), float(doc.get("scale", 1.0)), str(doc["mode"]))

    async def advance(self, seconds: float) -> int:
        """Move a manual clock; the new ``now_ms``."""
        doc = await self._json("POST", "/admin/clock/advance", {"seconds": seconds})
        return int(doc["now_ms"])

    async def apply_counts(self) -> Counter[str]:
        """Apply requests the AuthServer has answered, by answer code (``200``, ``429``
        throttled, ``503``/``reset`` injected failures, ...), both wire styles."""
        url = self.base_url + "/admin/metrics"
        try:
            async with self.session.get(url, timeout=_TIMEOUT) as resp:
                if resp.status != 200:
                    raise AdminError(f"GET {url}: HTTP {resp.status}")
                text = await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise AdminError(f"GET {url}: {type(exc).__name__}") from None
        counts: Counter[str] = Counter()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "mqtt_authserver_requests_total" and s.labels.get("operation") == (
                    "apply"
                ):
                    counts[s.labels.get("code", "")] += int(s.value)
        return counts

    async def add_fault(self, fault: dict[str, Any]) -> str:
        doc = await self._json("POST", "/admin/faults", fault)
        return str(doc["id"])

    async def delete_fault(self, fault_id: str) -> None:
        await self._json("DELETE", f"/admin/faults/{fault_id}", ok=404)

    async def token_ids(self, password: str) -> tuple[str, ...]:
        """The ids of the tokens in a CONNECT password; ``?`` for a token this
        AuthServer did not issue (or not a password at all)."""
        try:
            tokens = parse_token_password(password)
        except WireFormatError:
            return (UNKNOWN_TOKEN,)
        out = []
        for token in tokens.values():
            out.append(await self._token_id(token))
        return tuple(out)

    async def _token_id(self, token: str) -> str:
        for fresh in (False, True):
            if self._codec is None or fresh:
                boot = Bootstrap.from_json(await self._json("GET", "/admin/broker/bootstrap"))
                self._codec = TokenCodec(boot.keys, boot.current_key)
            try:
                return self._codec.decode(token).token_id
            except InvalidToken:
                continue  # a key made since the last bootstrap? read it once more
        return UNKNOWN_TOKEN

    async def token(self, token_id: str) -> TokenFacts | None:
        if token_id == UNKNOWN_TOKEN:
            return None
        doc = await self._json("GET", f"/admin/tokens/{token_id}", ok=404)
        if "token_id" not in doc:
            return None
        return TokenFacts(
            token_id=str(doc["token_id"]),
            actions=frozenset(doc["actions"]),
            resources=tuple(doc["resources"]),
            expire_ms=int(doc["expire_ms"]),
            issued_ms=int(doc["issued_ms"]),
            status=str(doc["status"]),
        )

    async def ensure_parent_topics(self, instance_id: str, parents: set[str]) -> list[str]:
        """Create the parent topics (SPEC §4a) the instance lacks; the ones created."""
        doc = await self._json("GET", f"/admin/instances/{instance_id}/topics", ok=404)
        have = set(doc.get("parent_topics", ())) if isinstance(doc, dict) else set()
        made = []
        for parent in sorted(parents - have):
            await self._json("PUT", f"/admin/instances/{instance_id}/topics/{parent}")
            made.append(parent)
        return made
