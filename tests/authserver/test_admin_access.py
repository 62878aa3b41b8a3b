"""The admin API answers loopback peers only, unless configured otherwise; metrics."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from mock_authserver.app import create_app, error_middleware
from mock_authserver.config import AuthServerConfig
from mock_authserver.ttl import MemoryRepository

from .conftest import apply_params, call


def request_from(app, peer: str, path: str = "/admin/health"):
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 40000) if name == "peername" else default
    )
    return make_mocked_request("GET", path, app=app, transport=transport)


async def ok_handler(request):
    from aiohttp import web

    return web.json_response({"status": "ok"})


@pytest.mark.parametrize(
    ("peer", "allow_remote", "status"),
    [
        ("127.0.0.1", False, 200),
        ("::1", False, 200),
        ("10.1.2.3", False, 403),
        ("192.168.0.9", True, 200),
    ],
)
async def test_admin_loopback_only_by_default(clock, peer, allow_remote, status):
    app = create_app(
        AuthServerConfig(admin_allow_remote=allow_remote), clock=clock, repo=MemoryRepository()
    )
    resp = await error_middleware(request_from(app, peer), ok_handler)
    assert resp.status == status
    if status == 403:
        assert json.loads(resp.body)["code"] == "Forbidden"
    # the token API is for everyone
    resp = await error_middleware(request_from(app, peer, "/token/query"), ok_handler)
    assert resp.status == 200


async def test_metrics_count_by_operation_and_code(auth, http):
    exp = 1_800_000_000_000 + 3_600_000
    await call(http, auth, "apply", apply_params(exp))
    await call(http, auth, "apply", apply_params(exp, secret="bad"))
    await call(http, auth, "query", {"token": "x"})
    async with http.get(f"{auth.url}/admin/metrics") as r:
        assert r.status == 200 and r.content_type == "text/plain"
        text = await r.text()
    assert 'mqtt_authserver_requests_total{code="200",operation="apply"} 1.0' in text
    assert 'mqtt_authserver_requests_total{code="407",operation="apply"} 1.0' in text
    assert 'mqtt_authserver_requests_total{code="400",operation="query"} 1.0' in text
    assert 'mqtt_authserver_requests_total{code="200",operation="revoke"} 0.0' in text


async def test_each_app_has_its_own_registry(clock):
    a = create_app(AuthServerConfig(), clock=clock, repo=MemoryRepository())
    b = create_app(AuthServerConfig(), clock=clock, repo=MemoryRepository())
    from mock_authserver.appkeys import METRICS

    a[METRICS].requests.labels("apply", "200").inc()
    assert b'operation="apply"} 0.0' in b[METRICS].render()
