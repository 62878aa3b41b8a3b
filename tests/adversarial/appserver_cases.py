"""Cases against the reference AppServer: ``POST /v1/tokens`` and the admin API (SPEC §5,
docs/appserver.md).

A token case starts from a genuine ask of one of two accounts (HTTP Basic, a body its
grants cover).  Forged, so never answered 200: a wrong or another account's secret, an
unknown or disabled account, topics or actions no grant covers.  Admin cases work on
accounts of their own (``fa-*``), so that they never change the token cases' accounts.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from typing import Any

from .httpfuzz import (
    HUGE,
    UNICODE,
    Answer,
    Request,
    deep_json,
    json_request,
    mutate_json,
    wire_mutations,
)

#: The token cases' accounts: secret, grants, and asks their grants cover or do not.
ACCOUNTS: dict[str, dict[str, Any]] = {
    "fz-reader": {
        "secret": "reader-secret-1",
        "grants": [{"resources": ["devices/+/state", "fleet/#"], "actions": "R"}],
        "covered": [(["devices/d1/state"], "R"), (["fleet/#"], "R"),
                    (["fleet/a/b", "devices/+/state"], "R"), (["fleet/+"], "R")],
        "uncovered": [(["#"], "R"), (["fleet/#"], "W"), (["devices/#"], "R"),
                      (["devices/d1/cmd"], "R"), (["fleet/a"], "R,W"), (["+/#"], "R"),
                      (["fleet/#", "dev/x"], "R")],
    },
    "fz-writer": {
        "secret": "writer-secret-1",
        "grants": [{"resources": ["devices/d1/cmd"], "actions": "R,W"},
                   {"resources": ["fleet/#"], "actions": "R"}],
        "covered": [(["devices/d1/cmd"], "R,W"), (["devices/d1/cmd"], "W"),
                    (["fleet/x", "devices/d1/cmd"], "R")],
        "uncovered": [(["devices/+/cmd"], "W"), (["fleet/x"], "W"), (["devices/d2/cmd"], "R"),
                      (["#"], "R,W"), (["devices/d1/cmd", "fleet/x"], "R,W")],
    },
}  # fmt: skip
DISABLED = ("fz-off", "off-secret-1")
ADMIN_IDS = [f"fa-{i}" for i in range(8)]


@dataclass(frozen=True)
class AppWorld:
    port: int


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def token_case(world: AppWorld, rng: random.Random) -> list[Request]:
    client_id = rng.choice(sorted(ACCOUNTS))
    account = ACCOUNTS[client_id]
    secret = account["secret"]
    resources, actions = rng.choice(account["covered"])
    body: Any = {"resources": resources, "actions": actions}
    labels: list[str] = []
    uncovered: Any = None  # the body asking for more than the grants, while it is sent
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        kind = rng.choice(["secret", "identity", "acl", "acl", "json", "values"])
        if kind == "secret":
            other = ACCOUNTS[next(c for c in sorted(ACCOUNTS) if c != client_id)]["secret"]
            secret = rng.choice([secret + "x", secret.upper(), secret[:-1], other, " " + secret])
            labels.append("wrong_secret")
        elif kind == "identity":
            client_id, secret = rng.choice(
                [DISABLED, ("fz-nobody", secret), ("FZ-READER", secret), (client_id + " ", secret)]
            )
            labels.append("identity")
        elif kind == "acl":
            resources, actions = rng.choice(account["uncovered"])
            body = uncovered = {"resources": resources, "actions": actions}
            labels.append("acl_uncovered")
        elif kind == "json":
            body, label = mutate_json(rng, body)
            labels.append(label)
        else:
            body = {
                "resources": rng.choice([[], [""], ["#/x"], ["a" * 70], [UNICODE], ["x"] * 101,
                                         "fleet/#", [["fleet/#"]], [HUGE], ["fleet/#,devices/#"]]),
                "actions": rng.choice(["R", "RW", "W,R", "", "r", UNICODE, ["R"], None]),
            }  # fmt: skip
            labels.append("values")
    # Forged, so never 200: anything but an enabled account's own id and secret (SPEC §5:
    # a forged identity gets nothing), or a body asking for more than the grants.
    genuine = ACCOUNTS.get(client_id, {}).get("secret")
    forged = secret != genuine or body is uncovered
    authorization = basic(client_id, secret)
    raw = json.dumps(body).encode()
    if rng.random() < 0.05:
        raw = deep_json(rng.choice([33, 10_000]))
        labels.append("json_depth")
    req = Request(
        "POST", "/v1/tokens", body=raw, forged=forged, labels=tuple(labels),
        headers=[("Content-Type", "application/json"), ("Authorization", authorization)],
        secrets=(authorization.split(" ", 1)[1], secret),
    )  # fmt: skip
    return [wire_mutations(rng, req, "/v1/")]


def token_succeeded(req: Request, answer: Answer) -> bool:
    return answer.status == 200


def _grants(rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"resources": rng.choice([["fleet/#"], ["devices/+/state"], ["a/b", "c/#"]]),
         "actions": rng.choice(["R", "W", "R,W"])}
        for _ in range(rng.randrange(1, 3))
    ]  # fmt: skip


def _account_body(rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {"secret": f"s-{rng.randrange(1000)}", "grants": _grants(rng)}
    if rng.random() < 0.3:
        body["enabled"] = rng.random() < 0.5
    return body


def admin_case(world: AppWorld, rng: random.Random) -> list[Request]:
    cid = rng.choice(ADMIN_IDS)
    routes: list[tuple[str, str, Any]] = [
        ("PUT", f"/admin/accounts/{cid}", _account_body(rng)),
        ("PUT", f"/admin/accounts/{cid}", {"enabled": rng.random() < 0.5}),
        ("GET", f"/admin/accounts/{cid}", None),
        ("DELETE", f"/admin/accounts/{cid}", None),
        ("GET", "/admin/accounts", None),
        ("POST", "/admin/accounts:bulk", {"accounts": [
            {"client_id": rng.choice(ADMIN_IDS), **_account_body(rng)}
            for _ in range(rng.randrange(1, 4))]}),
        ("GET", "/admin/health", None),
        ("GET", "/admin/metrics", None),
        ("GET", "/openapi.json", None),
    ]  # fmt: skip
    method, path, body = rng.choice(routes)
    return [json_request(rng, method, path, body, prefix="/admin/")]


def admin_succeeded(req: Request, answer: Answer) -> bool:
    return answer.status < 300
