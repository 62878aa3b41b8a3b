"""Asking the AppServer for a token, through an adapter (SPEC §5, docs/your-appserver.md).

The adapter (:mod:`sim.customer.adapter`) says how to ask one AppServer; by default it is
the built-in one, the reference AppServer's ``POST /v1/tokens`` (HTTP Basic
``client_id:secret``, body ``{"resources": [...], "actions": ...}``; docs/appserver.md).
Its answer becomes a :class:`~.store.StoredToken`; the adapter's errors map onto
:mod:`sim.customer.client.errors`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from sim.customer.adapter import (
    Adapter,
    AskError,
    ClientIdentity,
    Credentials,
    Refused,
    Unauthenticated,
    Unavailable,
    ask_token,
    builtin_adapter,
)
from sim.shared.protocol import parse_token_password, parse_username

from .errors import (
    AppServerUnavailable,
    BadAppServerAnswer,
    BadCredentials,
    Forbidden,
    TokenRequestError,
)
from .store import StoredToken

__all__ = ["BUILTIN", "TokenGrant", "grant_from_credentials", "request_token"]

#: The reference AppServer's adapter: what a client asks through unless told otherwise.
BUILTIN: Adapter = builtin_adapter()


@dataclass(frozen=True)
class TokenGrant:
    token: StoredToken
    stale: bool  # served from the AppServer's disaster-recovery cache


def grant_from_credentials(
    creds: Credentials, *, actions: str, resources: tuple[str, ...]
) -> TokenGrant:
    """Check what the AppServer handed out is usable for CONNECT and upload (SPEC §4):
    a ``Token|AK|instance`` username, ONE ``TYPE|token`` pair, a known expiry."""
    try:
        username = parse_username(creds.username)
        tokens = parse_token_password(creds.password)
    except ValueError as exc:
        raise BadAppServerAnswer(f"token answer is malformed: {exc}") from None
    if len(tokens) != 1:
        raise BadAppServerAnswer(
            f"the password carries {len(tokens)} tokens: the SDK uploads and refreshes one"
        )
    if creds.expire_ms is None:
        # Seed, client behaviour constraints: "The MQTT client must know the validity
        # period of the used token".
        raise BadAppServerAnswer(
            "the answer says nowhere when the token expires (adapter [response] expire_ms "
            "or expires_in_s): the client must know its token's validity period"
        )
    ((token_type, token),) = tokens.items()
    stored = StoredToken(
        token=token,
        type=token_type,
        expire_ms=creds.expire_ms,
        instance_id=username.instance_id,
        username=creds.username,
        password=creds.password,
        actions=actions,
        resources=tuple(sorted(resources)),
    )
    return TokenGrant(stored, stale=creds.stale)


def _sdk_error(exc: AskError) -> TokenRequestError:
    message = str(exc)
    if isinstance(exc, Unauthenticated):
        return BadCredentials(message)
    if isinstance(exc, Refused):
        return Forbidden(message)
    if isinstance(exc, Unavailable):
        return AppServerUnavailable(message, status=exc.status, retry_after=exc.retry_after)
    return BadAppServerAnswer(message)


async def request_token(
    session: aiohttp.ClientSession,
    base_url: str,
    *,
    account: str,
    secret: str,
    resources: tuple[str, ...],
    actions: str,
    request_timeout: float = 10.0,
    client_id: str | None = None,
    adapter: Adapter | None = None,
    now_ms: Callable[[], int] | None = None,
) -> TokenGrant:
    """One ask, the ``adapter``'s way (default: the reference AppServer's)."""
    client = ClientIdentity(
        client_id=client_id or account,
        secret=secret,
        resources=tuple(sorted(resources)),
        actions=actions,
        account=account if client_id is not None and account != client_id else None,
    )
    try:
        creds = await ask_token(
            session,
            adapter or BUILTIN,
            base_url,
            client,
            timeout_s=request_timeout,
            now_ms=now_ms,
        )
    except AskError as exc:
        raise _sdk_error(exc) from None
    return grant_from_credentials(creds, actions=actions, resources=resources)
