"""The AppServer's rules, pure: what a client may ask for, which cached token answers
it, and how long a new token should live.  No I/O, no clock (``now`` is passed in).

* :func:`parse_token_request` / :func:`parse_grants` validate what arrives as JSON.
* :func:`check_acl` -- every requested filter must be covered (``sim.shared.protocol.covers``)
  by a grant that allows every requested action; a 403 names the first that is not.
* :class:`TokenKey` -- one token per (account, instance, actions, sorted resources)
  (SPEC §5).
* :func:`has_enough_life` / :func:`choose_expire_ms` -- the TTL policy, keeping the
  AuthServer's 60 s minimum and 30-day cap (SPEC §3a).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sim.shared.protocol import (
    InvalidCredentials,
    InvalidTopic,
    TokenType,
    covers,
    parse_actions,
    render_actions,
    token_type_of,
    validate_filter,
)

from .errors import BadRequest, Forbidden, Unauthorized

__all__ = [
    "CLIENT_ID_RE",
    "EXPIRE_SAFETY_S",
    "MAX_RESOURCES",
    "MAX_TTL_S",
    "MIN_TTL_S",
    "Account",
    "CachedToken",
    "Grant",
    "TokenKey",
    "TokenRequest",
    "allows",
    "check_acl",
    "choose_expire_ms",
    "has_enough_life",
    "is_allowed",
    "is_valid",
    "parse_account_body",
    "parse_basic_auth",
    "parse_grants",
    "parse_json",
    "parse_token_body",
    "parse_token_request",
    "validate_client_id",
]

MIN_TTL_S = 60  # SPEC §3a: expireTime at least now + 60 s
MAX_TTL_S = 30 * 86400  # SPEC §3a: more than 30 days is capped
#: The AuthServer checks the 60 s minimum on its own clock, after the request travelled:
#: never ask for less than this above the minimum.
EXPIRE_SAFETY_S = 5
MAX_RESOURCES = 100  # SPEC §3a: 1-100 filters
MAX_FILTER_CHARS = 1024  # ours: a token carries its resources; keep requests sane
#: Local account ids: what fits a path segment and a Basic-auth user (no ':').
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9_\-.@]{1,128}")


def validate_client_id(client_id: str) -> str:
    if not isinstance(client_id, str) or not CLIENT_ID_RE.fullmatch(client_id):
        raise BadRequest("client_id must be 1-128 characters of A-Z a-z 0-9 _ - . @")
    return client_id


def parse_basic_auth(header: str | None) -> tuple[str, str]:
    """``Authorization: Basic base64(client_id:secret)`` → ``(client_id, secret)``."""
    if not header:
        raise Unauthorized("HTTP Basic credentials (client_id:secret) are required")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise Unauthorized("use HTTP Basic authentication (client_id:secret)")
    try:
        raw = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Unauthorized("malformed HTTP Basic credentials") from None
    client_id, sep, secret = raw.partition(":")
    if not sep or not client_id or not secret:
        raise Unauthorized("HTTP Basic credentials must be client_id:secret")
    if not CLIENT_ID_RE.fullmatch(client_id) or len(secret) > 1024:
        raise Unauthorized("unknown client id or wrong secret")
    return client_id, secret


# -- requests and grants --------------------------------------------------------------


def _filters(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise BadRequest(f"{what} must be a non-empty list of MQTT topic filters")
    if len(value) > MAX_RESOURCES:
        raise BadRequest(f"{what} has {len(value)} filters; at most {MAX_RESOURCES}")
    out: set[str] = set()
    for item in value:
        if not isinstance(item, str):
            raise BadRequest(f"{what} must contain only strings")
        if len(item) > MAX_FILTER_CHARS:
            raise BadRequest(f"{what}: a filter is longer than {MAX_FILTER_CHARS} characters")
        if "," in item:
            # The AuthServer takes resources comma-separated (SPEC §3a).
            raise BadRequest(f"{what}: filter {item[:80]!r} must not contain ','")
        try:
            validate_filter(item)
        except InvalidTopic as exc:
            raise BadRequest(f"{what}: {exc}") from None
        out.add(item)
    # Dictionary order, as the AuthServer wants them and as the cache key needs them.
    return tuple(sorted(out))


def _actions(value: object, what: str) -> frozenset[str]:
    if not isinstance(value, str):
        raise BadRequest(f'{what} must be one of "R", "W", "R,W"')
    try:
        return parse_actions(value)
    except InvalidCredentials:
        raise BadRequest(f'{what} must be one of "R", "W", "R,W"') from None


def _object(body: object, allowed: Iterable[str], what: str) -> Mapping[str, object]:
    if not isinstance(body, dict):
        raise BadRequest(f"{what} must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"{what} has unknown field(s): {', '.join(map(str, unknown))[:120]}")
    return body


@dataclass(frozen=True)
class TokenRequest:
    """What a client asks for: actions and the (sorted, de-duplicated) filters."""

    actions: frozenset[str]
    resources: tuple[str, ...]

    @property
    def token_type(self) -> TokenType:
        return token_type_of(self.actions)


def parse_token_request(body: object) -> TokenRequest:
    """The JSON body of ``POST /v1/tokens``: ``{"resources": [...], "actions": ...}``."""
    obj = _object(body, ("resources", "actions"), "request body")
    for name in ("resources", "actions"):
        if name not in obj:
            raise BadRequest(f"request body is missing {name!r}")
    return TokenRequest(
        _actions(obj["actions"], "actions"), _filters(obj["resources"], "resources")
    )


def parse_json(raw: bytes) -> object:
    if not raw.strip():
        raise BadRequest("request body must be a JSON object")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("request body is not valid JSON") from None


@functools.lru_cache(maxsize=4096)
def _parse_small_token_body(raw: bytes) -> TokenRequest:
    return parse_token_request(parse_json(raw))


def parse_token_body(raw: bytes) -> TokenRequest:
    """:func:`parse_token_request` of a raw JSON body.  Small bodies are remembered
    (clients ask for the same topics again and again); errors are not."""
    if len(raw) <= 2048:
        return _parse_small_token_body(raw)
    return parse_token_request(parse_json(raw))


@dataclass(frozen=True)
class Grant:
    """One ACL entry of an account: these actions on topics these filters cover."""

    resources: tuple[str, ...]
    actions: frozenset[str]

    def to_json(self) -> dict[str, object]:
        return {"resources": list(self.resources), "actions": render_actions(self.actions)}


def parse_grants(value: object, what: str = "grants") -> tuple[Grant, ...]:
    if not isinstance(value, list):
        raise BadRequest(f'{what} must be a list of {{"resources", "actions"}}')
    if len(value) > 1000:
        raise BadRequest(f"{what}: at most 1000 grants per account")
    grants = []
    for i, item in enumerate(value):
        obj = _object(item, ("resources", "actions"), f"{what}[{i}]")
        if "resources" not in obj or "actions" not in obj:
            raise BadRequest(f"{what}[{i}] needs 'resources' and 'actions'")
        grants.append(
            Grant(
                _filters(obj["resources"], f"{what}[{i}].resources"),
                _actions(obj["actions"], f"{what}[{i}].actions"),
            )
        )
    return tuple(grants)


def _denied(grants: Sequence[Grant], request: TokenRequest) -> tuple[str, str] | None:
    for topic_filter in request.resources:
        for action in sorted(request.actions):
            if not any(
                action in g.actions and any(covers(r, topic_filter) for r in g.resources)
                for g in grants
            ):
                return topic_filter, action
    return None


def is_allowed(grants: Sequence[Grant], request: TokenRequest) -> bool:
    return _denied(grants, request) is None


def check_acl(grants: Sequence[Grant], request: TokenRequest) -> None:
    """Raise :class:`Forbidden` naming the first filter no grant covers for an action."""
    denied = _denied(grants, request)
    if denied is not None:
        topic_filter, action = denied
        verb = "read (R)" if action == "R" else "write (W)"
        raise Forbidden(
            f"not allowed to {verb} {topic_filter!r}: no grant of the account covers it"
        )


# -- accounts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    client_id: str
    secret_hash: str
    grants: tuple[Grant, ...]
    enabled: bool = True

    def to_json(self) -> dict[str, object]:
        """The public view: never the hash."""
        return {
            "client_id": self.client_id,
            "grants": [g.to_json() for g in self.grants],
            "enabled": self.enabled,
        }


def allows(account: Account | None, request: TokenRequest) -> bool:
    """The account exists, is enabled, and its grants cover ``request``: a cached token
    for it may be handed out (the cache's invariant, docs/appserver.md)."""
    return account is not None and account.enabled and is_allowed(account.grants, request)


@dataclass(frozen=True)
class AccountBody:
    secret: str | None
    grants: tuple[Grant, ...] | None
    enabled: bool | None


def parse_account_body(body: object, *, what: str = "request body") -> AccountBody:
    """``{"secret", "grants", "enabled"}``; each optional here (creation needs a secret
    and grants: checked by the caller, who knows whether the account exists)."""
    obj = _object(body, ("secret", "grants", "enabled"), what)
    secret = obj.get("secret")
    if secret is not None and (not isinstance(secret, str) or not 1 <= len(secret) <= 1024):
        raise BadRequest(f"{what}: secret must be a string of 1-1024 characters")
    enabled = obj.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise BadRequest(f"{what}: enabled must be true or false")
    prefix = "grants" if what == "request body" else f"{what}.grants"
    grants = parse_grants(obj["grants"], prefix) if "grants" in obj else None
    return AccountBody(secret, grants, enabled)


# -- the token cache ---------------------------------------------------------------------


@dataclass(frozen=True)
class TokenKey:
    """One token per (account, instance, actions, sorted resources) (SPEC §5)."""

    account: str
    instance_id: str
    actions: str  # rendered: "R", "W" or "R,W"
    resources: tuple[str, ...]

    @classmethod
    def of(cls, account: str, instance_id: str, request: TokenRequest) -> TokenKey:
        return cls(account, instance_id, render_actions(request.actions), request.resources)

    def text(self) -> str:
        """Stable primary key for the store."""
        return json.dumps(
            [self.account, self.instance_id, self.actions, list(self.resources)],
            separators=(",", ":"),
        )

    @classmethod
    def from_text(cls, text: str) -> TokenKey:
        account, instance_id, actions, resources = json.loads(text)
        return cls(account, instance_id, actions, tuple(resources))

    @property
    def request(self) -> TokenRequest:
        return TokenRequest(frozenset(self.actions.split(",")), self.resources)


@dataclass(frozen=True)
class CachedToken:
    key: TokenKey
    token: str
    expire_ms: int
    issued_ms: int


def is_valid(expire_ms: int, now_ms: int) -> bool:
    """Still usable at all (the stale fallback): not yet expired."""
    return expire_ms > now_ms


def has_enough_life(expire_ms: int, now_ms: int, margin_s: float) -> bool:
    """Hand out again only with more than ``margin_s`` of life left."""
    return expire_ms - now_ms > margin_s * 1000


def choose_expire_ms(now_ms: int, ttl_s: float) -> int:
    """``now + ttl``, kept within [now + 60 s + safety, now + 30 days] (SPEC §3a)."""
    low = now_ms + (MIN_TTL_S + EXPIRE_SAFETY_S) * 1000
    high = now_ms + MAX_TTL_S * 1000
    return int(min(max(now_ms + ttl_s * 1000, low), high))
