"""What a CONNECT, PUBLISH, SUBSCRIBE or token upload is allowed to do (SPEC §4).

Pure: no amqtt, no sockets, no clock.  Every function takes the parsed input, the
authority's view (keys, accounts, revoked set) and ``now_ms``, and answers with a
:class:`SessionAccess` / ``None`` (allowed) or an :class:`InvalidCode` (refused).

CONNECT answers (MQTT 3.1.1 CONNACK codes):
    malformed username or password   4  bad user name or password
    client id not ``GID_x@@@y``      2  identifier rejected
    anything else refused            5  not authorized  (with the notice code as reason)
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Protocol

from sim.shared.httplimits import JsonTooDeep, check_json_depth
from sim.shared.protocol import (
    InvalidCode,
    InvalidCredentials,
    InvalidPayload,
    InvalidToken,
    TokenType,
    UploadToken,
    actions_of,
    covered_by_any,
    matches,
    matches_any,
    p2p_target,
    parse_token_password,
    parse_username,
    signature_password,
    validate_client_id,
)
from sim.shared.protocol.tokens import TokenClaims

from .connect import ConnackCode

__all__ = [
    "MAX_UPLOAD_DEPTH",
    "READ_TYPES",
    "WRITE_TYPES",
    "AccountInfo",
    "AuthorityView",
    "Refusal",
    "SessionAccess",
    "UploadRefused",
    "decide_connect",
    "decide_publish",
    "decide_subscribe",
    "decide_upload",
    "may_receive",
]

#: The token types that may read / write, in the order a notice names them when a
#: session holds both (the RW token first).
READ_TYPES = (TokenType.RW, TokenType.R)
WRITE_TYPES = (TokenType.RW, TokenType.W)

Mode = Literal["Token", "Signature", "Open"]


@dataclass(frozen=True)
class AccountInfo:
    access_key_id: str
    secret: str = field(repr=False)
    instances: frozenset[str]
    enabled: bool = True


class AuthorityView(Protocol):
    """What decisions need from the token authority (keys, accounts, revocations)."""

    @property
    def ready(self) -> bool: ...

    def decode(self, token: str) -> TokenClaims:
        """Claims of a genuine token; :class:`InvalidToken` otherwise."""
        ...

    def is_revoked(self, token_id: str) -> bool: ...

    def account(self, access_key_id: str) -> AccountInfo | None: ...


@dataclass(frozen=True)
class SessionAccess:
    """What one authenticated MQTT session may do: how it authenticated (token,
    signature, or open when auth is off), whose it is (account, instance, client id) and
    the tokens it holds by type, whose resources and expiry bound it (SPEC §4).  Not the
    AppServer's ``Grant`` (an account's permission to ask for tokens)."""

    mode: Mode
    access_key_id: str
    instance_id: str
    client_id: str
    tokens: Mapping[TokenType, TokenClaims] = field(default_factory=dict)

    @property
    def full_access(self) -> bool:
        """Signature mode (and auth off): everything, *in its namespace*."""
        return self.mode != "Token"

    @cached_property
    def namespace(self) -> str:
        """Where the session lives (docs/broker.md "Namespaces and sessions"): each
        instance of each account is a namespace of its own (topics, retained messages,
        client ids); ``""`` when auth is off (one namespace for everyone).  Access key
        and instance ids never contain ``|`` (the username is split on it)."""
        return "" if self.mode == "Open" else f"{self.access_key_id}|{self.instance_id}"

    def with_token(self, token_type: TokenType, claims: TokenClaims) -> SessionAccess:
        tokens = dict(self.tokens)
        tokens[token_type] = claims
        return SessionAccess(
            self.mode, self.access_key_id, self.instance_id, self.client_id, tokens
        )

    def type_of_token(self, token_id: str) -> TokenType | None:
        for token_type, claims in self.tokens.items():
            if claims.token_id == token_id:
                return token_type
        return None


@dataclass(frozen=True)
class Refusal:
    """A refused CONNECT: the CONNACK code, the notice code and a metrics reason."""

    connack: ConnackCode
    code: InvalidCode | None
    reason: str
    token_type: TokenType | None = None
    claims: TokenClaims | None = field(default=None, repr=False, compare=False)
    """The refused token's claims when it decodes (the device audit's evidence)."""


@dataclass(frozen=True)
class UploadRefused:
    code: InvalidCode
    token_type: TokenType | None
    reason: str


#: A token upload is one flat JSON object; anything nested deeper is malformed, and is
#: refused before a parser recurses into it (SPEC §4: notice code 1, then disconnect).
MAX_UPLOAD_DEPTH = 4


def _refuse(
    code: InvalidCode,
    reason: str,
    token_type: TokenType | None = None,
    claims: TokenClaims | None = None,
) -> Refusal:
    return Refusal(ConnackCode.NOT_AUTHORIZED, code, reason, token_type, claims)


def _check_token(
    token_type: TokenType,
    token: str,
    access_key_id: str,
    instance_id: str,
    authority: AuthorityView,
    now_ms: int,
) -> TokenClaims | tuple[InvalidCode, str, TokenClaims | None]:
    """One token of a CONNECT or an upload: genuine, ours, not revoked, alive, right type
    (refused: the notice code, the reason and, for a genuine token, its claims)."""
    try:
        claims = authority.decode(token)
    except InvalidToken:
        return InvalidCode.FORGED, "forged", None
    if claims.access_key_id != access_key_id or claims.instance_id != instance_id:
        return InvalidCode.ACCOUNT_INVALID, "wrong_account", None
    if authority.is_revoked(claims.token_id):
        return InvalidCode.REVOKED, "revoked", claims
    if claims.expire_ms <= now_ms:
        return InvalidCode.EXPIRED, "expired", claims
    # The type named in the password must be exactly the token's actions (CONTRACTS.md).
    if claims.actions != actions_of(token_type):
        return InvalidCode.PERMISSION_MISMATCH, "type_mismatch", claims
    return claims


def decide_connect(
    username: str | None,
    password: str | bytes | None,
    client_id: str,
    authority: AuthorityView,
    now_ms: int,
) -> SessionAccess | Refusal:
    """Token mode or signature mode CONNECT (SPEC §4)."""
    # Parsed afresh each time, never memoised: a cache keyed by what an unauthenticated
    # client sends would keep whatever it sends (docs/broker.md "Bounded memory").  The
    # token policy remembers whole decisions, and only accepted ones.
    try:
        user = parse_username(username)
    except InvalidCredentials:
        return Refusal(ConnackCode.BAD_CREDENTIALS, None, "malformed")
    try:
        validate_client_id(client_id)
    except InvalidCredentials:
        return Refusal(ConnackCode.IDENTIFIER_REJECTED, None, "client_id")
    if not authority.ready:
        return Refusal(ConnackCode.SERVER_UNAVAILABLE, None, "not_ready")
    account = authority.account(user.access_key_id)
    if account is None or not account.enabled or user.instance_id not in account.instances:
        return _refuse(InvalidCode.ACCOUNT_INVALID, "account")

    if user.mode == "Signature":
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        expected = signature_password(account.secret, client_id)
        if not password or not hmac.compare_digest(
            expected.encode("utf-8"), password.encode("utf-8", "replace")
        ):
            return _refuse(InvalidCode.BAD_SIGNATURE, "bad_signature")
        return SessionAccess("Signature", user.access_key_id, user.instance_id, client_id)

    try:
        pairs = parse_token_password(password)
    except InvalidCredentials:
        return Refusal(ConnackCode.BAD_CREDENTIALS, None, "malformed")
    tokens: dict[TokenType, TokenClaims] = {}
    for token_type, token in pairs.items():
        checked = _check_token(
            token_type, token, user.access_key_id, user.instance_id, authority, now_ms
        )
        if isinstance(checked, tuple):
            return _refuse(checked[0], checked[1], token_type, checked[2])
        tokens[token_type] = checked
    return SessionAccess("Token", user.access_key_id, user.instance_id, client_id, tokens)


def decide_publish(access: SessionAccess, topic: str) -> InvalidCode | None:
    """A PUBLISH needs a W/RW token one of whose resources matches the topic.

    A P2P topic ``<parent>/p2p/<clientId>`` (SPEC §4a) needs a W/RW token with a resource
    reaching any topic under that parent topic: the provider's own token demo sends P2P
    with a token for ``demo/testMq4Iot`` to ``demo/p2p/GID_demo@@@device001`` (the docs
    say no more; docs/fidelity.md lists this as a guess)."""
    if access.full_access:
        return None
    writers = [access.tokens[t] for t in WRITE_TYPES if t in access.tokens]
    if not writers:
        return InvalidCode.PERMISSION_MISMATCH
    if any(matches_any(c.resources, topic) for c in writers):
        return None
    p2p = p2p_target(topic)
    if p2p is not None and any(_under(r, p2p[0]) for c in writers for r in c.resources):
        return None
    return InvalidCode.RESOURCE_MISMATCH


def _under(resource: str, parent_topic: str) -> bool:
    """Does ``resource`` match some topic whose first level is ``parent_topic``?"""
    return matches(resource.split("/", 1)[0], parent_topic)


def decide_subscribe(access: SessionAccess, topic_filter: str) -> InvalidCode | None:
    """A SUBSCRIBE filter needs an R/RW token whose resources cover it exactly."""
    if access.full_access:
        return None
    readers = [access.tokens[t] for t in READ_TYPES if t in access.tokens]
    if not readers:
        return InvalidCode.PERMISSION_MISMATCH
    if any(covered_by_any(c.resources, topic_filter) for c in readers):
        return None
    return InvalidCode.RESOURCE_MISMATCH


def may_receive(access: SessionAccess, topic: str) -> bool:
    """Delivery-time check: after an upload narrowed the resources, old subscriptions
    deliver only what the current read tokens still match."""
    if access.full_access:
        return True
    tokens = access.tokens
    return any(matches_any(tokens[t].resources, topic) for t in READ_TYPES if t in tokens)


def decide_upload(
    access: SessionAccess, payload: bytes, authority: AuthorityView, now_ms: int
) -> tuple[TokenType, TokenClaims] | UploadRefused:
    """``$SYS/uploadToken``: a valid token of the session's account and instance whose
    actions are exactly the named type replaces the session's token of that type."""
    try:
        check_json_depth(payload, MAX_UPLOAD_DEPTH)  # before a parser recurses into it
    except JsonTooDeep:
        return UploadRefused(InvalidCode.FORGED, None, "malformed")
    try:
        upload = UploadToken.parse(payload)  # at most MAX_UPLOAD_BYTES
    except InvalidPayload:
        return UploadRefused(InvalidCode.FORGED, None, "malformed")
    checked = _check_token(
        upload.type, upload.token, access.access_key_id, access.instance_id, authority, now_ms
    )
    if isinstance(checked, tuple):
        return UploadRefused(checked[0], upload.type, checked[1])
    return upload.type, checked
