"""Each AppServerConfig field that is not already exercised elsewhere changes behaviour
(STYLE.md: "every field changes behaviour, and a test shows it")."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from sim.customer.appserver import service as service_module
from sim.customer.appserver.app import create_app, error_middleware
from sim.customer.appserver.config import AppServerConfig
from sim.customer.appserver.errors import ServiceUnavailable
from sim.customer.appserver.policy import AccountBody, Grant, TokenRequest
from sim.customer.appserver.runner import run_appserver
from sim.customer.appserver.service import TokenService
from sim.customer.appserver.store import Store
from sim.shared.clock import ManualClock

from .conftest import FakeUpstream, down

GRANT = (Grant(("dev/#",), frozenset({"R"})),)


def make(**overrides: object) -> tuple[TokenService, FakeUpstream, ManualClock]:
    config = AppServerConfig(**{"password_hash_cost": 1, "seed": 3, **overrides})  # type: ignore[arg-type]
    clock = ManualClock()
    upstream = FakeUpstream()
    return TokenService(config, clock, Store(None), upstream), upstream, clock


async def test_password_hash_cost_sets_the_scrypt_cost() -> None:
    for cost in (2, 5):
        service, _, _ = make(password_hash_cost=cost)
        account, _, _ = await service.put_account("c", AccountBody("pw", GRANT, True))
        assert account.secret_hash.startswith(f"scrypt${cost}$")


async def test_credential_cache_period_and_size() -> None:
    calls = 0
    real = service_module.verify_secret

    def counting(secret: str, encoded: str) -> bool:
        nonlocal calls
        calls += 1
        return real(secret, encoded)

    with mock.patch.object(service_module, "verify_secret", counting):
        service, _, clock = make(credential_cache_s=30, credential_cache_size=1)
        await service.put_account("a", AccountBody("pw", GRANT, True))
        await service.put_account("b", AccountBody("pw", GRANT, True))
        await service.authenticate("a", "pw")
        await service.authenticate("a", "pw")
        assert calls == 1  # remembered
        clock.advance(30)
        await service.authenticate("a", "pw")
        assert calls == 2  # the period ran out
        await service.authenticate("b", "pw")  # evicts a: the cache holds one pair
        await service.authenticate("a", "pw")
        assert calls == 4


async def test_breaker_jitter_and_seed() -> None:
    pauses = []
    for seed in (1, 1, 2):
        service, upstream, clock = make(
            breaker_failures=1, breaker_open_s=10, breaker_jitter=1.0, seed=seed
        )
        await service.put_account("c", AccountBody("pw", GRANT, True))
        upstream.fail = down()
        with pytest.raises(ServiceUnavailable):
            await service.issue(service.accounts["c"], TokenRequest(frozenset({"R"}), ("dev/a",)))
        pauses.append(service.breaker.retry_in(clock.now()))
    assert all(10 <= p <= 20 for p in pauses)
    assert pauses[0] == pauses[1] != pauses[2]  # the seed makes runs repeat


async def test_retry_after_base_and_jitter() -> None:
    async def retry_afters(**overrides: object) -> set[int]:
        service, upstream, _ = make(breaker_failures=1000, drain_burst=100, **overrides)
        await service.put_account("c", AccountBody("pw", GRANT, True))
        upstream.fail = down()
        seen = set()
        for i in range(30):
            with pytest.raises(ServiceUnavailable) as info:
                await service.issue(
                    service.accounts["c"], TokenRequest(frozenset({"R"}), (f"dev/{i}",))
                )
            seen.add(info.value.retry_after)
        return seen

    assert await retry_afters(retry_after_s=7, retry_after_jitter=0) == {7}
    jittered = await retry_afters(retry_after_s=7, retry_after_jitter=1.0)
    assert len(jittered) > 3 and min(jittered) >= 7 and max(jittered) <= 14


async def test_accounts_file_is_imported_at_start(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text(
        json.dumps(
            {
                "accounts": [
                    {
                        "client_id": "GID_a@@@d1",
                        "secret": "s",
                        "grants": [{"resources": ["a/#"], "actions": "R"}],
                    },
                ]
            }
        )
    )
    config = AppServerConfig(port=0, accounts_file=path, password_hash_cost=1)
    async with run_appserver(config, clock=ManualClock()) as app:
        assert app.service.accounts["GID_a@@@d1"].grants == (Grant(("a/#",), frozenset({"R"})),)


async def test_admin_remote_opens_admin_to_other_peers() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    def request_from(app: web.Application, peer: str) -> web.Request:
        transport = mock.Mock()
        transport.get_extra_info.side_effect = lambda name, default=None: (
            (peer, 40000) if name == "peername" else default
        )
        return make_mocked_request("GET", "/admin/health", app=app, transport=transport)

    closed = create_app(
        AppServerConfig(), clock=ManualClock(), store=Store(None), upstream=FakeUpstream()
    )
    assert (await error_middleware(request_from(closed, "127.0.0.1"), handler)).status == 200
    assert (await error_middleware(request_from(closed, "10.1.2.3"), handler)).status == 403
    opened = create_app(
        AppServerConfig(admin_remote=True),
        clock=ManualClock(),
        store=Store(None),
        upstream=FakeUpstream(),
    )
    assert (await error_middleware(request_from(opened, "10.1.2.3"), handler)).status == 200
