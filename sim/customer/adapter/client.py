"""Asking an AppServer for a token through an adapter: the asyncio shell.

:func:`load_adapter` reads an adapter file (or ``"builtin"``) and imports its callables
at once, so that a wrong ``module:function`` is an error at load time.
:func:`ask_token` sends the request the adapter describes (pure parts in :mod:`.render`)
or calls its ``ask`` callable, and returns :class:`~.model.Credentials`; every failure
is an :class:`~.errors.AskError`.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp

from .errors import AdapterFileError, AskError, BadAnswer, Unavailable
from .model import Adapter, ClientIdentity, Credentials
from .parse import builtin_adapter, parse_adapter
from .render import join_url, prepare_request, read_answer

__all__ = [
    "AskCallable",
    "ProvisionCallable",
    "ask_token",
    "load_adapter",
    "provision_clients",
    "resolve_callable",
]

#: ``async def ask(session, appserver_url, client) -> Credentials``
AskCallable = Callable[[aiohttp.ClientSession, str, ClientIdentity], Awaitable[Credentials]]
#: ``async def provision(session, appserver_url, clients) -> None``
ProvisionCallable = Callable[
    [aiohttp.ClientSession, str, Sequence[ClientIdentity]], Awaitable[None]
]

#: The largest answer read from an AppServer (a token answer is a few hundred bytes).
MAX_ANSWER_BYTES = 1 << 20


def load_adapter(spec: str | Path) -> Adapter:
    """``"builtin"`` (the reference AppServer) or the path of an adapter file."""
    if str(spec) == "builtin":
        adapter = builtin_adapter()
    else:
        path = Path(spec)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise AdapterFileError(
                f"cannot read the adapter file: {reason}", source=str(path)
            ) from None
        adapter = parse_adapter(text, source=str(path), base_dir=str(path.resolve().parent))
    for key in ("ask", "provision"):
        name = getattr(adapter, key)
        if name is not None:
            try:
                resolve_callable(name, adapter.base_dir)
            except (ImportError, AttributeError, TypeError) as exc:
                raise AdapterFileError(
                    str(exc), source=adapter.source, key=f"[adapter] {key}"
                ) from None
    return adapter


@functools.lru_cache(maxsize=64)
def resolve_callable(name: str, base_dir: str | None = None) -> Callable[..., Awaitable[Any]]:
    """The async function ``module:function`` names; the adapter file's directory is
    searched first for the module."""
    module_name, _, attr = name.partition(":")
    if base_dir is not None and base_dir not in sys.path:
        sys.path.insert(0, base_dir)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"cannot import {module_name!r}: {exc}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise AttributeError(f"module {module_name!r} has no {attr!r}")
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"{name} must be an async function (async def {attr}(...))")
    return fn  # type: ignore[no-any-return]


async def ask_token(
    session: aiohttp.ClientSession,
    adapter: Adapter,
    appserver_url: str,
    client: ClientIdentity,
    *,
    timeout_s: float | None = None,
    now_ms: Callable[[], int] | None = None,
) -> Credentials:
    """Ask ``appserver_url`` for ``client``'s token the adapter's way.

    ``timeout_s`` (real seconds) overrides the file's ``timeout_s``; ``now_ms`` is the
    caller's clock, for answers that say ``expires_in_s`` (default: the wall clock).
    """
    limit = timeout_s
    if limit is None:
        limit = adapter.request.timeout_s if adapter.request is not None else 10.0
    try:
        async with asyncio.timeout(limit):
            if adapter.ask is not None:
                return await _ask_callable(session, adapter, appserver_url, client)
            return await _ask_http(session, adapter, appserver_url, client, now_ms)
    except AskError:
        raise
    except TimeoutError:
        raise Unavailable(f"AppServer gave no answer within {limit:g} s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise Unavailable(f"AppServer unreachable: {type(exc).__name__}") from None


async def _ask_http(
    session: aiohttp.ClientSession,
    adapter: Adapter,
    appserver_url: str,
    client: ClientIdentity,
    now_ms: Callable[[], int] | None,
) -> Credentials:
    assert adapter.request is not None and adapter.response is not None
    prepared = prepare_request(adapter.request, client)
    url = join_url(appserver_url, prepared.path)
    data = None if prepared.form is None else dict(prepared.form)
    async with session.request(
        prepared.method,
        url,
        headers=dict(prepared.headers),
        json=prepared.json,
        data=data,
        allow_redirects=False,
    ) as resp:
        body = await resp.content.read(MAX_ANSWER_BYTES + 1)
        if len(body) > MAX_ANSWER_BYTES:
            raise BadAnswer(
                f"HTTP {resp.status}: the answer is larger than {MAX_ANSWER_BYTES} bytes"
            )
        stamp = now_ms() if now_ms is not None else int(time.time() * 1000)
        return read_answer(adapter.response, resp.status, resp.headers, body, now_ms=stamp)


async def _ask_callable(
    session: aiohttp.ClientSession, adapter: Adapter, appserver_url: str, client: ClientIdentity
) -> Credentials:
    assert adapter.ask is not None
    fn = resolve_callable(adapter.ask, adapter.base_dir)
    try:
        result = await fn(session, appserver_url, client)
    except (AskError, TimeoutError, aiohttp.ClientError, OSError):
        raise
    except Exception as exc:
        raise BadAnswer(f"{adapter.ask} raised {type(exc).__name__}") from None
    if not isinstance(result, Credentials):
        raise BadAnswer(f"{adapter.ask} returned {type(result).__name__}, not Credentials")
    return result


async def provision_clients(
    session: aiohttp.ClientSession,
    adapter: Adapter,
    appserver_url: str,
    clients: Sequence[ClientIdentity],
) -> bool:
    """Create ``clients`` on the AppServer if the adapter knows how (``[adapter]
    provision``); False if it does not (the AppServer has its accounts already)."""
    if adapter.provision is None or not clients:
        return False
    fn = resolve_callable(adapter.provision, adapter.base_dir)
    await fn(session, appserver_url, clients)
    return True
