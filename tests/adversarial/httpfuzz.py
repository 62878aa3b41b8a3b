"""A seeded HTTP fuzzer: genuine requests, mutated, sent as raw bytes, every answer judged.

Each case is a pure function of ``(seed, family, index)`` and of the world the test set
up (accounts, a pool of genuine tokens): :meth:`Fuzzer.case` rebuilds any case that
failed, and the failure names it.  A case is one to three requests (a replay sends its
request twice); each request carries the labels of the mutations that made it and
whether it is **forged**: a request that a correct server must refuse, so that its
success is an accepted forgery (a corrupted or foreign signature, a signed value changed
after signing, a timestamp outside the window, a replayed nonce, another account's
credentials, a secret that is not the account's...).

Verdicts, for every answer: no 5xx; every error (status >= 400) a JSON object with a
JSON content type; no traceback; no credential of the request echoed; a forged request
never succeeds.  A request the server answers by closing the connection is counted
(``closed_without_answer``), never retried silently.

Requests go over raw sockets (answers parsed by :mod:`tests.authserver.rawhttp`): a client
library would refuse to send half of them.  Connections are kept alive while the server
allows it.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlencode

from tests.authserver.rawhttp import parse_response

READ_WITHIN_S = 20.0  # a deadline for an answer (a hang is a finding), not a pace

# -- requests ------------------------------------------------------------------------------


@dataclass
class Request:
    """One HTTP/1.1 request, rendered byte for byte by :meth:`render`."""

    method: str = "GET"
    path: str = "/"
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    version: str = "HTTP/1.1"
    raw_query: str | None = None  # sent as is instead of ``query``
    chunked: bool = False  # Transfer-Encoding: chunked instead of Content-Length
    content_length: str | None = None  # a malformed Content-Length, sent instead
    raw: bytes | None = None  # the whole request, as is
    forged: bool = False
    labels: tuple[str, ...] = ()
    #: Credentials this request carries that no answer may echo.
    secrets: tuple[str, ...] = ()

    def label(self, *names: str) -> Request:
        return replace(self, labels=(*self.labels, *names))

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    def without_header(self, name: str) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self.headers if k.lower() != name.lower()]

    def target(self) -> str:
        if self.raw_query is not None:
            return f"{self.path}?{self.raw_query}"
        if self.query:
            return f"{self.path}?{urlencode(self.query, quote_via=quote)}"
        return self.path

    def render(self) -> bytes:
        if self.raw is not None:
            return self.raw
        lines = [f"{self.method} {self.target()} {self.version}"]
        if self.header("host") is None:
            lines.append("Host: 127.0.0.1")
        lines += [f"{k}: {v}" for k, v in self.headers]
        body = self.body
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
            body = (
                b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in _chunks(body))
                + b"0\r\n\r\n"
            )
        elif self.content_length is not None:
            lines.append(f"Content-Length: {self.content_length}")
        elif body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        return head + body


def _chunks(body: bytes, size: int = 7) -> Iterator[bytes]:
    for at in range(0, len(body), size):
        yield body[at : at + size]


# -- the wire mutations every family shares ----------------------------------------------------

HUGE = "x" * 9_000  # past aiohttp's 8190-byte line limit
UNICODE = "ünï\u200bcödé\U0001f600"
JUNK_VALUES = ["", " ", "%", "%ff", "\u0000", UNICODE, "a" * 300, HUGE, "-1", "1e309", "null"]


def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _content_type(rng: random.Random) -> str:
    return rng.choice(
        [
            "application/json",
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=latin-1",
            "multipart/form-data; boundary=zz",
            "multipart/form-data",
            "text/plain; charset=bogus",
            "application/octet-stream",
            "",
            UNICODE,
        ]
    )


def wire_mutation(rng: random.Random, req: Request, *, prefix: str) -> Request:
    """One mutation of the request as bytes on the wire.  None of them can make a forged
    request genuine: they change framing, headers, method, path or body, never put back
    a value a forgery removed.  ``prefix`` keeps path mutations inside the family's own
    routes (another family's state is not this case's business)."""
    kind = rng.choice(WIRE_KINDS)
    return WIRE[kind](rng, req, prefix).label(kind)


def _method(rng: random.Random, req: Request, prefix: str) -> Request:
    method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE",
                         "get", "FOO", "M-SEARCH", "PRI"])  # fmt: skip
    return replace(req, method=method)


def _path(rng: random.Random, req: Request, prefix: str) -> Request:
    path = req.path
    variants = [
        path + "/", path + "//", "/" + path, path.upper(), path + ";x=1", path + "%00",
        path + "/..", path.replace("/", "/%2F", 1), path + "/" + HUGE, path + "/" + quote(UNICODE),
        prefix + "nope", prefix + "%ff", prefix + "../" + prefix.strip("/"), path + "#frag",
        path + "?" if not req.query else path,
    ]  # fmt: skip
    return replace(req, path=rng.choice(variants))


def _query(rng: random.Random, req: Request, prefix: str) -> Request:
    choice = rng.randrange(6)
    if choice == 0:
        junk = (rng.choice(["x", "", UNICODE]), rng.choice(JUNK_VALUES))
        return replace(req, query=[*req.query, junk])
    if choice == 1:
        raw = rng.choice(["%", "%ff=%fe", "&&&", "=x", "a", "a=b=c", "a=%"])
        return replace(req, raw_query=raw)
    if choice == 2 and req.query:
        name, value = rng.choice(req.query)
        return replace(req, query=[*req.query, (name, value)])  # the same name twice
    if choice == 3 and req.query:
        at = rng.randrange(len(req.query))
        q = list(req.query)
        q[at] = (q[at][0], rng.choice(JUNK_VALUES))
        return replace(req, query=q)
    if choice == 4:
        return replace(req, query=[*req.query, *((f"k{i}", "v") for i in range(1200))])
    return replace(req, query=[*req.query, ("pad", HUGE)])


def _headers(rng: random.Random, req: Request, prefix: str) -> Request:
    choice = rng.randrange(9)
    if choice == 0:
        return replace(req, headers=[*req.headers, ("X-Junk", rng.choice(JUNK_VALUES[:7]))])
    if choice == 1:
        return replace(req, headers=[*req.headers, *((f"X-H{i}", "v") for i in range(120))])
    if choice == 2:
        return replace(req, headers=[*req.headers, ("X-Long", "y" * 9_000)])
    if choice == 3:
        return replace(req, headers=[*req.headers, ("Host", "evil.example")])
    if choice == 4:
        return replace(req, headers=[*req.without_header("host")], raw=None, version="HTTP/1.0")
    if choice == 5:
        return replace(req, headers=[*req.headers, ("X-Forwarded-For", "203.0.113.9"),
                                     ("Forwarded", "for=203.0.113.9")])  # fmt: skip
    if choice == 6:
        return replace(req, headers=[*req.headers, ("Connection", "close")])
    if choice == 7:
        return replace(req, headers=[*req.headers, ("Bad Header", "x")])
    return replace(req, headers=[*req.headers, ("X-Latin", "caf\udce9")])  # a raw 0xE9 byte


def _authorization(rng: random.Random, req: Request, prefix: str) -> Request:
    shape = rng.choice(
        [
            "", "Basic", "Basic ", "Basic !!!", "Basic Og==", "Basic " + "QQ" * 3000,
            "basic ZGV2LWFrOmRldi1zaw==", "Bearer x.y.z", "Digest username=x", "ACS3-HMAC-SHA256",
            "ACS3-HMAC-SHA256 Credential=dev-ak", "ACS3-HMAC-SHA256 =,=,=",
            "ACS3-HMAC-SHA256 Credential=,SignedHeaders=,Signature=", UNICODE,
        ]
    )  # fmt: skip
    headers = req.without_header("authorization") if rng.random() < 0.7 else list(req.headers)
    return replace(req, headers=[*headers, ("Authorization", shape)])


def _content_type_header(rng: random.Random, req: Request, prefix: str) -> Request:
    return replace(req, headers=[*req.without_header("content-type"),
                                 ("Content-Type", _content_type(rng))])  # fmt: skip


def _encoding(rng: random.Random, req: Request, prefix: str) -> Request:
    body = req.body or b"{}"
    bodies: list[tuple[bytes, str]] = [
        (gzip.compress(body), "gzip"),
        (zlib.compress(body), "deflate"),
        (gzip.compress(body)[:-6], "gzip"),  # truncated
        (b"not gzip at all", "gzip"),
        (b"\x78\x9c\xff\xff", "deflate"),
        (gzip.compress(b"\x00" * 4_000_000), "gzip"),  # 4 MB decoded: past the body limit
        # Raw deflate literals: a stream that never ends (aiohttp 3.14's C parser loses it).
        (b"[" * 200_000, "deflate"),
    ]
    body, coding = rng.choice([*bodies, (body, "")])
    if not coding:
        coding = rng.choice(
            ["br", "gzip, gzip", "identity, gzip", "x-unknown", UNICODE, "compress"]
        )
    headers = [*req.without_header("content-encoding"), ("Content-Encoding", coding)]
    return replace(req, body=body, headers=headers)


def _body(rng: random.Random, req: Request, prefix: str) -> Request:
    choice = rng.randrange(9)
    if choice == 0:
        return replace(req, body=b"")
    if choice == 1:
        return replace(req, body=rng.randbytes(rng.randrange(1, 400)))
    if choice == 2:
        return replace(req, body=deep_json(rng.choice([33, 1_000, 100_000])))
    if choice == 3:
        return replace(req, body=b"[" * 50_000)  # never closed
    if choice == 4:
        return replace(req, body=b"a=" + b"x" * (1_100_000))  # past the body limit
    if choice == 5:
        return replace(req, body=json.dumps({"k": UNICODE * 50, "n": 10**400}).encode())
    if choice == 6:
        return replace(req, body=b'{"a": NaN, "b": Infinity, "a": -Infinity}')
    if choice == 7:
        return replace(req, body=req.body + b"\xff\xfe trailing")
    parts = (
        b'--zz\r\nContent-Disposition: form-data; name="f"; filename="x.bin"\r\n\r\n'
        b"\x00\x01\r\n--zz--\r\n"
    )  # a file where text is expected
    multipart = ("Content-Type", "multipart/form-data; boundary=zz")
    return replace(req, body=parts, headers=[*req.without_header("content-type"), multipart])


def _framing(rng: random.Random, req: Request, prefix: str) -> Request:
    choice = rng.randrange(5)
    if choice == 0:
        return replace(req, chunked=True)
    if choice == 1:
        length = rng.choice(["-5", "abc", "1, 2", "0x10", " ", "99999999999999999999"])
        return replace(req, content_length=length)
    if choice == 2:
        expect = ("Expect", rng.choice(["100-continue", "200-ok", UNICODE]))
        return replace(req, headers=[*req.headers, expect])
    if choice == 3:
        return replace(
            req, version=rng.choice(["HTTP/1.0", "HTTP/1.2", "HTTP/2.0", "HTTP/9", "http/1.1"])
        )
    return replace(req, raw=rng.choice(RAW_REQUESTS))


#: Whole requests no generator builds: garbage, a request line alone, framing conflicts.
RAW_REQUESTS = [
    b"\x00\x01\x02\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET / HTTP/1.1\r\n X: folded\r\n\r\n",
]


WIRE: dict[str, Callable[[random.Random, Request, str], Request]] = {
    "method": _method,
    "path": _path,
    "query": _query,
    "headers": _headers,
    "authorization": _authorization,
    "content_type": _content_type_header,
    "encoding": _encoding,
    "body": _body,
    "framing": _framing,
}
WIRE_KINDS = sorted(WIRE)


def wire_mutations(rng: random.Random, req: Request, prefix: str) -> Request:
    r"""None, one or two :func:`wire_mutation`\ s (most requests keep their wire form)."""
    for _ in range(rng.choice([0, 0, 0, 1, 1, 2])):
        req = wire_mutation(rng, req, prefix=prefix)
    return req


JSON_ODD: list[Any] = [
    None, True, -1, 0, 1e308, 10**40, "", UNICODE, HUGE, [], {}, [1, "a"], {"k": {"k": []}},
    float("inf"),
]  # fmt: skip


def mutate_json(rng: random.Random, body: Any) -> tuple[Any, str]:
    """One change of a JSON body's structure or values (the body is rebuilt, not edited)."""
    kind = rng.choice(["value", "drop", "extra", "top", "deep"])
    if isinstance(body, dict) and body and kind in ("value", "drop"):
        body = dict(body)
        key = rng.choice(sorted(body))
        if kind == "value":
            body[key] = rng.choice(JSON_ODD)
        else:
            del body[key]
        return body, f"json_{kind}"
    if kind == "extra" and isinstance(body, dict):
        return {**body, rng.choice(["x", "", UNICODE]): rng.choice(JSON_ODD)}, "json_extra"
    if kind == "deep":
        nested: Any = body
        for _ in range(rng.choice([10, 33, 200])):
            nested = {"k": nested}
        return nested, "json_deep"
    return rng.choice([[body], "text", 1, None]), "json_top"


