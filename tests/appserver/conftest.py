"""Helpers of the AppServer tests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

from sim.customer.appserver.errors import UpstreamError
from sim.customer.appserver.upstream import QueryResult

if TYPE_CHECKING:
    from sim.customer.appserver.service import TokenService

CHEAP = 1  # scrypt cost for test accounts: the slow hash is tested on its own


@contextlib.asynccontextmanager
async def draining(service: TokenService) -> AsyncIterator[None]:
    """Run the revocation queue's drain, as the app does in the background."""
    task = asyncio.create_task(service.revocations.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await service.revocations.stop()


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


class FakeUpstream:
    """An in-memory AuthServer for unit tests of the service (no sockets).

    ``fail`` makes every call raise it; ``gate`` holds applies until set.
    """

    def __init__(self) -> None:
        self.applies: list[tuple[frozenset[str], tuple[str, ...], int]] = []
        self.revoked: list[str] = []
        self.fail: UpstreamError | None = None
        self.revoke_fail: UpstreamError | None = None
        self.gate: asyncio.Event | None = None

    async def apply(self, actions: Iterable[str], resources: Iterable[str], expire_ms: int) -> str:
        self.applies.append((frozenset(actions), tuple(resources), expire_ms))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return f"tok-{len(self.applies)}"

    async def revoke(self, token: str) -> None:
        if self.revoke_fail is not None:
            raise self.revoke_fail
        self.revoked.append(token)

    async def query(self, token: str) -> QueryResult:
        return QueryResult(token not in self.revoked, 200 if token not in self.revoked else 3, "")


def down(reason: str = "connect") -> UpstreamError:
    return UpstreamError("AuthServer down", reason=reason)
