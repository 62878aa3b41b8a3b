"""The HTTP layer both servers share (sim.shared.httpserver, docs/authserver.md and
docs/appserver.md "Security"), tested on each with raw sockets on loopback:

* late headers, late bodies and idle keep-alive connections are cut (HttpLimits), while
  a normal request in parallel is served;
* what aiohttp's parser refuses is answered 400 in the server's own JSON shape, without
  echoing the request (credentials included), and logs no credential at INFO;
* bodies that fail their Content-Encoding, or nest JSON too deep, are 4xx JSON, never 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import io
import json
import logging
import random
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.web_protocol import RequestHandler

from sim.harness.stack import Part, StackConfig, run_stack
from sim.shared.clock import ManualClock
from sim.shared.httplimits import HttpLimits
from sim.shared.httpserver import HttpStats
from sim.shared.logredact import install_log_guards

from .rawhttp import RawConn, exchange, parse_response

START = 1_800_000_000.0
SLOW = 60.0  # a limit that must not be the one that acts
FAST = 0.3  # the limit under test (the verdicts wait up to 10 s: never a tight window)

BASIC_SECRET = "pw-s3cret-9f2c"
BASIC = base64.b64encode(f"c1:{BASIC_SECRET}".encode()).decode()
LEGACY_SIG = "S1gNaTuRe+s3cret/Xy0="
TOKEN = "AQVrMS0xeyJhY3QiOlsiUiJdLCJhayI6ImRldi1hayIsImV4cCI6MTgwMDAwMDAwMDAwMH0secret"


@dataclass
class Server:
    kind: str
    port: int
    url: str
    stats: HttpStats
    #: A JSON endpoint that reads its body: method, path, extra headers.
    json_endpoint: tuple[str, str, dict[str, str]]
    #: Every JSON endpoint: method, path, extra headers.
    json_endpoints: list[tuple[str, str, dict[str, str]]]


@contextlib.asynccontextmanager
async def served(kind: str, tmp_path: Path, limits: HttpLimits) -> AsyncIterator[Server]:
    """The AuthServer, or the AppServer in front of one (the one stack, no broker), with
    ``limits`` on the server under test."""
    without: frozenset[Part] = frozenset(
        {"broker", "appserver"} if kind == "authserver" else {"broker"}
    )
    config = (
        StackConfig(data_dir=tmp_path, without=without, dev_client=False)
        .with_free_ports()
        .with_authserver(http=limits if kind == "authserver" else HttpLimits())
        .with_appserver(password_hash_cost=1, http=limits)
    )
    async with run_stack(config, clock=ManualClock(START)) as stack:
        if kind == "authserver":
            auth = stack.authserver
            assert auth is not None
            endpoints = [
                ("PUT", "/admin/accounts/ak9", {}),
                ("POST", "/admin/faults", {}),
                ("POST", "/admin/faults/seed", {}),
                ("POST", "/admin/clock/advance", {}),
            ]
            yield Server(kind, auth.port, auth.url, auth.http_stats, endpoints[0], endpoints)
            return
        app = stack.appserver
        assert app is not None
        await stack.admin.appserver.put_account(
            "c1", secret=BASIC_SECRET, grants=[{"resources": ["a/#"], "actions": "R"}]
        )
        endpoints = [
            ("PUT", "/admin/accounts/c2", {}),
            ("POST", "/admin/accounts:bulk", {}),
            ("POST", "/v1/tokens", {"Authorization": f"Basic {BASIC}"}),
        ]
        yield Server(kind, app.port, app.url, app.http_stats, endpoints[0], endpoints)


KINDS = pytest.mark.parametrize("kind", ["authserver", "appserver"])


def message_of(body: dict[str, Any]) -> str:
    """The error message in either server's shape (admin, OpenAPI, legacy, AppServer)."""
    return str(body.get("message", body.get("Message", "")))


# -- item: read and idle timeouts ---------------------------------------------------------


