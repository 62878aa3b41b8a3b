"""Fuzzed requests against both HTTP servers: no 5xx, every error a JSON object of the
application, no credential echoed, no forgery accepted (docs/security.md "HTTP").

Each server answers at least ``sizes.http_requests`` requests (10,000 in the long form),
spread over its APIs; the figures go to the suite's report.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from mock_authserver.config import AccountSpec, AuthServerConfig
from mock_authserver.runner import AuthServerHandle, run_authserver
from mock_authserver.validation import ApplyRequest
from sim.customer.appserver.runner import run_appserver
from sim.shared.clock import ManualClock
from sim.shared.httplimits import HttpLimits
from tests.appserver.stack import app_config

from . import appserver_cases as app_cases
from . import authserver_cases as auth_cases
from .conftest import Report, Sizes
from .httpfuzz import Family, Fuzzer

pytestmark = pytest.mark.adversarial

#: The servers' body limit here: a body aiohttp never completes (a large deflate stream
#: that never ends) is cut by it, and the fuzz should not wait the default 30 s for each.
LIMITS = HttpLimits(body_timeout_s=1.0)


def _mint(
    auth: AuthServerHandle, clock: ManualClock, ak: str, instance: str, count: int
) -> tuple[str, ...]:
    """Genuine tokens, issued by the server's own engine (setup, not under test)."""
    expire_ms = clock.now_ms() + 3_600_000
    return tuple(
        auth.engine.apply(
            ApplyRequest(ak, instance, frozenset({"R", "W"}), ("dev/#",), expire_ms)
        ).token
        for _ in range(count)
    )


async def test_the_authserver_answers_every_fuzzed_request_in_its_own_voice(
    tmp_path: Path, sizes: Sizes, seed: int, report: Report
) -> None:
    clock = ManualClock()
    other = AccountSpec(auth_cases.OTHER_AK, auth_cases.OTHER_SK, (auth_cases.OTHER_INSTANCE,))
    tokens_config = AuthServerConfig(data_dir=tmp_path / "tokens", accounts=(other,), http=LIMITS)
    # The admin API gets a server of its own: fuzzed admin calls delete accounts, move
    # the clock and inject faults, which would turn the token APIs' answers into
    # deliberate 5xx and their genuine requests into refusals.
    admin_config = AuthServerConfig(
        data_dir=tmp_path / "admin", feed_max_timeout_s=0.05, http=LIMITS
    )
    async with (
        run_authserver(tokens_config, clock=clock) as auth,
        run_authserver(admin_config, clock=ManualClock()) as admin,
    ):
        world = auth_cases.AuthWorld(
            port=auth.port, admin_port=admin.port, now_ms=clock.now_ms(),
            tokens=_mint(auth, clock, auth_cases.AK, auth_cases.INSTANCE, 16),
            other_tokens=_mint(auth, clock, auth_cases.OTHER_AK, auth_cases.OTHER_INSTANCE, 4),
        )  # fmt: skip
        fuzzer = Fuzzer(
            seed,
            [
                Family("legacy", auth.port, lambda r: auth_cases.legacy_case(world, r),
                       auth_cases.legacy_succeeded, weight=3),
                Family("openapi_v3", auth.port, lambda r: auth_cases.v3_case(world, r),
                       auth_cases.openapi_succeeded, weight=3),
                Family("openapi_rpc", auth.port, lambda r: auth_cases.rpc_case(world, r),
                       auth_cases.openapi_succeeded, weight=3),
                Family("admin", admin.port, lambda r: auth_cases.admin_case(world, r),
                       auth_cases.admin_succeeded, weight=2),
            ],
        )  # fmt: skip
        figures = await fuzzer.run(sizes.http_requests)
        async with aiohttp.ClientSession() as http:
            for url in (auth.url, admin.url):
                async with http.get(f"{url}/admin/health") as resp:
                    assert resp.status == 200, "a server stopped serving"
        http_stats = {"tokens": vars(auth.http_stats), "admin": vars(admin.http_stats)}
    report.add("authserver_http", {**figures.to_json(), "http_layer": http_stats})
    assert figures.requests >= sizes.http_requests
    assert not figures.problems, "\n".join(figures.problems[:15])
    assert figures.forged > 0 and figures.pristine_succeeded > 0  # the oracle had work


async def test_the_appserver_answers_every_fuzzed_request_in_its_own_voice(
    tmp_path: Path, sizes: Sizes, seed: int, report: Report
) -> None:
    clock = ManualClock()
    auth_config = AuthServerConfig(data_dir=tmp_path / "auth", http=LIMITS)
    async with run_authserver(auth_config, clock=clock) as auth:
        # No drain limit: on the manual clock, a request past the burst would wait for
        # time that never moves (docs/appserver.md "Drain"), which is not the point here.
        config = app_config(auth.url, tmp_path / "app", drain_burst=1_000_000, http=LIMITS)
        async with run_appserver(config, clock=clock) as app, aiohttp.ClientSession() as http:
            for client_id, account in app_cases.ACCOUNTS.items():
                await _put(http, app.url, client_id, account["secret"], account["grants"], True)
            off_id, off_secret = app_cases.DISABLED
            everything = [{"resources": ["#"], "actions": "R"}]
            await _put(http, app.url, off_id, off_secret, everything, False)
            world = app_cases.AppWorld(app.port)
            fuzzer = Fuzzer(
                seed,
                [
                    Family("tokens", app.port, lambda r: app_cases.token_case(world, r),
                           app_cases.token_succeeded, weight=3),
                    Family("admin", app.port, lambda r: app_cases.admin_case(world, r),
                           app_cases.admin_succeeded, weight=1),
                ],
            )  # fmt: skip
            figures = await fuzzer.run(sizes.http_requests)
            async with http.get(f"{app.url}/admin/health") as resp:
                assert resp.status == 200, "the AppServer stopped serving"
            http_stats = vars(app.http_stats)
    report.add("appserver_http", {**figures.to_json(), "http_layer": http_stats})
    assert figures.requests >= sizes.http_requests
    assert not figures.problems, "\n".join(figures.problems[:15])
    assert figures.forged > 0 and figures.pristine_succeeded > 0


async def _put(
    http: aiohttp.ClientSession,
    url: str,
    client_id: str,
    secret: str,
    grants: object,
    enabled: bool,
) -> None:
    body = {"secret": secret, "grants": grants, "enabled": enabled}
    async with http.put(f"{url}/admin/accounts/{client_id}", json=body) as resp:
        assert resp.status in (200, 201), await resp.text()
