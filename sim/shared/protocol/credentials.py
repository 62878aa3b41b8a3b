"""CONNECT credentials of the provider's broker (SPEC §4).

Token mode:     username ``Token|<AccessKeyId>|<InstanceId>``,
                password ``TYPE|token`` pairs joined by ``|`` (``R|t1|W|t2``, ``RW|t3``).
Signature mode: username ``Signature|<AccessKeyId>|<InstanceId>``,
                password ``Base64(HMAC-SHA1(AccessKeySecret, clientId))``.
Client ids:     ``<GroupID>@@@<DeviceID>``, at most 64 characters; the Group ID starts
                with ``GID_`` or ``GID-`` and is 7 to 64 characters of letters, digits,
                ``-`` and ``_`` (the provider's CreateGroupId API); the Device ID is
                letters, digits, ``-`` and ``_`` (the provider's Limits page: client ids
                have no ``/``, ``:``, ``,``, ``%`` or other characters).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from .errors import InvalidCredentials

__all__ = [
    "CLIENT_ID_RULE",
    "MAX_CLIENT_ID",
    "AuthMode",
    "TokenType",
    "Username",
    "actions_of",
    "build_token_password",
    "build_username",
    "client_id_fault",
    "parse_actions",
    "parse_token_password",
    "parse_username",
    "render_actions",
    "signature_password",
    "token_type_of",
    "validate_client_id",
]

MAX_CLIENT_ID = 64
AuthMode = Literal["Token", "Signature"]
#: Group ID ``GID_``/``GID-`` + 3..60 more (7..64 in all) @@@ Device ID (SPEC §4).
_CLIENT_ID = re.compile(r"GID[_-][A-Za-z0-9_-]{3,60}@@@[A-Za-z0-9_-]+")
_NAME = re.compile(r"[A-Za-z0-9_\-.]{1,128}")
_ID_CHARS = re.compile(r"[A-Za-z0-9_-]+")
#: The rule in one line, for people (the ``up`` banner, the broker's warning).
CLIENT_ID_RULE = (
    "client ids are <GroupID>@@@<DeviceID>, at most 64 characters: the Group ID starts"
    " with GID_ or GID- and has 7-64 letters, digits, '-' or '_'; the Device ID letters,"
    " digits, '-' or '_' (e.g. GID_dev@@@dev-1)"
)


class TokenType(StrEnum):
    """The permission type of a token as named in a CONNECT password or an upload."""

    R = "R"
    W = "W"
    RW = "RW"


_ACTIONS: dict[TokenType, frozenset[str]] = {
    TokenType.R: frozenset({"R"}),
    TokenType.W: frozenset({"W"}),
    TokenType.RW: frozenset({"R", "W"}),
}


def actions_of(token_type: TokenType) -> frozenset[str]:
    return _ACTIONS[token_type]


def token_type_of(actions: Iterable[str]) -> TokenType:
    wanted = frozenset(actions)
    for token_type, acts in _ACTIONS.items():
        if acts == wanted:
            return token_type
    raise InvalidCredentials(f"no token type has actions {sorted(wanted)}")


def parse_actions(text: str) -> frozenset[str]:
    """``R``, ``W`` or ``R,W`` (SPEC §3a); ``W,R`` is accepted as the same set."""
    parts = text.split(",")
    if not parts or any(p not in ("R", "W") for p in parts) or len(set(parts)) != len(parts):
        raise InvalidCredentials(f"actions must be R, W or R,W, got {text[:40]!r}")
    return frozenset(parts)


def render_actions(actions: Iterable[str]) -> str:
    return ",".join(sorted(set(actions)))


@dataclass(frozen=True)
class Username:
    mode: AuthMode
    access_key_id: str
    instance_id: str

    def render(self) -> str:
        return f"{self.mode}|{self.access_key_id}|{self.instance_id}"


def build_username(access_key_id: str, instance_id: str, mode: AuthMode = "Token") -> str:
    return Username(mode, access_key_id, instance_id).render()


def parse_username(username: str | None) -> Username:
    if not username:
        raise InvalidCredentials("username is missing")
    parts = username.split("|")
    if len(parts) != 3:
        raise InvalidCredentials("username must be Token|<AccessKeyId>|<InstanceId>")
    mode, ak, instance = parts
    if mode not in ("Token", "Signature"):
        raise InvalidCredentials(f"username mode must be Token or Signature, got {mode[:20]!r}")
    if not _NAME.fullmatch(ak):
        raise InvalidCredentials("username has an invalid AccessKeyId")
    if not _NAME.fullmatch(instance):
        raise InvalidCredentials("username has an invalid InstanceId")
    return Username(mode, ak, instance)  # type: ignore[arg-type]


def build_token_password(tokens: Mapping[TokenType, str]) -> str:
    if not tokens:
        raise InvalidCredentials("at least one token is needed")
    return "|".join(f"{TokenType(t).value}|{tok}" for t, tok in tokens.items())


def parse_token_password(password: str | bytes | None) -> dict[TokenType, str]:
    """``TYPE|token`` pairs; each type at most once; tokens non-empty."""
    if password is None or password == "" or password == b"":
        raise InvalidCredentials("password is missing")
    if isinstance(password, bytes):
        try:
            password = password.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidCredentials("password is not UTF-8") from None
    parts = password.split("|")
    if len(parts) % 2:
        raise InvalidCredentials("password must be TYPE|token pairs joined by '|'")
    tokens: dict[TokenType, str] = {}
    for i in range(0, len(parts), 2):
        kind, token = parts[i], parts[i + 1]
        try:
            token_type = TokenType(kind)
        except ValueError:
            raise InvalidCredentials(f"token type must be R, W or RW, got {kind[:10]!r}") from None
        if token_type in tokens:
            raise InvalidCredentials(f"token type {kind} appears twice")
        if not token:
            raise InvalidCredentials(f"token of type {kind} is empty")
        tokens[token_type] = token
    return tokens


def signature_password(secret: str, client_id: str) -> str:
    """Signature mode password: ``Base64(HMAC-SHA1(secret, clientId))``."""
    digest = hmac.new(secret.encode("utf-8"), client_id.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def client_id_fault(client_id: str) -> str | None:
    """What is wrong with ``client_id`` (SPEC §4), in a few words; None when it is valid.
    One of a few fixed kinds, so that a log can say each once."""
    if _CLIENT_ID.fullmatch(client_id) and len(client_id) <= MAX_CLIENT_ID:
        return None
    if not client_id:
        return "empty client id"
    if len(client_id) > MAX_CLIENT_ID:
        return f"longer than {MAX_CLIENT_ID} characters"
    group, sep, device = client_id.partition("@@@")
    if not sep:
        return "no '@@@' between Group ID and Device ID"
    if not group.startswith(("GID_", "GID-")):
        return "Group ID does not start with GID_ or GID-"
    if not 7 <= len(group) <= 64:
        return "Group ID not 7-64 characters"
    if not device:
        return "empty Device ID"
    if not _ID_CHARS.fullmatch(group) or not _ID_CHARS.fullmatch(device):
        return "characters other than letters, digits, '-' and '_'"
    return "not <GroupID>@@@<DeviceID>"


def validate_client_id(client_id: str) -> str:
    if len(client_id) > MAX_CLIENT_ID:
        raise InvalidCredentials(f"client id is longer than {MAX_CLIENT_ID} characters")
    if not _CLIENT_ID.fullmatch(client_id):
        raise InvalidCredentials(
            "client id must be <GroupID>@@@<DeviceID>: a Group ID of 7-64 letters, digits,"
            " '-' and '_' starting with GID_ or GID-, a Device ID of letters, digits, '-'"
            " and '_'"
        )
    return client_id