def json_body(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


def json_request(
    rng: random.Random,
    method: str,
    path: str,
    body: Any,
    *,
    prefix: str,
    query: list[tuple[str, str]] | None = None,
) -> Request:
    """An admin-style JSON request: its body (if any) sometimes mutated or replaced by
    JSON nested too deep, then its wire form mutated within ``prefix``."""
    labels: list[str] = []
    if body is not None and rng.random() < 0.5:
        body, label = mutate_json(rng, body)
        labels.append(label)
    raw = json_body(body) if body is not None else b""
    if rng.random() < 0.08:
        raw = deep_json(rng.choice([33, 5_000]))
        labels.append("json_depth")
    headers = [("Content-Type", "application/json")] if raw else []
    req = Request(method, path, query=query or [], headers=headers, body=raw, labels=tuple(labels))
    return wire_mutations(rng, req, prefix)


# -- sending -----------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


class _Wire(asyncio.Protocol):
    """A client connection that keeps every byte the server sent, even when the
    connection then breaks: a server that answers and closes with the request's body
    unread makes TCP reset the connection, and :class:`asyncio.StreamReader` would
    raise the reset instead of handing over the answer it already holds."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.closed = False
        self.changed = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.changed.set()

    async def answer(self, head_only: bool) -> Answer | None:
        """The next whole answer (interim 1xx skipped), or ``None`` if the connection
        closed first."""
        async with asyncio.timeout(READ_WITHIN_S):
            while True:
                got = self._parse(head_only)
                if got is not None:
                    return got
                if self.closed:
                    return None
                self.changed.clear()
                await self.changed.wait()

    def _parse(self, head_only: bool) -> Answer | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = parse_response(bytes(self.buffer[: end + 4]))
        if 100 <= head.status < 200:
            del self.buffer[: end + 4]
            return self._parse(head_only)
        assert "transfer-encoding" not in head.headers, "a chunked answer: teach the reader"
        length = 0 if head_only else int(head.headers.get("content-length", "0"))
        if len(self.buffer) < end + 4 + length:
            return None
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        return Answer(head.status, head.headers, body)


class Channel:
    """One worker's connection to the server, kept alive while the server allows it.

    A server may close a kept-alive connection after any answer (aiohttp does after a
    request it could not parse, without saying ``Connection: close``); a request that
    then finds the connection closed before a byte of answer came back is sent again,
    once, on a new connection (counted in :attr:`resent`).  On a new connection, no
    answer is the server's own doing, and is counted by the caller."""

    def __init__(self, port: int):
        self.port = port
        self.wire: _Wire | None = None
        self.opened = 0
        self.resent = 0

    async def exchange(self, req: Request) -> Answer | None:
        """The server's answer to ``req``, or ``None`` if it closed a new connection
        without one."""
        reused = self.wire is not None
        answer = await self._exchange(req)
        if answer is None and reused:
            self.resent += 1
            answer = await self._exchange(req)
        return answer

    async def _exchange(self, req: Request) -> Answer | None:
        if self.wire is None:
            loop = asyncio.get_running_loop()
            _, self.wire = await loop.create_connection(_Wire, "127.0.0.1", self.port)
            self.opened += 1
        wire = self.wire
        assert wire.transport is not None
        if not wire.closed:
            wire.transport.write(req.render())
        answer = await wire.answer(head_only=req.method == "HEAD")
        keep = req.raw is None and req.header("connection") != "close"
        if (
            answer is None
            or not keep
            or wire.buffer  # more than one answer: never read a stale one later
            or answer.headers.get("connection", "").lower() == "close"
        ):
            self.close()
        return answer

    def close(self) -> None:
        if self.wire is not None:
            wire, self.wire = self.wire, None
            if wire.transport is not None:
                wire.transport.abort()


# -- verdicts ----------------------------------------------------------------------------------


def _json_object(answer: Answer) -> bool:
    if not answer.headers.get("content-type", "").startswith("application/json"):
        return False
    try:
        return isinstance(json.loads(answer.body), dict)
    except ValueError:
        return False


Succeeded = Callable[[Request, Answer], bool]


def judge(req: Request, answer: Answer, succeeded: Succeeded) -> list[str]:
    problems = []
    if answer.status >= 500:
        problems.append(f"{answer.status}")
    if answer.status >= 400:
        if req.method == "HEAD":
            if not answer.headers.get("content-type", "").startswith("application/json"):
                problems.append("error answer to HEAD without a JSON content type")
        elif not _json_object(answer):
            problems.append("error answer that is not a JSON object")
    elif answer.headers.get("content-type", "").startswith("application/json") and (
        answer.body and not _json_object(answer)
    ):
        problems.append("JSON content type, body not a JSON object")
    if b"Traceback" in answer.body:
        problems.append("traceback in the answer")
    for secret in req.secrets:
        if len(secret) >= 8 and secret.encode("utf-8", "replace") in answer.body:
            problems.append("a credential of the request echoed in the answer")
    if req.forged and answer.status < 400 and succeeded(req, answer):
        problems.append("FORGERY ACCEPTED")
    return problems


# -- running -----------------------------------------------------------------------------------

#: A family's cases: the requests of one case, from the case's own random generator.
CaseBuilder = Callable[[random.Random], list[Request]]


@dataclass
class Family:
    """A group of routes with its own generator of cases and its own server."""

    name: str
    port: int
    build: CaseBuilder
    succeeded: Succeeded
    weight: int = 1


@dataclass
class FuzzFigures:
    requests: int = 0
    cases: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    by_family: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    non_json_errors: int = 0
    forged: int = 0
    forged_accepted: int = 0
    pristine: int = 0
    pristine_succeeded: int = 0
    closed_without_answer: Counter[str] = field(default_factory=Counter)
    reset_after_oversized_head: int = 0
    connections: int = 0
    resent: int = 0
    slowest: list[tuple[float, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    wall_s: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "cases": self.cases,
            "requests_by_family": dict(sorted(self.by_family.items())),
            "answers_by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "status_5xx": self.server_errors,
            "non_json_error_bodies": self.non_json_errors,
            "forged_requests": self.forged,
            "forged_accepted": self.forged_accepted,
            "pristine_requests": self.pristine,
            "pristine_succeeded": self.pristine_succeeded,
            "closed_without_answer": dict(sorted(self.closed_without_answer.items())),
            "reset_after_oversized_head": self.reset_after_oversized_head,
            "connections_opened": self.connections,
            "resent_after_server_close": self.resent,
            "slowest_s": [[round(t, 3), what] for t, what in sorted(self.slowest)[::-1][:5]],
            "problems": self.problem_count,
            "first_problems": self.problems[:20],
            "wall_s": round(self.wall_s, 2),
            "requests_per_s": round(self.requests / self.wall_s, 1) if self.wall_s else None,
        }


class Fuzzer:
    def __init__(self, seed: int, families: list[Family], workers: int = 6):
        self.seed = seed
        self.families = families
        self.workers = workers
        self.figures = FuzzFigures()
        self._schedule = [f for f in families for _ in range(f.weight)]

    def case(self, index: int) -> tuple[Family, list[Request]]:
        """Case ``index``: the same requests for the same seed and world, every run."""
        rng = random.Random(f"{self.seed}/{index}")
        family = rng.choice(self._schedule)
        return family, family.build(rng)

    async def run(self, min_requests: int) -> FuzzFigures:
        started = time.monotonic()
        counter = iter(range(10**9))

        async def worker() -> None:
            channels: dict[int, Channel] = {}
            try:
                while self.figures.requests < min_requests:
                    await self._run_case(next(counter), channels)
            finally:
                for ch in channels.values():
                    self.figures.connections += ch.opened
                    self.figures.resent += ch.resent
                    ch.close()

        async with asyncio.TaskGroup() as workers:  # one failing stops the others
            for _ in range(self.workers):
                workers.create_task(worker())
        self.figures.wall_s = time.monotonic() - started
        return self.figures

    async def _run_case(self, index: int, channels: dict[int, Channel]) -> None:
        family, requests = self.case(index)
        channel = channels.setdefault(family.port, Channel(family.port))
        figures = self.figures
        figures.cases += 1
        for step, req in enumerate(requests):
            figures.requests += 1
            figures.by_family[family.name] += 1
            figures.forged += req.forged
            pristine = not req.labels
            figures.pristine += pristine
            started = time.monotonic()
            what = ", ".join(req.labels) or "pristine"
            where = f"case {index} step {step} ({family.name}; {what})"
            try:
                answer = await channel.exchange(req)
            except TimeoutError:
                channel.close()
                figures.problem_count += 1
                figures.problems.append(
                    f"{where}: no answer within {READ_WITHIN_S:g} s: {req.render()[:300]!r}"
                )
                break
            figures.slowest.append((time.monotonic() - started, where))
            if len(figures.slowest) > 50:
                figures.slowest = sorted(figures.slowest)[-10:]
            if answer is None:
                if head_past_parser_limits(req):
                    figures.reset_after_oversized_head += 1
                else:  # nothing explains it: the server hung up on a request
                    figures.closed_without_answer[_first_wire_label(req)] += 1
                    figures.problem_count += 1
                    figures.problems.append(f"{where}: no answer: {req.render()[:300]!r}")
                break  # a later step (a replay) means nothing without this one
            figures.by_status[answer.status] += 1
            succeeded = answer.status < 400 and family.succeeded(req, answer)
            figures.pristine_succeeded += pristine and succeeded
            problems = judge(req, answer, family.succeeded)
            figures.server_errors += answer.status >= 500
            figures.non_json_errors += any("JSON" in p for p in problems)
            figures.forged_accepted += "FORGERY ACCEPTED" in problems
            if problems:
                figures.problem_count += 1
                figures.problems.append(
                    f"{where}: {'; '.join(problems)}: {req.render()[:300]!r}"
                    f" -> {answer.status} {answer.body[:200]!r}"
                )


#: aiohttp's parser limits (``web_protocol.RequestHandler``): past them it answers 400 and
#: closes with the rest of the request unread, so TCP resets the connection and the
#: answer, already sent, may be lost before the client reads it.
MAX_LINE, MAX_HEADERS = 8190, 128


def head_past_parser_limits(req: Request) -> bool:
    head = req.render().split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    return any(len(line) > MAX_LINE for line in head) or len(head) - 1 > MAX_HEADERS


def _first_wire_label(req: Request) -> str:
    wire = [label for label in req.labels if label in WIRE]
    return wire[0] if wire else (req.labels[0] if req.labels else "pristine")
