"""The feed follower against a scripted AuthServer: bootstrap, events, a ``reset`` that
forces a new bootstrap, errors and malformed documents that are retried."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

from aiohttp import web

from mock_broker.authority import Changes, TokenAuthority
from mock_broker.follower import FeedFollower
from sim.shared.clock import ManualClock

from .conftest import until


class FakeAuthServer:
    def __init__(self) -> None:
        self.seq = 5
        self.revoked: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.answers: list[Any] = []  # scripted answers of /admin/feed, used first
        self.bootstraps = 0
        self.wake = asyncio.Event()

    def bootstrap(self) -> dict[str, Any]:
        return {
            "keys": {"k1": base64.b64encode(b"k" * 32).decode()},
            "current_key": "k1",
            "accounts": [
                {"access_key_id": "ak", "secret": "sk", "instances": ["i"], "enabled": True}
            ],
            "revoked": list(self.revoked),
            "seq": self.seq,
        }

    def revoke(self, token_id: str) -> None:
        self.seq += 1
        self.revoked.append({"token_id": token_id, "expire_ms": 2**50})
        self.events.append(
            {"seq": self.seq, "kind": "revoke", "token_id": token_id, "access_key_id": "ak",
             "instance_id": "i", "expire_ms": 2**50}
        )  # fmt: skip
        self.wake.set()

    def app(self) -> web.Application:
        async def bootstrap(_: web.Request) -> web.Response:
            self.bootstraps += 1
            return web.json_response(self.bootstrap())

        async def feed(request: web.Request) -> web.Response:
            if self.answers:
                answer = self.answers.pop(0)
                if isinstance(answer, int):
                    return web.Response(status=answer, text="nope")
                return web.json_response(answer)
            after = int(request.query["after"])
            timeout = float(request.query["timeout"])
            if not [e for e in self.events if e["seq"] > after]:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout)
            fresh = [e for e in self.events if e["seq"] > after]
            return web.json_response({"seq": self.seq, "events": fresh})

        app = web.Application()
        app.router.add_get("/admin/broker/bootstrap", bootstrap)
        app.router.add_get("/admin/feed", feed)
        return app


async def test_follows_bootstrap_events_reset_and_errors(aiohttp_server: Any) -> None:
    fake = FakeAuthServer()
    fake.revoked.append({"token_id": "old", "expire_ms": 2**50})
    # The first poll fails, the next answers nonsense, the next says "reset".
    fake.answers = [500, {"seq": "six", "events": []}, {"reset": True, "seq": 5, "events": []}]
    server = await aiohttp_server(fake.app())
    authority = TokenAuthority()
    seen: list[Changes] = []
    authority.on_change(seen.append)
    # A long poll of 30 s: an event reaching the authority sooner came through the poll
    # the AuthServer answered early, not through a poll that timed out.
    follower = FeedFollower(
        str(server.make_url("/")), authority, clock=ManualClock(), poll_timeout=30
    )
    try:
        assert await follower.start(wait=5)
        assert authority.ready and authority.is_revoked("old") and authority.seq == 5
        await until(lambda: fake.bootstraps == 2, within=3.0)  # the reset forced a second bootstrap
        assert not fake.answers
        polls = follower.polls
        fake.revoke("t1")
        await until(lambda: authority.is_revoked("t1"), within=20)
        assert follower.polls == polls + 1  # the one open poll brought it
        assert Changes(revoked=frozenset({"t1"})) in seen
        assert authority.seq == 6
    finally:
        await follower.stop()
