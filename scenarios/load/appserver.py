"""The AppServer's HTTP API for every Locust user of one process: one shared pool.

A ``requests`` session per user (Locust's ``HttpSession``) keeps a connection pool per
user: one more descriptor per user for a call it makes once a minute.  Here every user
of a worker shares one ``geventhttpclient`` pool of ``--http-pool`` keep-alive
connections (users wait for a free one; gevent, no thread).  Timings are the callers'
(``events.request.measure()`` in :mod:`.runtime`).

Errors: :class:`HttpStatus` (the AppServer answered, with a status we did not want:
the system under test spoke); socket errors pass through as :class:`OSError`.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, urlsplit

from geventhttpclient import HTTPClient

__all__ = ["AppServerApi", "HttpStatus", "get_text", "post"]


class HttpStatus(Exception):
    """The server answered with an unexpected status."""

    def __init__(self, status: int, body: bytes):
        self.status = status
        snippet = body[:160].decode("utf-8", "replace")
        super().__init__(f"HTTP {status}: {snippet}")


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


class AppServerApi:
    """``PUT /admin/accounts/{id}``, ``POST /v1/tokens``, ``GET /admin/metrics``."""

    def __init__(self, base_url: str, *, pool: int = 64, timeout: float = 10.0):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the AppServer URL must be http(s)://host:port, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._client = HTTPClient.from_url(
            base_url,
            concurrency=max(1, pool),
            connection_timeout=timeout,
            network_timeout=timeout,
        )

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
