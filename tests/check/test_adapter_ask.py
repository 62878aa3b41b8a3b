"""Asking real AppServers through adapters (the asyncio shell): the foreign AppServer with
its adapter file, with a ``module:function`` adapter, and the failures of the wire."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from sim.customer.adapter import (
    BadAnswer,
    ClientIdentity,
    Credentials,
    Refused,
    Unauthenticated,
    Unavailable,
    ask_token,
    load_adapter,
    parse_adapter,
)
from sim.shared.clock import SystemClock

from .conftest import ADAPTER, foreign_appserver, stack
from .test_adapter_file import AS_WRITTEN


async def test_the_foreign_appserver_answers_through_its_adapter(tmp_path: Path) -> None:
    async with (
        stack(tmp_path, SystemClock()) as handle,
        foreign_appserver(handle, tmp_path / "f.sqlite", manual=False) as foreign,
        aiohttp.ClientSession() as http,
    ):
        got: list[Credentials] = []
        for text in (AS_WRITTEN, AS_WRITTEN.replace('body = "json"', 'body = "form"')):
            adapter = parse_adapter(text)
            assert adapter.clients is not None
            client = adapter.clients.identity(4)
            creds = await ask_token(http, adapter, foreign.url, client)
            assert creds.username == "Token|dev-ak|mqtt-dev"
            assert creds.password.startswith("RW|") and creds.expire_ms is not None
            got.append(creds)
            with pytest.raises(Unauthenticated, match="HTTP 401"):
                await ask_token(
                    http,
                    adapter,
                    foreign.url,
                    ClientIdentity(client.client_id, "x", client.resources),
                )
            with pytest.raises(Refused, match="HTTP 403: GID_shop@@@dev-4 may not use shop/x"):
                await ask_token(
                    http,
                    adapter,
                    foreign.url,
                    ClientIdentity(client.client_id, client.secret, ("shop/x",)),
                )
        # the form asked for the key the JSON ask had cached: the same token
        assert got[0] == got[1]


CALLABLE = '''
from sim.customer.adapter import Credentials


async def ask(session, appserver_url, client):
    """The foreign AppServer asked with a form, the way a file could not say: topics one
    field each is not needed here, but a callable may do anything."""
    form = {"device": client.client_id, "key": client.secret,
            "topics": ",".join(client.resources), "access": client.actions}
    async with session.post(appserver_url + "/api/mqtt/token", data=form) as resp:
        body = await resp.json()
    m = body["mqtt"]
    return Credentials(m["username"], m["password"], m["expireAt"])


async def broken(session, appserver_url, client):
    raise RuntimeError("a bug in the user's adapter")


async def wrong(session, appserver_url, client):
    return {"username": "x"}
'''


def callable_adapter(tmp_path: Path, function: str) -> Path:
    (tmp_path / "shop_adapter.py").write_text(CALLABLE)
    path = tmp_path / f"{function}.toml"
    path.write_text(
        textwrap.dedent(f"""\
        [adapter]
        ask = "shop_adapter:{function}"
        [clients]
        id = "GID_shop@@@dev-{{n}}"
        secret = "secret-{{n}}"
        resources = ["shop/dev-{{n}}/#"]
        """)
    )
    return path


async def test_a_python_callable_asks_what_a_file_cannot_say(tmp_path: Path) -> None:
    async with (
        stack(tmp_path, SystemClock()) as handle,
        foreign_appserver(handle, tmp_path / "f.sqlite", manual=False) as foreign,
        aiohttp.ClientSession() as http,
    ):
        adapter = load_adapter(callable_adapter(tmp_path, "ask"))
        assert adapter.clients is not None
        creds = await ask_token(http, adapter, foreign.url, adapter.clients.identity(2))
        assert isinstance(creds, Credentials) and creds.password.startswith("RW|")
        for function, message in (("broken", "raised RuntimeError"), ("wrong", "returned dict")):
            other = load_adapter(callable_adapter(tmp_path, function))
            with pytest.raises(BadAnswer, match=message):
                await ask_token(http, other, foreign.url, adapter.clients.identity(2))


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never answers."""
    gone = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await gone.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    gone.set()
    server.close()
    await server.wait_closed()


async def test_no_answer_and_no_server_are_unavailable(silent_port: int) -> None:
    adapter = load_adapter(ADAPTER)
    assert adapter.clients is not None
    client = adapter.clients.identity(1)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(Unavailable, match=r"no answer within 0.3 s"):
            await ask_token(http, adapter, f"http://127.0.0.1:{silent_port}", client, timeout_s=0.3)
        with pytest.raises(Unavailable, match="unreachable"):
            await ask_token(http, adapter, "http://127.0.0.1:9", client)
