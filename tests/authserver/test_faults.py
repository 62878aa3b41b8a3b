"""Injected faults (SPEC §3d): the dice on their own, and each kind seen by a client."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from mock_authserver.errors import (
    AdminError,
    ApplyThrottled,
    InjectedFault,
    InvalidParameter,
    ServiceUnavailable,
    SystemOverloaded,
    Throttled,
    TokenGenerationError,
)
from mock_authserver.faults import FaultSet, error_for_code

from .conftest import apply_params, call, token_params

NOW_MS = 1_800_000_000_000


# -- pure: the dice ------------------------------------------------------------------------


def outcomes(seed: int, n: int = 200) -> list[bool]:
    faults = FaultSet(seed)
    faults.add({"operation": "apply", "kind": "status", "status": 503, "probability": 0.3}, 0)
    return [faults.decide("apply", 0, 0.0).outcome is not None for _ in range(n)]


def test_same_seed_same_faults_other_seed_other_faults():
    assert outcomes(7) == outcomes(7)
    assert outcomes(7) != outcomes(8)
    rate = sum(outcomes(7, 2000)) / 2000
    assert 0.25 < rate < 0.35


def test_operation_filter_times_and_latency_jitter():
    faults = FaultSet(1)
    faults.add({"operation": "query", "kind": "reset", "times": 2}, NOW_MS)
    faults.add({"operation": "*", "kind": "latency", "ms": 100, "jitter_ms": 20}, NOW_MS)
    d = faults.decide("apply", NOW_MS, 0.0)
    assert d.outcome is None and 0.08 <= d.delay_s <= 0.12
    assert faults.decide("query", NOW_MS, 0.0).outcome == "reset"
    assert faults.decide("query", NOW_MS, 0.0).outcome == "reset"
    assert faults.decide("query", NOW_MS, 0.0).outcome is None  # used up
    assert [f["kind"] for f in faults.list()] == ["latency"]


def test_outage_uses_virtual_time_and_throttle_a_real_second():
    faults = FaultSet()
    faults.add({"operation": "apply", "kind": "outage", "seconds": 30}, NOW_MS)
    assert isinstance(faults.decide("apply", NOW_MS + 29_999, 0.0).outcome, ServiceUnavailable)
    assert faults.decide("revoke", NOW_MS, 0.0).outcome is None
    assert faults.decide("apply", NOW_MS + 30_000, 0.0).outcome is None
    assert faults.list() == []
    faults.add({"operation": "query", "kind": "throttle", "per_second": 2}, NOW_MS)
    got = [faults.decide("query", NOW_MS, t).outcome for t in (0.0, 0.1, 0.2, 0.9, 1.05, 1.08)]
    assert [isinstance(o, Throttled) for o in got] == [False, False, True, True, False, True]


def test_throttle_fault_answers_as_the_real_limit_per_operation():
    # SPEC §3b: a throttled apply is ApplyTokenOverFlow, anything else Throttling.User,
    # both HTTP 400 on the OpenAPI wire; the same classes the rate limiter raises.
    faults = FaultSet()
    faults.add({"operation": "*", "kind": "throttle", "per_second": 1}, NOW_MS)
    assert faults.decide("revoke", NOW_MS, 0.0).outcome is None  # the one of this second
    apply = faults.decide("apply", NOW_MS, 0.0).outcome
    query = faults.decide("query", NOW_MS, 0.0).outcome
    assert type(apply) is ApplyThrottled and type(query) is Throttled
    assert (apply.openapi_code, apply.http_status) == ("ApplyTokenOverFlow", 400)
    assert (query.openapi_code, query.http_status) == ("Throttling.User", 400)
    assert apply.legacy_code == query.legacy_code == 429


def test_error_codes_map_onto_the_tree():
    assert type(error_for_code("Throttling.User")) is Throttled
    assert type(error_for_code("ApplyTokenOverFlow")) is ApplyThrottled
    assert type(error_for_code(429, operation="apply")) is ApplyThrottled
    assert type(error_for_code(429, operation="query")) is Throttled
    assert isinstance(error_for_code("SystemOverFlow"), SystemOverloaded)
    param = error_for_code("InvalidParameter.ExpireTime")
    assert isinstance(param, InvalidParameter) and param.openapi_code == (
        "InvalidParameter.ExpireTime"
    )
    assert isinstance(error_for_code(409), TokenGenerationError)
    odd = error_for_code("Some.Other", 502)
    assert isinstance(odd, InjectedFault)
    assert (odd.openapi_code, odd.http_status, odd.legacy_code) == ("Some.Other", 502, 502)


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"kind": "explode"},
        {"kind": "status", "status": 200},
        {"kind": "status", "status": 503, "probability": 2},
        {"kind": "error"},
        {"kind": "outage"},
        {"kind": "latency", "ms": -1},
        {"kind": "throttle", "per_second": "many"},
        {"kind": "reset", "operation": "delete"},
        {"kind": "reset", "times": 0},
        {"kind": "reset", "colour": "red"},
    ],
)
def test_bad_fault_descriptions(bad):
    with pytest.raises(AdminError):
        FaultSet().add(bad, 0)


# -- live: each kind observable from a client -------------------------------------------------


async def add_fault(http, auth, fault) -> str:
    async with http.post(f"{auth.url}/admin/faults", json=fault) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["id"]


EXP = 1_800_000_000_000 + 3_600_000


async def test_status_and_error_faults_in_both_styles(auth, http):
    await add_fault(http, auth, {"operation": "apply", "kind": "status", "status": 503, "times": 1})
    status, body = await call(http, auth, "apply", apply_params(EXP))
    assert (status, body["code"], body["success"]) == (503, 503, False)
    assert set(body) == {"success", "code", "message", "tokenData"}
    await add_fault(http, auth, {"operation": "apply", "kind": "error", "code": 409, "times": 1})
    assert await call(http, auth, "apply", apply_params(EXP)) == (
        200,
        {"success": False, "code": 409, "message": "injected fault: 409", "tokenData": ""},
    )
    await add_fault(http, auth, {"operation": "*", "kind": "error", "code": "Throttling.User"})
    async with http.post(f"{auth.url}/", params={"Action": "QueryToken"}) as r:
        assert r.status == 400 and (await r.json())["Code"] == "Throttling.User"
    async with http.delete(f"{auth.url}/admin/faults") as r:
        assert r.status == 200
    assert (await call(http, auth, "apply", apply_params(EXP)))[1]["success"] is True


async def test_latency_fault_delays_the_answer(auth, http):
    await add_fault(http, auth, {"operation": "query", "kind": "latency", "ms": 600})
    loop = asyncio.get_running_loop()
    started = loop.time()
    await call(http, auth, "query", token_params("bm9wZQ=="))
    assert loop.time() - started >= 0.59
    started = loop.time()
    await call(http, auth, "revoke", token_params("bm9wZQ=="))  # other operation: no delay
    assert loop.time() - started < 0.5


async def test_reset_fault_drops_the_connection(auth, http):
    fid = await add_fault(http, auth, {"operation": "query", "kind": "reset"})
    with pytest.raises(aiohttp.ClientError):
        await call(http, auth, "query", token_params("bm9wZQ=="))
    async with http.delete(f"{auth.url}/admin/faults/{fid}") as r:
        assert r.status == 200
    assert (await call(http, auth, "query", token_params("bm9wZQ==")))[1]["code"] == 1


async def test_hang_fault_never_answers(auth, http):
    await add_fault(http, auth, {"operation": "apply", "kind": "hang"})
    with pytest.raises(asyncio.TimeoutError):
        await call(http, auth, "apply", apply_params(EXP), timeout=aiohttp.ClientTimeout(total=0.3))
    # other operations are still served
    assert (await call(http, auth, "query", token_params("bm9wZQ==")))[1]["code"] == 1


async def test_outage_for_virtual_seconds(auth, http):
    await add_fault(http, auth, {"operation": "*", "kind": "outage", "seconds": 30})
    status, body = await call(http, auth, "apply", apply_params(EXP))
    assert (status, body["code"]) == (503, 503)
    async with http.post(f"{auth.url}/admin/clock/advance", json={"seconds": 30}) as r:
        assert r.status == 200
    assert (await call(http, auth, "apply", apply_params(EXP)))[1]["success"] is True
    await add_fault(http, auth, {"kind": "outage", "seconds": 5, "mode": "reset"})
    with pytest.raises(aiohttp.ClientError):
        await call(http, auth, "query", token_params("bm9wZQ=="))


async def test_throttle_past_n_per_second(auth, http):
    await add_fault(http, auth, {"operation": "query", "kind": "throttle", "per_second": 3})
    answers = await asyncio.gather(
        *(call(http, auth, "query", token_params("bm9wZQ==")) for _ in range(8))
    )
    codes = sorted(body["code"] for _, body in answers)
    # All 8 arrive well within one real second: 3 served (forged: 1), the rest throttled.
    assert codes.count(1) == 3 and codes.count(429) == 5
    assert {status for status, body in answers if body["code"] == 429} == {429}


async def test_fault_list_seed_and_metrics(auth, http):
    await add_fault(http, auth, {"operation": "query", "kind": "reset", "probability": 0.5})
    async with http.get(f"{auth.url}/admin/faults") as r:
        (fault,) = (await r.json())["faults"]
    assert fault["kind"] == "reset" and fault["probability"] == 0.5

    async def run(seed: int) -> list[bool]:
        async with http.post(f"{auth.url}/admin/faults/seed", json={"seed": seed}) as r:
            assert r.status == 200
        out = []
        for _ in range(12):
            try:
                await call(http, auth, "query", token_params("bm9wZQ=="))
                out.append(False)
            except aiohttp.ClientError:
                out.append(True)
        return out

    first = await run(42)
    assert first == await run(42)
    assert any(first) and not all(first)
    async with http.get(f"{auth.url}/admin/metrics") as r:
        text = await r.text()
    resets = sum(first) * 2
    assert f'mqtt_authserver_requests_total{{code="reset",operation="query"}} {resets}.0' in text
    assert f'code="1",operation="query"}} {24 - resets}.0' in text