@KINDS
async def test_late_headers_are_cut_while_a_normal_request_is_served(kind, tmp_path):
    limits = HttpLimits(header_timeout_s=FAST, body_timeout_s=SLOW, idle_timeout_s=SLOW)
    async with served(kind, tmp_path, limits) as s, aiohttp.ClientSession() as http:
        slow = [await RawConn.open(s.port) for _ in range(5)]
        silent = await RawConn.open(s.port)  # opens, sends nothing
        head = b"GET /admin/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        dribbling = [asyncio.create_task(c.dribble(head)) for c in slow]
        async with http.get(f"{s.url}/admin/health") as resp:  # served meanwhile
            assert resp.status == 200
        assert all(await asyncio.gather(*dribbling)), "a slow-header client was not cut"
        assert await silent.closed_by_server()
        assert s.stats.header_timeouts == 6
        for c in [*slow, silent]:
            await c.close()


@KINDS
async def test_a_late_body_is_answered_in_json_and_cut(kind, tmp_path):
    limits = HttpLimits(header_timeout_s=SLOW, body_timeout_s=FAST, idle_timeout_s=SLOW)
    async with served(kind, tmp_path, limits) as s, aiohttp.ClientSession() as http:
        method, path, headers = s.json_endpoint
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        conn = await RawConn.open(s.port)
        await conn.send(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 1000\r\n{extra}\r\n{{".encode()
        )
        assert await conn.dribble(b" "), "a slow-body client was not cut"
        answer = parse_response(conn.received)
        assert 400 <= answer.status < 500
        assert "did not arrive within 0.3 s" in message_of(answer.json())
        assert s.stats.body_timeouts == 1
        async with http.get(f"{s.url}/admin/health") as resp:
            assert resp.status == 200
        await conn.close()


@KINDS
async def test_a_large_deflate_body_that_never_ends_its_stream_is_cut_at_the_body_limit(
    kind, tmp_path
):
    """aiohttp 3.14's C parser loses a large deflate body whose stream never ends (over
    ~128 KiB sent, valid so far): the request waits for the rest of a body that has all
    arrived, and the parser reads on as if new requests had begun.  The body limit still
    applies to it (found by the adversarial suite; it used to wait forever)."""
    limits = HttpLimits(header_timeout_s=SLOW, body_timeout_s=FAST, idle_timeout_s=SLOW)
    async with served(kind, tmp_path, limits) as s, aiohttp.ClientSession() as http:
        method, path, headers = s.json_endpoint
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        body = b"[" * 200_000  # raw deflate literals: a stream that has not ended
        conn = await RawConn.open(s.port)
        await conn.send(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Encoding: deflate\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode()
            + body
        )
        assert await conn.closed_by_server(), "the request was never answered"
        answer = parse_response(conn.received)
        assert 400 <= answer.status < 500, answer
        assert answer.headers["content-type"].startswith("application/json")
        async with http.get(f"{s.url}/admin/health") as resp:
            assert resp.status == 200
        await conn.close()


@KINDS
async def test_an_idle_keepalive_connection_is_closed(kind, tmp_path):
    limits = HttpLimits(header_timeout_s=SLOW, body_timeout_s=SLOW, idle_timeout_s=FAST)
    async with served(kind, tmp_path, limits) as s:
        conn = await RawConn.open(s.port)
        for _ in range(2):  # keep-alive works: two requests on one connection
            await conn.send(b"GET /admin/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await conn.response()).status == 200
        assert await conn.closed_by_server(), "an idle keep-alive connection stayed open"
        assert s.stats.header_timeouts == 0
        await conn.close()


@KINDS
async def test_a_late_head_on_a_used_keepalive_connection_is_cut(kind, tmp_path):
    """The header deadline runs from the first byte of each later request too: a client
    that was served at once and then dribbles its next head is cut."""
    limits = HttpLimits(header_timeout_s=FAST, body_timeout_s=SLOW, idle_timeout_s=SLOW)
    async with served(kind, tmp_path, limits) as s:
        conn = await RawConn.open(s.port)
        for _ in range(3):
            await conn.send(b"GET /admin/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await conn.response()).status == 200
        head = b"GET /admin/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        assert await conn.dribble(head), "a slow head after served requests was not cut"
        assert s.stats.header_timeouts == 1
        await conn.close()


@KINDS
async def test_requests_on_a_keepalive_connection_schedule_no_timer_each(
    kind, tmp_path, monkeypatch
):
    """The header deadline costs no event-loop timer per request: a connection serving
    many requests schedules a bounded number of timers (the header watchdog's and
    aiohttp's keep-alive, each re-armed lazily), not one per request -- each scheduled
    timer is a heap push on the loop, and a cancelled one a heap clean-up later."""
    limits = HttpLimits(header_timeout_s=SLOW, body_timeout_s=SLOW, idle_timeout_s=SLOW)
    async with served(kind, tmp_path, limits) as s:
        loop = asyncio.get_running_loop()
        real_call_at = loop.call_at
        by_server: list[str] = []

        def counting_call_at(when: float, callback: Any, *args: Any, **kw: Any) -> Any:
            if isinstance(getattr(callback, "__self__", None), RequestHandler):
                by_server.append(callback.__name__)
            return real_call_at(when, callback, *args, **kw)

        conn = await RawConn.open(s.port)
        await conn.send(b"GET /admin/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await conn.response()).status == 200
        monkeypatch.setattr(loop, "call_at", counting_call_at)  # call_later goes through it
        requests = 50
        for _ in range(requests):
            await conn.send(b"GET /admin/health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await conn.response()).status == 200
        monkeypatch.undo()
        await conn.close()
    assert len(by_server) <= 2, f"{len(by_server)} timers for {requests} requests: {by_server}"


# -- item: no credential in a 400 body or a log line ----------------------------------------

#: Requests aiohttp's parser refuses, each carrying a credential it used to echo.
MALFORMED = [
    # request line with junk after the version, a legacy signature in the query
    f"GET /token/apply?actions=R&signature={LEGACY_SIG} HTTP/1.1 junk\r\nHost: x\r\n\r\n",
    # header garbage after an Authorization header
    f"GET /token/query?token={TOKEN} HTTP/1.1\r\nHost: x\r\n"
    f"Authorization: Basic {BASIC}\r\nnot a header\r\n\r\n",
    # the Authorization line itself is the malformed one (space before the colon)
    f"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization : Basic {BASIC}\r\n\r\n",
    # a control character in the query, next to a token
    f"GET /token/query?token={TOKEN}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    # a bad Content-Length after credentials
    f"POST /?Signature={LEGACY_SIG} HTTP/1.1\r\nHost: x\r\n"
    f"Authorization: Basic {BASIC}\r\nContent-Length: zz\r\n\r\n",
    # a header line past the size limit, holding a token
    f"GET / HTTP/1.1\r\nHost: x\r\nX-Token: {TOKEN}{'a' * 9000}\r\n\r\n",
]
SECRETS = [LEGACY_SIG, LEGACY_SIG.replace("+", "%2B"), TOKEN, BASIC, BASIC_SECRET]


@contextlib.contextmanager
def process_log(level: int = logging.INFO) -> Any:
    """Everything every logger of this process writes at ``level``, through the handler
    set-up ``main`` gives the process (sim.shared.logredact.install_log_guards)."""
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    install_log_guards([handler])
    old = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


@KINDS
async def test_malformed_requests_get_json_400_and_no_credential_is_echoed_or_logged(
    kind, tmp_path
):
    async with served(kind, tmp_path, HttpLimits()) as s:
        with process_log() as log:
            for request in MALFORMED:
                answer = await exchange(s.port, request.encode("latin-1"))
                assert answer.status == 400, request
                assert answer.headers["content-type"].startswith("application/json")
                assert message_of(answer.json()).startswith("malformed HTTP request")
                for secret in SECRETS:
                    assert secret.encode() not in answer.body, (request, answer.body)
        assert s.stats.malformed == len(MALFORMED)
        text = log.getvalue()
        for secret in SECRETS:
            assert secret not in text, text


@KINDS
async def test_an_expectation_other_than_100_continue_gets_the_servers_json(kind, tmp_path):
    """aiohttp answers an ``Expect`` it does not know before the app's middleware, with a
    plain-text 417 that quotes the header; found by the adversarial suite."""
    async with served(kind, tmp_path, HttpLimits()) as s:
        method, path, headers = s.json_endpoint
        for expect in ("200-ok", f"x-{LEGACY_SIG}"):
            head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            request = (
                f"{method} {path} HTTP/1.1\r\nHost: x\r\n{head}Expect: {expect}\r\n"
                "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            )
            answer = await exchange(s.port, request.encode())
            assert 400 <= answer.status < 500, (expect, answer)
            assert answer.headers["content-type"].startswith("application/json"), answer
            assert "Expect" in message_of(answer.json())
            assert LEGACY_SIG.encode() not in answer.body
            # 100-continue is still honoured (the interim answer comes first).
            continued = await exchange(s.port, request.replace(expect, "100-continue").encode())
            assert continued.status == 100, continued


async def test_a_credential_in_the_wrong_shape_is_not_echoed_by_the_openapi(tmp_path):
    async with served("authserver", tmp_path, HttpLimits()) as s, aiohttp.ClientSession() as http:
        for authorization in (
            f"Basic {BASIC}",
            BASIC,
            f"ACS3-HMAC-SHA256 {BASIC}",
            f"ACS3-HMAC-SHA256 Credential=dev-ak,{LEGACY_SIG}",
        ):
            headers = {
                "Authorization": authorization,
                "x-acs-action": "QueryToken",
                "x-acs-version": "2020-04-20",
            }
            async with http.get(f"{s.url}/?Token=t&InstanceId=mqtt-dev", headers=headers) as resp:
                text = await resp.text()
                assert resp.status == 400 and "Authorization" in text, text
                assert BASIC not in text and LEGACY_SIG not in text, text


# -- item: 4xx, never 5xx, for bodies that do not decode or nest too deep --------------------


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data)


def _bodies(rng: random.Random, valid: bytes) -> list[tuple[str, str, bytes]]:
    """(case, Content-Encoding, body): garbage, truncated and valid bodies in every coding."""
    coders = {"gzip": gzip.compress, "deflate": _deflate, "identity": lambda b: b}
    garbage = rng.randbytes(rng.randrange(1, 300))
    deep = b"[" * 5000 + b"]" * 5000
    cases: list[tuple[str, str, bytes]] = []
    for name, code in coders.items():
        spelled = rng.choice([name, name.upper(), f" {name} "])
        if name != "identity":
            cases.append(("garbage", spelled, garbage))
            whole = code(valid)
            cases.append(("truncated", spelled, whole[: rng.randrange(1, len(whole))]))
        cases.append(("deep", spelled, code(deep)))
        cases.append(("valid", spelled, code(valid)))
    for coding in ("br", "zstd", "x-gzip", "compress", "gzip, gzip", "gzip, identity", "b\xe4d"):
        cases.append(("unsupported", coding, gzip.compress(valid)))
    return cases


@KINDS
async def test_bodies_that_fail_their_content_encoding_are_400_json(kind, tmp_path):
    rng = random.Random(20_261_201)
    async with served(kind, tmp_path, HttpLimits()) as s, aiohttp.ClientSession() as http:
        endpoints = list(s.json_endpoints)
        if kind == "authserver":  # the token APIs read form bodies
            endpoints += [
                ("POST", "/token/apply", {"Content-Type": "application/x-www-form-urlencoded"}),
                ("POST", "/", {"Content-Type": "application/x-www-form-urlencoded"}),
            ]
        seen = 0
        for _ in range(8):
            for method, path, headers in endpoints:
                valid = b'{"secret": "x", "grants": []}'
                if "form" in headers.get("Content-Type", ""):
                    valid = b"actions=R&resources=a&serviceName=mq"
                for case, coding, body in _bodies(rng, valid):
                    async with http.request(
                        method,
                        s.url + path,
                        data=body,
                        headers={
                            **headers,
                            "Content-Encoding": coding,
                            "Content-Type": headers.get("Content-Type", "application/json"),
                        },
                    ) as resp:
                        seen += 1
                        assert resp.status < 500, (case, coding, path, await resp.text())
                        assert resp.content_type == "application/json", (case, coding, path)
                        body_json = await resp.json()
                        if path.startswith("/token/"):  # legacy: the code is in the body
                            status = body_json["code"] if resp.status == 200 else resp.status
                        else:
                            status = resp.status
                        where = (case, coding, path, body_json)
                        if case in ("garbage", "unsupported"):
                            assert status == 400, where
                            message = message_of(body_json)
                            assert "Content-Encoding" in message, where
                        elif case != "valid":
                            # aiohttp hands a truncated gzip body over as the prefix it
                            # decoded: the endpoint refuses what it got.
                            assert status == 400, where
        assert seen >= 400


@KINDS
async def test_json_nested_too_deep_is_400_on_every_json_endpoint(kind, tmp_path):
    rng = random.Random(7)
    async with served(kind, tmp_path, HttpLimits()) as s, aiohttp.ClientSession() as http:
        for method, path, headers in s.json_endpoints:
            for _ in range(8):
                depth = rng.choice([33, 64, 999, 5_000, 200_000])
                shape = rng.choice(["list", "object", "unclosed", "in-a-field"])
                if shape == "list":
                    body = b"[" * depth + b"]" * depth
                elif shape == "object":
                    body = b'{"a":' * depth + b"1" + b"}" * depth
                elif shape == "unclosed":
                    body = b"[" * depth
                else:
                    body = b'{"secret": "x", "grants": ' + b"[" * depth + b"]" * depth + b"}"
                async with http.request(method, s.url + path, data=body, headers=headers) as resp:
                    assert resp.status == 400, (path, depth, shape, await resp.text())
                    body_json = await resp.json()
                    if shape != "unclosed" and len(body) < 1_000_000:  # else: too large
                        assert "nested deeper than 32" in message_of(body_json), body_json
            # A body as deep as the limit allows is parsed (and judged on its content).
            body = b'{"a":' * 31 + b"1" + b"}" * 31
            async with http.request(method, s.url + path, data=body, headers=headers) as resp:
                assert resp.status < 500
                assert "nested deeper" not in message_of(await resp.json())


def test_http_limits_flags_reach_both_configs():
    import argparse

    from mock_authserver.cli import add_arguments as auth_arguments
    from mock_authserver.cli import config_from_args as auth_config
    from sim.customer.appserver.cli import add_arguments as app_arguments
    from sim.customer.appserver.cli import config_from_args as app_config

    flags = ["--header-timeout", "1.5", "--body-timeout", "2.5", "--idle-timeout", "3.5"]
    expected = HttpLimits(1.5, 2.5, 3.5)
    for add, build in ((auth_arguments, auth_config), (app_arguments, app_config)):
        parser = argparse.ArgumentParser()
        add(parser)
        assert build(parser.parse_args(flags)).http == expected
        assert build(parser.parse_args([])).http == HttpLimits()
        with pytest.raises(ValueError):
            build(parser.parse_args(["--body-timeout", "0"]))
    assert json.dumps(HttpLimits().__dict__)  # plain numbers, printable in docs
