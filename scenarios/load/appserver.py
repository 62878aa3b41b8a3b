"""The AppServer's HTTP API for every Locust user of one process: one shared pool.

A ``requests`` session per user (Locust's ``HttpSession``) keeps a connection pool per
user: one more descriptor per user for a call it makes once a minute.  Here every user
of a worker shares one ``geventhttpclient`` pool of ``--http-pool`` keep-alive
connections (users wait for a free one; gevent, no thread).  Timings are the callers'
(``events.request.measure()`` in :mod:`.runtime`).

Any AppServer: with an adapter file (``--adapter FILE``, docs/your-appserver.md)
:class:`AdapterApi` asks through the adapter's pure ``prepare_request`` /
``read_answer`` (:mod:`sim.customer.adapter`) over the same pool; the built-in adapter is
:class:`AppServerApi` (the reference AppServer, which also creates each user's account).

Errors: :class:`HttpStatus` (the AppServer answered, with a status we did not want:
the system under test spoke); socket errors pass through as :class:`OSError`.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import quote, urlsplit

from geventhttpclient import HTTPClient

from sim.customer.adapter import (
    Adapter,
    AskError,
    ClientIdentity,
    Credentials,
    prepare_request,
    read_answer,
)
from sim.customer.adapter.render import join_url
from sim.shared.protocol import InvalidCredentials, parse_token_password

__all__ = ["AdapterApi", "AppServerApi", "HttpStatus", "get_text", "post", "token_document"]


class HttpStatus(Exception):
    """The server answered with an unexpected status."""

    def __init__(self, status: int, body: bytes):
        self.status = status
        snippet = body[:160].decode("utf-8", "replace")
        super().__init__(f"HTTP {status}: {snippet}")


def _pool(base_url: str, pool: int, timeout: float) -> HTTPClient:
    """The process's keep-alive pool to the AppServer at ``base_url``."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the AppServer URL must be http(s)://host:port, got {base_url!r}")
    return HTTPClient.from_url(
        base_url, concurrency=max(1, pool), connection_timeout=timeout, network_timeout=timeout
    )


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


class AppServerApi:
    """``PUT /admin/accounts/{id}``, ``POST /v1/tokens``, ``GET /admin/metrics``."""

    def __init__(self, base_url: str, *, pool: int = 64, timeout: float = 10.0):
        self._client = _pool(base_url, pool, timeout)
        self.base_url = base_url.rstrip("/")

    def close(self) -> None:
        self._client.close()

    def _call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        payload = b"" if body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        with self._client.request(method, path, body=payload, headers=hdrs) as resp:
            return resp.status_code, resp.read()

    def put_account(self, client_id: str, secret: str, resources: list[str]) -> None:
        """Create (or replace: idempotent) the AppServer account of a simulated device."""
        body = {
            "secret": secret,
            "grants": [{"resources": resources, "actions": "R,W"}],
            "enabled": True,
        }
        status, text = self._call("PUT", f"/admin/accounts/{quote(client_id, safe='')}", body)
        if status not in (200, 201, 204):
            raise HttpStatus(status, text)

    def ask_token(self, client_id: str, secret: str, resources: list[str]) -> dict[str, Any]:
        """``POST /v1/tokens``: the token document (``username``, ``password``, ...)."""
        status, text = self._call(
            "POST",
            "/v1/tokens",
            {"resources": resources, "actions": "R,W"},
            {"Authorization": _basic(client_id, secret)},
        )
        if status != 200:
            raise HttpStatus(status, text)
        try:
            doc = json.loads(text)
        except ValueError:
            raise HttpStatus(status, b"200 without a JSON token document") from None
        if not isinstance(doc, dict) or not all(
            isinstance(doc.get(k), str) for k in ("username", "password", "token", "type")
        ):
            raise HttpStatus(status, b"200 without a token document")
        return doc

    def get_text(self, path: str) -> str:
        status, text = self._call("GET", path)
        if status != 200:
            raise HttpStatus(status, text)
        return text.decode("utf-8", "replace")


def token_document(creds: Credentials) -> dict[str, Any]:
    """An adapter's answer in the users' shape: the CONNECT ``username`` and
    ``password``, and the ``token`` and ``type`` of its (first) ``TYPE|token`` pair, which
    an in-session refresh uploads (SPEC §4)."""
    try:
        pairs = parse_token_password(creds.password)
    except InvalidCredentials as exc:
        raise HttpStatus(200, f"the password is not TYPE|token: {exc}".encode()) from None
    token_type, token = next(iter(pairs.items()))
    return {
        "username": creds.username,
        "password": creds.password,
        "token": token,
        "type": str(token_type),
        "expire_ms": creds.expire_ms,
    }


class AdapterApi:
    """Any AppServer, asked as its adapter says, on one pool shared by the process."""

    def __init__(
        self, base_url: str, adapter: Adapter, *, pool: int = 64, timeout: float = 10.0
    ) -> None:
        if adapter.request is None or adapter.response is None:
            raise ValueError(
                f"adapter {adapter.name}: Locust users ask through [request] and [response];"
                " an 'ask' callable is asyncio code, which cannot run under gevent"
            )
        self._client = _pool(base_url, pool, timeout)
        self.base_url = base_url.rstrip("/")
        self.adapter = adapter
        self._request, self._response = adapter.request, adapter.response

    def close(self) -> None:
        self._client.close()

    def ask(self, client: ClientIdentity) -> dict[str, Any]:
        """One ask for ``client``: the token document (:func:`token_document`)."""
        prepared = prepare_request(self._request, client)
        target = urlsplit(join_url(self.base_url, prepared.path))
        path = (target.path or "/") + (f"?{target.query}" if target.query else "")
        headers = dict(prepared.headers)
        content_type = prepared.content_type()
        if content_type is not None:
            headers["Content-Type"] = content_type
        body = prepared.body_bytes() or b""
        with self._client.request(prepared.method, path, body=body, headers=headers) as resp:
            status, raw = resp.status_code, resp.read()
            answer_headers = {str(k): str(v) for k, v in resp.items()}
        try:
            creds = read_answer(
                self._response, status, answer_headers, raw, now_ms=round(time.time() * 1000)
            )
        except AskError as exc:
            raise HttpStatus(exc.status or status, str(exc).encode()) from None
        return token_document(creds)


def _one_off(method: str, url: str, timeout: float) -> tuple[int, bytes]:
    parts = urlsplit(url)
    client = HTTPClient.from_url(url, connection_timeout=timeout, network_timeout=timeout)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with client.request(method, path, body=b"") as resp:
            return resp.status_code, resp.read()
    finally:
        client.close()


def get_text(url: str, timeout: float = 10.0) -> str:
    """``GET url`` (the master's reads of ``/admin/metrics``)."""
    status, body = _one_off("GET", url, timeout)
    if status != 200:
        raise HttpStatus(status, body)
    return body.decode("utf-8", "replace")


def post(url: str, timeout: float = 30.0) -> bytes:
    """``POST url`` with an empty body (a lever such as a stack's ``/kick``)."""
    status, body = _one_off("POST", url, timeout)
    if status not in (200, 201, 202, 204):
        raise HttpStatus(status, body)
    return body
