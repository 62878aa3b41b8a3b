"""The admin API under ``/admin/`` (SPEC §3d, docs/CONTRACTS.md): loopback only by default.

Health, clock control, what a broker needs (bootstrap + long-poll feed), token
inspection, accounts, parent topics per instance (SPEC §4a), faults, Prometheus
metrics.  Errors are :class:`AdminError`\\ s, rendered ``{"code", "message"}`` by the middleware.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from aiohttp import web

from sim.shared.clock import ManualClock
from sim.shared.httplimits import JsonTooDeep, loads_json
from sim.shared.protocol.errors import InvalidTopic
from sim.shared.protocol.topics import validate_parent_topic

from .appkeys import CLOCK, CONFIG, ENGINE, FAULTS, FEED, METRICS
from .config import AccountSpec, InstanceSpec
from .errors import AdminConflict, AdminError, AdminNotFound

__all__ = ["add_routes"]

#: Longest single ``/admin/clock/advance``, virtual seconds (ten years).
MAX_ADVANCE_S = 10 * 365 * 86400.0


async def _json_body(request: web.Request) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise AdminError("the request body is too large") from None
    try:
        return loads_json(raw or b"null")
    except JsonTooDeep as exc:
        raise AdminError(f"the request body is {exc}") from None
    except ValueError:  # UnicodeDecodeError included
        raise AdminError("the request body is not valid JSON") from None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise AdminError("the request body must be a JSON object")
    return body


async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    return web.json_response({"status": "ok", "seq": engine.seq})


async def clock(request: web.Request) -> web.Response:
    c = request.app[CLOCK]
    return web.json_response({"now_ms": c.now_ms(), "scale": c.scale, "mode": c.mode})


async def clock_advance(request: web.Request) -> web.Response:
    c = request.app[CLOCK]
    if not isinstance(c, ManualClock):
        raise AdminConflict(f"the clock is {c.mode}: only a manual clock can be advanced")
    body = _object(await _json_body(request))
    seconds = body.get("seconds")
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= MAX_ADVANCE_S
    ):
        raise AdminError(f"'seconds' must be a number within 0..{MAX_ADVANCE_S:.0f}")
    fired = c.advance(float(seconds))
    return web.json_response(
        {"now_ms": c.now_ms(), "scale": c.scale, "mode": c.mode, "fired": fired}
    )


async def bootstrap(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENGINE].bootstrap().to_json())


def _int_param(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise AdminError(f"{name!r} must be a non-negative integer")
    return int(raw)


async def feed(request: web.Request) -> web.Response:
    """Long poll: events with ``seq > after``, or an empty list at the timeout."""
    after = _int_param(request, "after", 0)
    max_timeout = request.app[CONFIG].feed_max_timeout_s
    raw_timeout = request.query.get("timeout", "10")
    try:
        timeout = float(raw_timeout)
    except ValueError:
        raise AdminError("'timeout' must be a number of seconds") from None
    if not math.isfinite(timeout) or timeout < 0:
        raise AdminError("'timeout' must be a number of seconds")
    timeout = min(timeout, max_timeout)
    engine, signal = request.app[ENGINE], request.app[FEED]
    now = asyncio.get_running_loop().time
    deadline = now() + timeout
    while True:
        answer = engine.feed(after)
        remaining = deadline - now()
        if answer.events or answer.reset or remaining <= 0 or signal.closing:
            return web.json_response(answer.to_json())
        await signal.wait(remaining)


async def token_info(request: web.Request) -> web.Response:
    info = request.app[ENGINE].inspect(request.match_info["token_id"])
    if info is None:
        raise AdminNotFound("no such token")
    return web.json_response(info)


def _account_json(a: AccountSpec) -> dict[str, Any]:
    return {
        "access_key_id": a.access_key_id,
        "secret": a.secret,
        "instances": list(a.instances),
        "enabled": a.enabled,
    }


async def accounts_list(request: web.Request) -> web.Response:
    return web.json_response(
        {"accounts": [_account_json(a) for a in request.app[ENGINE].accounts()]}
    )


async def account_get(request: web.Request) -> web.Response:
    account = request.app[ENGINE].get_account(request.match_info["access_key_id"])
    if account is None:
        raise AdminNotFound("no such account")
    return web.json_response(_account_json(account))


async def account_put(request: web.Request) -> web.Response:
    ak = request.match_info["access_key_id"]
    body = _object(await _json_body(request))
    unknown = set(body) - {"secret", "instances", "enabled", "access_key_id"}
    if unknown:
        raise AdminError(f"unknown account fields {sorted(unknown)[:5]}")
    if body.get("access_key_id", ak) != ak:
        raise AdminError("access_key_id in the body differs from the path")
    engine = request.app[ENGINE]
    old = engine.get_account(ak)
    instances = body.get("instances", list(old.instances) if old else None)
    if not isinstance(instances, list):
        raise AdminError("'instances' must be a list of instance ids")
    enabled = body.get("enabled", old.enabled if old else True)
    try:
        account = AccountSpec(
            access_key_id=ak,
            secret=body.get("secret", old.secret if old else None),  # type: ignore[arg-type]
            instances=tuple(instances),
            enabled=enabled,
        )
    except (ValueError, TypeError) as exc:
        raise AdminError(str(exc)) from None
    engine.put_account(account)
    return web.json_response(_account_json(account), status=200 if old else 201)


async def account_delete(request: web.Request) -> web.Response:
    if not request.app[ENGINE].delete_account(request.match_info["access_key_id"]):
        raise AdminNotFound("no such account")
    return web.json_response({"deleted": True})


# -- parent topics per instance (SPEC §4a) ---------------------------------------------------


def _instance_json(request: web.Request, instance_id: str) -> dict[str, Any]:
    engine = request.app[ENGINE]
    return {
        "instance_id": instance_id,
        "owners": engine.owners(instance_id),
        "parent_topics": list(engine.parent_topics_of(instance_id)),
    }


def _known_instance(request: web.Request) -> str:
    instance_id = request.match_info["instance_id"]
    engine = request.app[ENGINE]
    if not engine.owners(instance_id) and not engine.parent_topics_of(instance_id):
        raise AdminNotFound(f"no account owns instance {instance_id[:64]!r}")
    return instance_id


async def instances_list(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    ids = {i for a in engine.accounts() for i in a.instances} | set(engine.parent_topics())
    return web.json_response({"instances": [_instance_json(request, i) for i in sorted(ids)]})


async def instance_topics(request: web.Request) -> web.Response:
    return web.json_response(_instance_json(request, _known_instance(request)))


async def instance_topics_put(request: web.Request) -> web.Response:
    """Replace the instance's parent topics by ``{"parent_topics": [...]}``."""
    instance_id = _known_instance(request)
    body = _object(await _json_body(request))
    unknown = set(body) - {"parent_topics"}
    if unknown:
        raise AdminError(f"unknown fields {sorted(unknown)[:5]}")
    topics = body.get("parent_topics")
    if not isinstance(topics, list):
        raise AdminError("'parent_topics' must be a list of parent topic names")
    try:
        spec = InstanceSpec(instance_id, tuple(topics))
        request.app[ENGINE].set_parent_topics(spec)
    except (ValueError, TypeError) as exc:
        raise AdminError(str(exc)) from None
    return web.json_response(_instance_json(request, instance_id))


