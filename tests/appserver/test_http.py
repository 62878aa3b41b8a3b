"""The HTTP surface: every 4xx path, the OpenAPI document, metrics, and Hypothesis on
request bodies (never a 5xx, always a clear message) -- against a real AuthServer."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.shared.clock import ManualClock, SystemClock

from .conftest import basic
from .stack import GRANTS, stack


async def test_every_4xx_path(tmp_path: Path) -> None:
    async with stack(ManualClock(), tmp_path, max_body_bytes=4096) as s:
        await s.put_account()
        url = f"{s.app.url}/v1/tokens"
        ok = {"resources": ["fleet/a"], "actions": "R"}

        async def post(headers: dict[str, str], data: Any = None, **kw: Any) -> tuple[int, Any]:
            async with s.http.post(url, headers=headers, data=data, **kw) as resp:
                assert resp.content_type == "application/json"
                body = await resp.json()
                assert body["message"] and body["error"]
                if resp.status == 401:
                    assert resp.headers["WWW-Authenticate"].startswith("Basic")
                return resp.status, body

        # 401: no credentials, another scheme, garbage, wrong secret, unknown client.
        assert (await post({}, json=ok))[0] == 401
        assert (await post({"Authorization": "Bearer x"}, json=ok))[0] == 401
        assert (await post({"Authorization": "Basic !!"}, json=ok))[0] == 401
        assert (await post(basic("c1", "wrong"), json=ok))[1]["error"] == "unauthorized"
        assert (await post(basic("nobody", "pw"), json=ok))[0] == 401
        # 400: not JSON, empty, wrong shapes.
        status, body = await post(basic("c1", "pw"), data=b"{nope")
        assert status == 400 and "not valid JSON" in body["message"]
        assert (await post(basic("c1", "pw"), data=b""))[0] == 400
        status, body = await post(basic("c1", "pw"), json={"resources": ["a/#/b"], "actions": "R"})
        assert status == 400 and "'#'" in body["message"]
        status, body = await post(basic("c1", "pw"), json={"resources": ["a"], "actions": "RW"})
        assert status == 400 and "actions" in body["message"]
        # 403: outside the grants, naming the filter; and a disabled account.
        status, body = await post(
            basic("c1", "pw"), json={"resources": ["fleet/a", "secret/x"], "actions": "R"}
        )
        assert status == 403 and "'secret/x'" in body["message"]
        status, body = await post(
            basic("c1", "pw"), json={"resources": ["fleet/a"], "actions": "W"}
        )
        assert status == 403 and "write (W) 'fleet/a'" in body["message"]
        # 413: too large.
        status, body = await post(basic("c1", "pw"), data=b"[" + b"1," * 4000 + b"1]")
        assert status == 413 and "4096" in body["message"]
        # 405 and 404 in the same JSON shape.
        async with s.http.get(url) as resp:
            assert resp.status == 405 and (await resp.json())["error"] == "method_not_allowed"
            assert "POST" in resp.headers["Allow"]
        async with s.http.get(f"{s.app.url}/nothing") as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "not_found"
        # Admin: unknown account, invalid ids and bodies, a new account without secret.
        admin = f"{s.app.url}/admin/accounts"
        for method in ("GET", "DELETE"):
            async with s.http.request(method, f"{admin}/ghost") as resp:
                assert resp.status == 404 and "ghost" in (await resp.json())["message"]
        async with s.http.put(f"{admin}/bad%20id", json={"secret": "x"}) as resp:
            assert resp.status == 400
        async with s.http.put(f"{admin}/new", json={"grants": []}) as resp:
            assert resp.status == 400 and "secret" in (await resp.json())["message"]
        async with s.http.put(
            f"{admin}/new", json={"secret": "x", "grants": [{"resources": ["a"]}]}
        ) as resp:
            assert resp.status == 400 and "grants[0]" in (await resp.json())["message"]
        async with s.http.post(
            f"{admin}:bulk",
            json={
                "accounts": [
                    {"client_id": "ok", "secret": "x", "grants": []},
                    {
                        "client_id": "bad",
                        "secret": "x",
                        "grants": [{"resources": [], "actions": "R"}],
                    },
                ]
            },
        ) as resp:
            assert resp.status == 400 and "accounts[1]" in (await resp.json())["message"]
        async with s.http.get(f"{admin}/ok") as resp:
            assert resp.status == 404  # all or none
        await s.put_account(enabled=False)
        status, body = await post(basic("c1", "pw"), json=ok)
        assert status == 403 and body["error"] == "account_disabled"
        text = await s.app_metrics()
        assert text.total("appserver_token_requests_total", outcome="unauthorized") == 5
        assert text.total("appserver_token_requests_total", outcome="forbidden") == 3
        assert await s.applies(code=None) == 0  # none of that reached the AuthServer


async def test_accounts_admin_round_trip_and_bulk(tmp_path: Path) -> None:
    async with stack(ManualClock(), tmp_path) as s:
        created = await s.put_account("c1")
        assert created["grants"] == GRANTS and created["enabled"] is True
        assert "secret" not in json.dumps(created) and "scrypt" not in json.dumps(created)
        async with s.http.post(
            f"{s.app.url}/admin/accounts:bulk",
            json={
                "accounts": [
                    {"client_id": f"GID_g@@@d{i}", "secret": f"s{i}", "grants": GRANTS}
                    for i in range(50)
                ]
                + [{"client_id": "c1", "enabled": False}]
            },
        ) as resp:
            assert resp.status == 200
            assert await resp.json() == {
                "imported": 51,
                "created": 50,
                "updated": 1,
                "dropped": 0,
                "queued": 0,
            }
        async with s.http.get(f"{s.app.url}/admin/accounts") as resp:
            accounts = (await resp.json())["accounts"]
        assert len(accounts) == 51
        assert next(a for a in accounts if a["client_id"] == "c1")["enabled"] is False
        assert (await s.ask(["fleet/a"], client_id="GID_g@@@d7", secret="s7"))[0] == 200
        health = await s.health()
        assert health == {
            "status": "ok",
            "breaker": "closed",
            "accounts": 51,
            "cached_tokens": 1,
            "instanceId": "mqtt-dev",
        }


async def test_openapi_describes_every_route(tmp_path: Path) -> None:
    async with stack(ManualClock(), tmp_path) as s:
        async with s.http.get(f"{s.app.url}/openapi.json") as resp:
            assert resp.status == 200
            doc = await resp.json()
        assert doc["openapi"].startswith("3.")
        described = {
            (path, method.upper())
            for path, item in doc["paths"].items()
            for method in item
            if method != "parameters"
        }
        served = set()
        for route in s.app.app.router.routes():
            if route.method == "HEAD":
                continue
            info = route.resource.get_info() if route.resource else {}
            served.add((info.get("path") or info.get("formatter"), route.method))
        assert described == served
        response = doc["components"]["schemas"]["TokenResponse"]["required"]
        assert set(response) == {
            "token",
            "type",
            "expireTime",
            "instanceId",
            "username",
            "password",
            "stale",
        }


# -- Hypothesis on the request body, against a live stack in a thread -----------------------


class LiveStack:
    """The stack on a real clock in a thread of its own, for synchronous tests."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.ready = threading.Event()
        self.url = ""
        self.applies_url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        # Many distinct valid bodies: no drain limit in the way of the property.
        async with stack(SystemClock(), self.tmp, drain_burst=100_000) as s:
            await s.put_account()
            self.url = s.app.url
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> LiveStack:
        self._thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def post(self, raw: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(
            f"{self.url}/v1/tokens",
            data=raw,
            method="POST",
            headers={"Content-Type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    with LiveStack(tmp_path_factory.mktemp("live")) as s:
        yield s


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=12), c, max_size=5),
    max_leaves=20,
)
_filters = st.lists(
    st.sampled_from(
        [
            "fleet/a",
            "fleet/#",
            "devices/d1/cmd",
            "devices/+/state",
            "#",
            "+",
            "a/#/b",
            "",
            "x,y",
            "$SYS/x",
            "fleet/+/+",
            "devices/d2/state",
        ]
    )
    | st.text(max_size=12),
    max_size=6,
)
_near_valid = st.fixed_dictionaries(
    {
        "resources": _filters | _json,
        "actions": st.sampled_from(["R", "W", "R,W", "W,R", "RW", "", "r"]) | _json,
    },
    optional={"extra": _json},
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=_near_valid | _json)
def test_any_json_body_gets_a_clear_answer(live: LiveStack, body: object) -> None:
    status, answer = live.post(json.dumps(body).encode(), basic("c1", "pw"))
    assert status in (200, 400, 403), answer
    if status == 200:
        assert answer["password"] == f"{answer['type']}|{answer['token']}"
    else:
        assert answer["error"] and len(answer["message"]) > 10
        assert "Traceback" not in answer["message"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200), auth=st.binary(max_size=40))
def test_any_bytes_and_credentials_never_5xx(live: LiveStack, raw: bytes, auth: bytes) -> None:
    header = "Basic " + base64.b64encode(auth).decode()
    status, answer = live.post(raw, {"Authorization": header})
    assert status == 401 and answer["error"] == "unauthorized"
    status, answer = live.post(raw, basic("c1", "pw"))
    assert status in (200, 400, 403) and answer.get("message", "x")
