"""A small AppServer that is NOT ours: a stand-alone program with its own API, used to show
that ``mqtt-token-sim check appserver`` and the SDK work with any AppServer through an
adapter (docs/your-appserver.md, its worked example is ``adapter.toml`` beside this file).

    python tests/foreign_appserver/server.py --authserver URL --db FILE [--port 0] ...

API: ``POST /api/mqtt/token`` with form or JSON fields ``device``, ``key``, ``topics`` (a
list, or comma-joined), ``access`` (R | W | R,W); HTTP Basic ``device:key`` works too.
Answer ``{"mqtt": {"username", "password", "expireAt"}}``; errors ``{"err": text}``
with 400/401/403, or 503 and ``Retry-After`` when the AuthServer fails and nothing valid
is cached.  Devices ``GID_shop@@@dev-<n>`` (n = 1..--clients) with key ``secret-<n>`` may
ask for topics under ``shop/dev-<n>/``.

What it does about the seed's AppServer rules, each its own way: salted PBKDF2 keys; an
ACL; a SQLite token cache (one token per device, access and topics, served while it has
more than --margin seconds of life); one upstream apply per key at a time (its own
single flight); on upstream failure the last valid token (its own stale fallback), a
breaker after 3 failures in a row; upstream applies paced at --apply-rate per second.
It applies with the legacy token API, signed with ``sim.shared.protocol.signing``.

Each flag below breaks one rule (the check's tests run these variants): --no-cache,
--no-stale, --no-single-flight, --any-secret, --grant-all, --memory-cache, --no-pacing.

Time: the wall clock, or with --clock-url the mock AuthServer's ``GET /admin/clock``
(a test hook, so a manual clock moves this server's time too).  SIGHUP restarts it in
place (re-exec on the same port: memory is lost, the SQLite file stays; ``restart.py``
waits for it); SIGTERM stops.  ``GET /health`` answers ``{"boot": id}``, an id per start.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import math
import os
import secrets
import signal
import sqlite3
import sys
import time

import aiohttp
from aiohttp import web

from sim.shared.protocol.signing import legacy_sign
from sim.shared.protocol.topics import covers

ITERATIONS = 2_000  # PBKDF2 rounds: cheap for tests, still no plaintext at rest
BREAKER_FAILURES, BREAKER_OPEN_S = 3, 5.0


class Refusal(Exception):
    def __init__(self, status: int, text: str, retry_after: int | None = None):
        super().__init__(text)
        self.status, self.text, self.retry_after = status, text, retry_after


class Server:
    def __init__(self, args: argparse.Namespace, http: aiohttp.ClientSession):
        self.a, self.http = args, http
        self.db = sqlite3.connect(args.db)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS devices (device TEXT PRIMARY KEY,"
            " salt BLOB, hash BLOB, topics TEXT)"
        )
        self.cache = sqlite3.connect(":memory:" if args.memory_cache else args.db)
        self.cache.execute(
            "CREATE TABLE IF NOT EXISTS tokens (k TEXT PRIMARY KEY,"
            " username TEXT, password TEXT, expire_ms INTEGER)"
        )
        for n in range(1, args.clients + 1):
            salt = secrets.token_bytes(16)
            digest = hashlib.pbkdf2_hmac("sha256", f"secret-{n}".encode(), salt, ITERATIONS)
            self.db.execute(
                "INSERT OR IGNORE INTO devices VALUES (?, ?, ?, ?)",
                (f"GID_shop@@@dev-{n}", salt, digest, f"shop/dev-{n}/#"),
            )
        self.db.commit()
        self.flights: dict[str, asyncio.Future[dict[str, object]]] = {}
        self.failures, self.open_until, self.next_slot = 0, 0.0, 0.0

    async def now(self) -> float:
        if not self.a.clock_url:
            return time.time()
        async with self.http.get(self.a.clock_url) as resp:
            return (await resp.json())["now_ms"] / 1000.0

    # -- the request ----------------------------------------------------------------

    async def token(self, request: web.Request) -> web.Response:
        try:
            fields = await self.fields(request)
            device, topics, access = self.authenticate(request, fields)
            return web.json_response(await self.issue(device, topics, access))
        except Refusal as r:
            headers = {} if r.retry_after is None else {"Retry-After": str(r.retry_after)}
            return web.json_response({"err": r.text}, status=r.status, headers=headers)

    async def fields(self, request: web.Request) -> dict[str, object]:
        if request.content_type == "application/json":
            try:
                body = json.loads(await request.read() or b"{}")
            except ValueError:
                raise Refusal(400, "body is not JSON") from None
            if not isinstance(body, dict):
                raise Refusal(400, "body must be an object")
            return body
        return dict(await request.post())

    def authenticate(
        self, request: web.Request, f: dict[str, object]
    ) -> tuple[str, list[str], str]:
        device, key = f.get("device"), f.get("key")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                raise Refusal(401, "bad Authorization header") from None
            if device not in (None, user):
                raise Refusal(400, "device and Authorization disagree")
            device = user
        if not isinstance(device, str) or not isinstance(key, str):
            raise Refusal(401, "device and key needed")
        row = self.db.execute(
            "SELECT salt, hash, topics FROM devices WHERE device = ?", (device,)
        ).fetchone()
        if row is None:
            raise Refusal(401, "unknown device or wrong key")
        digest = hashlib.pbkdf2_hmac("sha256", key.encode(), row[0], ITERATIONS)
        if not self.a.any_secret and not hmac.compare_digest(digest, row[1]):
            raise Refusal(401, "unknown device or wrong key")
        topics = f.get("topics")
        topics = topics.split(",") if isinstance(topics, str) else topics
        access = f.get("access")
        if (
            not isinstance(topics, list)
            or not 1 <= len(topics) <= 100
            or not all(isinstance(t, str) and t for t in topics)
        ):
            raise Refusal(400, "topics: 1 to 100 topic filters")
        if access not in ("R", "W", "R,W", "W,R"):
            raise Refusal(400, "access must be R, W or R,W")
        for t in topics:
            if not self.a.grant_all and not covers(row[2], t):
                raise Refusal(403, f"{device} may not use {t}")
        return device, sorted(set(topics)), ",".join(sorted(str(access).split(",")))

    # -- tokens ---------------------------------------------------------------------

    def cached(self, key: str) -> dict[str, object] | None:
        row = self.cache.execute(
            "SELECT username, password, expire_ms FROM tokens WHERE k = ?", (key,)
        ).fetchone()
        return None if row is None else {"username": row[0], "password": row[1], "expireAt": row[2]}

    async def issue(self, device: str, topics: list[str], access: str) -> dict[str, object]:
        key = f"{device}|{access}|{','.join(topics)}"
        hit = self.cached(key)
        life_s = (int(str(hit["expireAt"])) / 1000 - await self.now()) if hit else 0.0
        if not self.a.no_cache and hit and life_s > self.a.margin:
            return {"mqtt": hit}
        if self.a.no_single_flight:
            return await self.fly(key, topics, access)
        flight = self.flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self.fly(key, topics, access))
            self.flights[key] = flight
            flight.add_done_callback(lambda _: self.flights.pop(key, None))
        return await asyncio.shield(flight)

    async def fly(self, key: str, topics: list[str], access: str) -> dict[str, object]:
        now = await self.now()
        try:
            if now < self.open_until:
                raise OSError("breaker open")
            await self.pace()
            expire_ms = int((await self.now() + self.a.ttl) * 1000)
            token = await self.apply(topics, access, expire_ms)
        except (OSError, aiohttp.ClientError, TimeoutError, ValueError):
            self.failures += 1
            if self.failures >= BREAKER_FAILURES and now >= self.open_until:
                self.open_until = now + BREAKER_OPEN_S
            hit = self.cached(key)
            if not self.a.no_stale and hit and int(str(hit["expireAt"])) > now * 1000:
                return {"mqtt": hit, "fromCache": "stale"}
            wait = max(1, math.ceil(self.open_until - now))
            raise Refusal(503, "token service unavailable, try later", retry_after=wait) from None
        self.failures = 0
        kind = "RW" if access == "R,W" else access
        user = f"Token|{self.a.access_key}|{self.a.instance}"
        self.cache.execute(
            "INSERT OR REPLACE INTO tokens VALUES (?, ?, ?, ?)",
            (key, user, f"{kind}|{token}", expire_ms),
        )
        self.cache.commit()
        return {"mqtt": {"username": user, "password": f"{kind}|{token}", "expireAt": expire_ms}}

    async def pace(self) -> None:
        if self.a.no_pacing:
            return
        now = await self.now()
        slot = self.next_slot = max(now, self.next_slot + 1.0 / self.a.apply_rate)
        # The time may be another process's (--clock-url): polled, no event to wait on.
        while (now := await self.now()) < slot:  # noqa: ASYNC110
            await asyncio.sleep(min(slot - now, 0.01) if self.a.clock_url else slot - now)

    async def apply(self, topics: list[str], access: str, expire_ms: int) -> str:
        signed = {
            "actions": access,
            "expireTime": str(expire_ms),
            "instanceId": self.a.instance,
            "resources": ",".join(topics),
            "serviceName": "mq",
        }
        form = {
            **signed,
            "proxyType": "MQTT",
            "accessKey": self.a.access_key,
            "signature": legacy_sign(signed, self.a.secret_key),
        }
        async with self.http.post(
            f"{self.a.authserver}/token/apply", data=form, timeout=aiohttp.ClientTimeout(total=5)
        ) as resp:
            answer = await resp.json(content_type=None)
        if resp.status != 200 or not answer.get("success"):
            raise ValueError(f"apply refused: {resp.status} {answer.get('code')}")
        return str(answer["tokenData"])


async def main(args: argparse.Namespace) -> None:
    stop, restart = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: (restart.set(), stop.set()))
    async with aiohttp.ClientSession() as http:
        server = Server(args, http)
        app = web.Application()
        app.router.add_post("/api/mqtt/token", server.token)
        boot = secrets.token_hex(8)
        app.router.add_get("/health", lambda _: web.json_response({"boot": boot}))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        port = runner.addresses[0][1]
        print(f"foreign appserver listening on http://127.0.0.1:{port}", flush=True)
        await stop.wait()
        await runner.cleanup()
        server.db.close()
        server.cache.close()
    if restart.is_set():  # in place: same pid, same port, a fresh memory
        argv = list(sys.argv[1:])
        argv[argv.index("--port") + 1] = str(port)
        os.execv(sys.executable, [sys.executable, sys.argv[0], *argv])  # noqa: S606


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--authserver", required=True)
    p.add_argument("--access-key", default="dev-ak")
    p.add_argument("--secret-key", default="dev-sk")
    p.add_argument("--instance", default="mqtt-dev")
    p.add_argument("--db", required=True)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--clock-url", default=None)
    p.add_argument("--ttl", type=float, default=3600.0)
    p.add_argument("--margin", type=float, default=300.0)
    p.add_argument("--apply-rate", type=float, default=50.0)
    for flag in (
        "no-cache",
        "no-stale",
        "no-single-flight",
        "any-secret",
        "grant-all",
        "memory-cache",
        "no-pacing",
    ):
        p.add_argument(f"--{flag}", action="store_true")
    args = p.parse_args()
    if "--port" not in sys.argv:  # a restart re-executes with the port it had
        sys.argv += ["--port", str(args.port)]
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
