"""Every call ``check appserver`` makes to the mock AuthServer's admin API, in one place
(docs/CONTRACTS.md "Admin endpoints"): health, clock, the apply counts of
``/admin/metrics``, faults, token records, the signing keys (to tell which token a
password carries), parent topics.  The user's AppServer is pointed at this AuthServer,
so what it did upstream is seen here, whatever language it is written in.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import aiohttp

from sim.shared.protocol import InvalidToken, TokenCodec, parse_token_password
from sim.shared.protocol.errors import WireFormatError
from sim.shared.protocol.feed import Bootstrap

from ..admin import AuthServerAdmin, ClockInfo
from ..errors import AdminError, AdminRefused
from .verdicts import TokenFacts

__all__ = ["UNKNOWN_TOKEN", "AdminError", "AuthServerObserver", "ClockInfo"]

#: Real seconds one admin call may take.
_TIMEOUT_S = 10.0
#: The id given to a token this AuthServer did not issue.
UNKNOWN_TOKEN = "?"  # noqa: S105 - an id, not a secret


def _not_found(exc: AdminRefused) -> bool:
    return exc.status == 404


class AuthServerObserver:
    """What ``check appserver`` reads off the AuthServer, through the one admin client
    (:class:`sim.harness.admin.AuthServerAdmin`); its errors are
    :class:`~sim.harness.errors.AdminError`\\ s."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str):
        self.api = AuthServerAdmin(base_url, session, _TIMEOUT_S)
        self.base_url = self.api.base_url
        self._codec: TokenCodec | None = None

    async def health(self) -> None:
        await self.api.health()

    async def clock(self) -> ClockInfo:
        return await self.api.clock()

    async def advance(self, seconds: float) -> int:
        """Move a manual clock; the new ``now_ms``."""
        return (await self.api.advance_clock(seconds)).now_ms

    async def apply_counts(self) -> Counter[str]:
        """Apply requests the AuthServer has answered, by answer code (``200``, ``429``
        throttled, ``503``/``reset`` injected failures, ...), both wire styles."""
        metrics = await self.api.metrics()
        counts: Counter[str] = Counter()
        for (name, labels), value in metrics.samples.items():
            have = dict(labels)
            if name == "mqtt_authserver_requests_total" and have.get("operation") == "apply":
                counts[have.get("code", "")] += int(value)
        return counts

    async def add_fault(self, fault: dict[str, Any]) -> str:
        return await self.api.add_fault(fault)

    async def delete_fault(self, fault_id: str) -> None:
        try:
            await self.api.remove_fault(fault_id)
        except AdminRefused as exc:
            if not _not_found(exc):  # gone already (it fired its "times"): fine
                raise

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
                try:
                    boot = Bootstrap.from_json(await self.api.bootstrap())
                except WireFormatError as exc:
                    raise AdminError(f"the AuthServer's bootstrap is malformed: {exc}") from None
                self._codec = TokenCodec(boot.keys, boot.current_key)
            try:
                return self._codec.decode(token).token_id
            except InvalidToken:
                continue  # a key made since the last bootstrap? read it once more
        return UNKNOWN_TOKEN

    async def token(self, token_id: str) -> TokenFacts | None:
        if token_id == UNKNOWN_TOKEN:
            return None
        try:
            doc = await self.api.token(token_id)
        except AdminRefused as exc:
            if _not_found(exc):
                return None
            raise
        try:
            return TokenFacts(
                token_id=str(doc["token_id"]),
                actions=frozenset(doc["actions"]),
                resources=tuple(doc["resources"]),
                expire_ms=int(doc["expire_ms"]),
                issued_ms=int(doc["issued_ms"]),
                status=str(doc["status"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AdminError(f"the AuthServer's token record is malformed: {exc!r}") from None

    async def ensure_parent_topics(self, instance_id: str, parents: set[str]) -> list[str]:
        """Create the parent topics (SPEC §4a) the instance lacks; the ones created."""
        try:
            have = set((await self.api.instance(instance_id)).get("parent_topics", ()))
        except AdminRefused as exc:
            if not _not_found(exc):
                raise
            have = set()
        made = []
        for parent in sorted(parents - have):
            await self.api.add_parent_topic(instance_id, parent)
            made.append(parent)
        return made