async def parent_topic_put(request: web.Request) -> web.Response:
    instance_id, name = request.match_info["instance_id"], request.match_info["parent"]
    engine = request.app[ENGINE]
    try:
        validate_parent_topic(name)
    except InvalidTopic as exc:
        raise AdminError(str(exc)) from None
    if not engine.owners(instance_id):
        raise AdminNotFound(f"no account owns instance {instance_id[:64]!r}")
    try:
        created = engine.add_parent_topic(instance_id, name)
    except ValueError as exc:
        raise AdminConflict(str(exc)) from None
    return web.json_response(
        {"instance_id": instance_id, "parent_topic": name, "created": created},
        status=201 if created else 200,
    )


async def parent_topic_delete(request: web.Request) -> web.Response:
    instance_id, name = request.match_info["instance_id"], request.match_info["parent"]
    if not request.app[ENGINE].delete_parent_topic(instance_id, name):
        raise AdminNotFound(f"instance {instance_id[:64]!r} has no parent topic {name[:64]!r}")
    return web.json_response({"deleted": True})


async def faults_list(request: web.Request) -> web.Response:
    return web.json_response({"faults": request.app[FAULTS].list()})


async def faults_add(request: web.Request) -> web.Response:
    body = await _json_body(request)
    fault = request.app[FAULTS].add(body, request.app[CLOCK].now_ms())
    return web.json_response({"id": fault.id, "fault": fault.to_json()}, status=201)


async def faults_clear(request: web.Request) -> web.Response:
    request.app[FAULTS].clear()
    return web.json_response({"cleared": True})


async def fault_delete(request: web.Request) -> web.Response:
    if not request.app[FAULTS].remove(request.match_info["fault_id"]):
        raise AdminNotFound("no such fault")
    return web.json_response({"deleted": True})


async def faults_seed(request: web.Request) -> web.Response:
    body = _object(await _json_body(request))
    seed = body.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise AdminError("'seed' must be an integer")
    request.app[FAULTS].reseed(seed)
    return web.json_response({"seed": seed})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[METRICS].render(),
        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
    )


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/admin/health", health)
    r.add_get("/admin/clock", clock)
    r.add_post("/admin/clock/advance", clock_advance)
    r.add_get("/admin/broker/bootstrap", bootstrap)
    r.add_get("/admin/feed", feed)
    r.add_get("/admin/tokens/{token_id}", token_info)
    r.add_get("/admin/accounts", accounts_list)
    r.add_get("/admin/accounts/{access_key_id}", account_get)
    r.add_put("/admin/accounts/{access_key_id}", account_put)
    r.add_delete("/admin/accounts/{access_key_id}", account_delete)
    r.add_get("/admin/instances", instances_list)
    r.add_get("/admin/instances/{instance_id}/topics", instance_topics)
    r.add_put("/admin/instances/{instance_id}/topics", instance_topics_put)
    r.add_put("/admin/instances/{instance_id}/topics/{parent}", parent_topic_put)
    r.add_delete("/admin/instances/{instance_id}/topics/{parent}", parent_topic_delete)
    r.add_get("/admin/faults", faults_list)
    r.add_post("/admin/faults", faults_add)
    r.add_delete("/admin/faults", faults_clear)
    r.add_post("/admin/faults/seed", faults_seed)
    r.add_delete("/admin/faults/{fault_id}", fault_delete)
    r.add_get("/admin/metrics", metrics)
