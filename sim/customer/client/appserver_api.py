"""Asking the AppServer for a token: ``POST /v1/tokens`` (SPEC §5, docs/appserver.md).

HTTP Basic ``client_id:secret``; body ``{"resources": [...], "actions": "R"|"W"|"R,W"}``;
200 → ``{"token", "type", "expireTime", "instanceId", "username", "password", "stale"}``.
Every answer is validated; failures map onto :mod:`sim.customer.client.errors`.
"""

from __future__ import annotations

import base64
import contextlib
import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from sim.shared.protocol import TokenType, parse_token_password, parse_username

from .errors import (
    AppServerUnavailable,
    BadAppServerAnswer,
    BadCredentials,
    Forbidden,
    TokenRequestError,
)
from .store import StoredToken

__all__ = ["TokenGrant", "request_token"]

_MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True)
class TokenGrant:
    token: StoredToken
    stale: bool  # served from the AppServer's disaster-recovery cache


def _basic(account: str, secret: str) -> str:
    raw = f"{account}:{secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


def _message(body: Any, status: int) -> str:
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str):
                return f"{status}: {body[key][:300]}"
    return f"HTTP {status}"


def _retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return min(max(0.0, float(value)), _MAX_RETRY_AFTER)
    except ValueError:
        return 0.0  # an HTTP date: we do not trust the server's clock, backoff applies


def parse_grant(body: Any, *, actions: str, resources: tuple[str, ...]) -> TokenGrant:
    """Validate a 200 answer of ``POST /v1/tokens``."""
    if not isinstance(body, dict):
        raise BadAppServerAnswer("token answer is not a JSON object")
    try:
        token, kind, expire = body["token"], body["type"], body["expireTime"]
        instance, username, password = body["instanceId"], body["username"], body["password"]
    except KeyError as exc:
        raise BadAppServerAnswer(f"token answer lacks {exc.args[0]!r}") from None
    if not all(isinstance(v, str) and v for v in (token, kind, instance, username, password)):
        raise BadAppServerAnswer("token answer has empty or non-string fields")
    if not isinstance(expire, int) or isinstance(expire, bool):
        raise BadAppServerAnswer("token answer needs an integer expireTime (ms)")
    try:
        token_type = TokenType(kind)
        parse_username(username)
        parse_token_password(password)
    except ValueError as exc:
        raise BadAppServerAnswer(f"token answer is malformed: {exc}") from None
    stored = StoredToken(
        token=token,
        type=token_type,
        expire_ms=expire,
        instance_id=instance,
        username=username,
        password=password,
        actions=actions,
        resources=tuple(sorted(resources)),
    )
    return TokenGrant(stored, stale=bool(body.get("stale", False)))


async def request_token(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    account: str,
    secret: str,
    resources: tuple[str, ...],
    actions: str,
    request_timeout: float = 10.0,
) -> TokenGrant:
    url = base_url.rstrip("/") + "/v1/tokens"
    payload = {"resources": sorted(resources), "actions": actions}
    try:
        async with session.post(
            url,
            json=payload,
            headers={"Authorization": _basic(account, secret)},
            timeout=aiohttp.ClientTimeout(total=request_timeout),
        ) as resp:
            raw = await resp.read()
            body: Any = None
            with contextlib.suppress(ValueError):
                body = json.loads(raw) if raw else None
            if resp.status == 200:
                return parse_grant(body, actions=actions, resources=resources)
            msg = _message(body, resp.status)
            if resp.status == 401:
                raise BadCredentials(msg)
            if resp.status == 429 or resp.status >= 500:
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                raise AppServerUnavailable(msg, status=resp.status, retry_after=retry_after)
            raise Forbidden(msg)  # 403 and any other refusal of what we asked
    except TokenRequestError:
        raise
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise AppServerUnavailable(f"AppServer unreachable: {type(exc).__name__}") from None
