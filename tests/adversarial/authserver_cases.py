"""Cases against the mock AuthServer: the legacy token API, the OpenAPI style signed V3
and RPC v1, and the admin API (SPEC §3a, §3b, §3d).

Every case starts from a genuine request of the dev account (``dev-ak``/``mqtt-dev``),
signed as the provider's SDKs sign.  Then, in this order: changes made *before* signing
(the signature stays valid: edge values, timestamps, nonces, another account's own
credentials), changes made *after* signing (forgeries: the signature no longer matches
what is sent), the transport (query, form, multipart, split), and wire mutations
(:mod:`.httpfuzz`).  A request is labelled forged when its success would mean the server
accepted what the account's secret did not sign, or let one account act on another's
instance or token.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

from sim.shared.protocol.signing import (
    LEGACY_APPLY_SIGNED,
    LEGACY_TOKEN_SIGNED,
    V3Authorization,
    legacy_sign,
    legacy_signed_value,
    rpc_sign,
    sha256_hex,
    v3_canonical_request,
    v3_sign,
)

from .httpfuzz import HUGE, UNICODE, Answer, Request, json_request, wire_mutations

AK, SK, INSTANCE = "dev-ak", "dev-sk", "mqtt-dev"
OTHER_AK, OTHER_SK, OTHER_INSTANCE = "ak2", "sk2", "inst2"
API_VERSION = "2020-04-20"


@dataclass(frozen=True)
class AuthWorld:
    port: int  # the server of the token APIs
    admin_port: int  # a second AuthServer for the admin API (its state is the fuzz's)
    now_ms: int  # the token server's virtual now (a manual clock nobody advances)
    tokens: tuple[str, ...]  # genuine tokens of dev-ak / mqtt-dev
    other_tokens: tuple[str, ...]  # genuine tokens of ak2 / inst2


# -- shared helpers ----------------------------------------------------------------------------

#: Who owns each instance of the token server's world.
OWNER = {INSTANCE: AK, OTHER_INSTANCE: OTHER_AK}


def outside(
    world: AuthWorld, ak: str, *, instance: str | None = None, token: str | None = None
) -> bool:
    """Whether the request acts outside the account ``ak`` signs for: an instance it does
    not own, a token it was not issued (a forged one included).  Its success would be a
    forgery, however valid its signature."""
    if instance is not None and OWNER.get(instance) != ak:
        return True
    if token is not None:
        owner = AK if token in world.tokens else OTHER_AK if token in world.other_tokens else None
        return owner != ak
    return False


BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
HEX = "0123456789abcdef"


def _flip(rng: random.Random, text: str, alphabet: str = BASE64, keep_tail: int = 3) -> str:
    """``text`` with one character changed to another of ``alphabet`` (not among the last
    ``keep_tail``: the last Base64 characters may carry unused bits).  A V3 signature is
    hex compared without regard to case, so it is flipped within lower-case hex."""
    if len(text) <= keep_tail:
        return text + alphabet[0]
    at = rng.randrange(len(text) - keep_tail)
    new = rng.choice([c for c in alphabet if c != text[at].lower() and c != text[at]])
    return text[:at] + new + text[at + 1 :]


def _other_secret(rng: random.Random, secret: str) -> str:
    """A secret that is not ``secret``: another account's, or nearly this one."""
    return rng.choice([s for s in (OTHER_SK, SK, secret + " ", secret.upper(), "") if s != secret])


def _forge_signature(rng: random.Random, signature: str, pad: str) -> tuple[str, str]:
    """A signature made wrong.  A V3 signature (``pad`` ``"0"``, hex) ends its header,
    where HTTP strips trailing whitespace: it is padded with hex digits only."""
    kind = rng.choice(["flip", "truncate", "pad", "empty_tail"])
    if kind == "flip":
        return _flip(rng, signature, HEX if pad == "0" else BASE64), "sig_flip"
    if kind == "truncate":
        return signature[: rng.randrange(len(signature))], "sig_truncate"
    if kind == "pad":
        spaces = [] if pad == "0" else [" ", "\t"]
        return signature + rng.choice([pad, pad * 2, *spaces]), "sig_pad"
    return signature[:-4], "sig_short"


def forged_token(rng: random.Random, token: str) -> tuple[str, str]:
    """A genuine token made into a forged one (one spelling per token, SPEC §3c)."""
    kind = rng.choice(["flip", "pad", "unpad", "truncate", "append", "lower"])
    if len(token) < 8:
        kind = "append"
    if kind == "flip":
        return _flip(rng, token), "token_flip"
    if kind == "pad":
        return token + rng.choice(["=", "==", "\n", " "]), "token_pad"
    if kind == "unpad":
        stripped = token.rstrip("=")
        return (stripped if stripped != token else token[:-1]), "token_unpad"
    if kind == "truncate":
        return token[: rng.randrange(1, len(token))], "token_truncate"
    if kind == "append":
        return token + "AAAA", "token_append"
    return token.swapcase(), "token_case"


RESOURCE_VALUES = [
    "a/+,b/#", "b/#,a/+", "dev/#", "#", "+", "dev/+/state", "a/#/b", ",", "a,,b", "", " ",
    ",".join(f"t{i}" for i in range(101)), "dev/" + "x" * 70, "$SYS/x", UNICODE, "dev/ü",
    "dev/" + "a/" * 40, HUGE, "dev/a\u0000b", "dev/a b",
]  # fmt: skip
ACTION_VALUES = ["R", "W", "R,W", "W,R", "RW", "R,R", "", "r", "R,W,X", UNICODE]


def _expire_values(now_ms: int) -> list[str]:
    return [
        str(now_ms + 30_000), str(now_ms + 61_000), str(now_ms + 40 * 86_400_000),
        "-1", "0", "1e3", "abc", "9" * 30, "", " 1", UNICODE, str(now_ms + 3_600_000) + ".5",
    ]  # fmt: skip


def _date(offset_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _nonce(rng: random.Random) -> str:
    return uuid.UUID(int=rng.getrandbits(128)).hex


def _timestamp(rng: random.Random) -> tuple[str, bool, str]:
    """A request timestamp: (value, outside the ±15 min window, label)."""
    kind = rng.choice(["near", "past", "future", "far", "garbage"])
    if kind == "near":
        return _date(rng.uniform(-600, 600)), False, "ts_near"
    if kind == "past":
        return _date(-rng.uniform(960, 86_400)), True, "ts_past"
    if kind == "future":
        return _date(rng.uniform(960, 86_400)), True, "ts_future"
    if kind == "far":
        return rng.choice(["1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]), True, "ts_far"
    return rng.choice(["", "now", "2026-13-45T99:99:99Z", UNICODE, "1" * 50]), True, "ts_garbage"


def _multipart(pairs: list[tuple[str, str]]) -> bytes:
    parts = b"".join(
        b'--zz\r\nContent-Disposition: form-data; name="'
        + quote(k).encode()
        + b'"\r\n\r\n'
        + v.encode("utf-8", "surrogateescape")
        + b"\r\n"
        for k, v in pairs
    )
    return parts + b"--zz--\r\n"


def _place(
    rng: random.Random, path: str, pairs: list[tuple[str, str]], *, split: bool = True
) -> Request:
    """Legacy/RPC parameters on the wire: query (GET), form or multipart body (POST), or
    split between the query and a form body (each name on one side only)."""
    pairs = list(pairs)
    rng.shuffle(pairs)
    how = rng.choice(["get", "form", "form", "multipart", "split" if split else "form"])
    form = ("Content-Type", "application/x-www-form-urlencoded")
    if how == "get":
        return Request("GET", path, query=pairs)
    if how == "form":
        body = urlencode(pairs, quote_via=quote).encode()
        return Request("POST", path, headers=[form], body=body)
    if how == "multipart":
        return Request(
            "POST", path, headers=[("Content-Type", "multipart/form-data; boundary=zz")],
            body=_multipart(pairs),
        )  # fmt: skip
    cut = rng.randrange(len(pairs) + 1)
    return Request(
        "POST", path, query=pairs[:cut], headers=[form],
        body=urlencode(pairs[cut:], quote_via=quote).encode(),
    )  # fmt: skip


# -- legacy token API (SPEC §3a) ----------------------------------------------------------------


def legacy_case(world: AuthWorld, rng: random.Random) -> list[Request]:
    op = rng.choice(["apply", "apply", "query", "revoke"])
    labels: list[str] = []
    forged = False
    if op == "apply":
        params = {
            "actions": rng.choice(["R", "W", "R,W"]), "resources": rng.choice(["a/+,b/#", "dev/#"]),
            "expireTime": str(world.now_ms + 3_600_000), "instanceId": INSTANCE,
            "serviceName": "mq", "proxyType": "MQTT", "accessKey": AK,
        }  # fmt: skip
        names = LEGACY_APPLY_SIGNED
    else:
        params = {"token": rng.choice(world.tokens), "accessKey": AK}
        names = LEGACY_TOKEN_SIGNED
    secret = SK

    # Before signing: the signature stays valid.
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        kind = rng.choice(["value", "value", "extra", "instance", "other_token", "forged_token",
                           "unknown_key", "other_account"])  # fmt: skip
        if kind == "value" and op == "apply":
            name = rng.choice(["actions", "resources", "expireTime", "serviceName", "proxyType"])
            params[name] = rng.choice(
                {"actions": ACTION_VALUES, "resources": RESOURCE_VALUES,
                 "expireTime": _expire_values(world.now_ms),
                 "serviceName": ["mq", "MQ", "", "mq2"], "proxyType": ["MQTT", "mqtt", ""]}[name]
            )  # fmt: skip
            labels.append(f"value_{name}")
        elif kind == "value":
            params["token"] = rng.choice(["", "x", HUGE, UNICODE, "R|" + world.tokens[0]])
            labels.append("value_token")
        elif kind == "extra":
            params[rng.choice(["x", "Signature", "RegionId", UNICODE])] = rng.choice(["1", HUGE])
            labels.append("extra_param")
        elif kind == "instance" and op == "apply":
            params["instanceId"] = rng.choice([OTHER_INSTANCE, "nope", "", "mqtt-dev ", UNICODE])
            labels.append("instance")
        elif kind == "other_token" and op != "apply":
            params["token"] = rng.choice(world.other_tokens)
            labels.append("token_of_other_account")
        elif kind == "forged_token" and op != "apply":
            params["token"], label = forged_token(rng, params["token"])
            labels.append(label)
        elif kind == "unknown_key":
            params["accessKey"] = rng.choice(["nope", "", "DEV-AK", UNICODE, "dev-ak "])
            labels.append("access_key_unknown")  # signed with dev-sk, named another key
        elif kind == "other_account":
            params["accessKey"], secret = OTHER_AK, OTHER_SK
            labels.append("other_account_credentials")  # ak2's own signature
    # Acting outside the signing account (its instance, its tokens) is a forgery whatever
    # the signature; a junk value is refused anyway, and so counted as forged too.
    forged = outside(
        world, params["accessKey"],
        instance=params.get("instanceId") if op == "apply" else None,
        token=params.get("token"),
    )  # fmt: skip
    signed = {k: params[k] for k in names if k in params}
    params["signature"] = legacy_sign(signed, secret)

    # After signing: forgeries.
    if rng.random() < 0.35:
        forged = True
        kind = rng.choice(["signature", "signature", "tamper", "secret"])
        if kind == "signature":
            params["signature"], label = _forge_signature(rng, params["signature"], "=")
        elif kind == "secret":
            params["signature"] = legacy_sign(signed, _other_secret(rng, secret))
            label = "sig_wrong_secret"
        else:
            name = rng.choice([n for n in names if n in params])
            old = legacy_signed_value(params[name])
            choices = {
                "actions": ["R", "W", "R,W"], "resources": ["#", "dev/#", "a/+,b/#,c"],
                "expireTime": [str(world.now_ms + 30 * 86_400_000), str(world.now_ms + 3_600_001)],
                "instanceId": [OTHER_INSTANCE], "serviceName": ["mq2"],
                "token": [world.other_tokens[0], world.tokens[-1]],
            }[name]  # fmt: skip
            new = [c for c in choices if legacy_signed_value(c) != old]
            params[name] = rng.choice(new) if new else params[name] + "x"
            label = f"tamper_{name}"
        labels.append(label)

    pairs = list(params.items())
    repeated = op == "apply" and "," in params["resources"] and rng.random() < 0.3
    if repeated:
        # Same-name parameters are one comma-joined list (SPEC §3a): still the signed value.
        pairs = [p for p in pairs if p[0] != "resources"] + [
            ("resources", r) for r in params["resources"].split(",")
        ]
    req = _place(rng, f"/token/{op}", pairs, split=not repeated)
    req = replace(req, forged=forged, labels=tuple(labels), secrets=(params["signature"],))
    return [wire_mutations(rng, req, "/token/")]


def legacy_succeeded(req: Request, answer: Answer) -> bool:
    try:
        return answer.status == 200 and json.loads(answer.body).get("success") is True
    except (ValueError, AttributeError):
        return False


# -- OpenAPI (SPEC §3b) ------------------------------------------------------------------------


def _openapi_params(world: AuthWorld, rng: random.Random, action: str) -> dict[str, str]:
    if action == "ApplyToken":
        return {
            "InstanceId": INSTANCE, "Actions": rng.choice(["R", "W", "R,W"]),
            "Resources": rng.choice(["a/+,b/#", "dev/#", "dev/a,dev/b"]),
            "ExpireTime": str(world.now_ms + 3_600_000),
        }  # fmt: skip
    return {"Token": rng.choice(world.tokens), "InstanceId": INSTANCE}


def _openapi_presign(
    world: AuthWorld, rng: random.Random, params: dict[str, str]
) -> tuple[str, tuple[str, str] | None]:
    """Change a business parameter before signing: (label, other credentials or None)."""
    kind = rng.choice(["value", "value", "instance", "token", "extra", "other_account"])
    if kind == "value" and "ExpireTime" in params:
        name = rng.choice(["Actions", "Resources", "ExpireTime"])
        params[name] = rng.choice(
            {"Actions": ACTION_VALUES, "Resources": RESOURCE_VALUES,
             "ExpireTime": _expire_values(world.now_ms)}[name]
        )  # fmt: skip
        return f"value_{name}", None
    if kind == "value":
        params["Token"] = rng.choice(["", "x", HUGE, UNICODE])
        return "value_Token", None
    if kind == "instance":
        params["InstanceId"] = rng.choice([OTHER_INSTANCE, "nope", UNICODE])
        return "instance", None
    if kind == "token" and "Token" in params:
        if rng.random() < 0.5:
            params["Token"] = rng.choice(world.other_tokens)
            return "token_of_other_account", None
        params["Token"], label = forged_token(rng, params["Token"])
        return label, None
    if kind == "other_account":
        return "other_account_credentials", (OTHER_AK, OTHER_SK)
    params[rng.choice(["RegionId", "x", UNICODE])] = rng.choice(["cn-hangzhou", HUGE, ""])
    return "extra_param", None


def _openapi_outside(world: AuthWorld, ak: str, effective: dict[str, str]) -> bool:
    instance, token = effective.get("InstanceId", ""), effective.get("Token")
    return outside(world, ak, instance=instance, token=token)


def v3_case(world: AuthWorld, rng: random.Random) -> list[Request]:
    action = rng.choice(["ApplyToken", "ApplyToken", "QueryToken", "RevokeToken"])
    params = _openapi_params(world, rng, action)
    labels: list[str] = []
    forged = False
    ak, secret = AK, SK
    method = rng.choice(["POST", "POST", "GET"])
    form: dict[str, str] = {}  # business parameters in a signed form body instead
    date, late = _date(), False
    nonce = _nonce(rng)
    version = API_VERSION
    drop_signed: str | None = None

    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        kind = rng.choice(["business", "business", "timestamp", "nonce", "signed_headers",
                           "version", "action", "body"])  # fmt: skip
        if kind == "business":
            label, creds = _openapi_presign(world, rng, params)
            if creds:
                ak, secret = creds
            labels.append(label)
        elif kind == "timestamp":
            date, late, label = _timestamp(rng)
            labels.append(label)
        elif kind == "nonce":
            nonce = rng.choice(["", "x", "n" * 9_000, UNICODE])
            labels.append("nonce_odd")
        elif kind == "signed_headers":
            drop_signed = rng.choice(
                ["x-acs-date", "x-acs-signature-nonce", "x-acs-action", "x-acs-content-sha256"]
            )
            forged = True  # a required header left unsigned (SPEC §3b)
            labels.append("unsigned_" + drop_signed)
        elif kind == "version":
            version = rng.choice(["2019-01-01", "", "2020-04-20 ", UNICODE])
            labels.append("version")
        elif kind == "action":
            action = rng.choice(["ListInstances", "Nope", "", "applytoken", UNICODE])
            labels.append("action")
        else:  # business parameters in a signed form body instead of the query
            form.update(params)
            params = {}
            labels.append("params_in_body")
    # A timestamp outside the window, an empty nonce (SPEC §3b), acting outside the account.
    forged |= late or not nonce or _openapi_outside(world, ak, {**params, **form})
    body = urlencode(sorted(form.items()), quote_via=quote).encode()

    headers = [
        ("host", f"127.0.0.1:{world.port}"),
        ("x-acs-action", action),
        ("x-acs-version", version),
        ("x-acs-date", date),
        ("x-acs-signature-nonce", nonce),
        ("x-acs-content-sha256", sha256_hex(body)),
    ]
    if body:
        headers.append(("content-type", "application/x-www-form-urlencoded"))
    signed = sorted(h for h, _ in headers if h != drop_signed)
    canonical = v3_canonical_request(method, "/", params, headers, signed, sha256_hex(body))
    signature = v3_sign(canonical, secret)
    query = sorted(params.items())

    if rng.random() < 0.35:
        forged = True
        kind = rng.choice(["signature", "signature", "secret", "tamper_query", "tamper_header",
                           "tamper_body", "credential"])  # fmt: skip
        if kind == "signature":
            signature, label = _forge_signature(rng, signature, "0")
        elif kind == "secret":
            signature = v3_sign(canonical, _other_secret(rng, secret))
            label = "sig_wrong_secret"
        elif kind == "tamper_query" and query:
            at = rng.randrange(len(query))
            query[at] = (query[at][0], query[at][1] + rng.choice(["x", ",#", "0"]))
            label = "tamper_query"
        elif kind == "tamper_header":
            at = rng.randrange(1, 5)
            name, value = headers[at]
            headers[at] = (name, {"x-acs-action": "RevokeToken" if action != "RevokeToken"
                                  else "QueryToken"}.get(name, value + "1"))  # fmt: skip
            label = f"tamper_{name}"
        elif kind == "tamper_body":
            body = body + b"&Resources=%23" if body else b"Resources=%23"
            label = "tamper_body"
        else:
            ak = OTHER_AK if ak == AK else AK
            label = "credential_swapped"
        labels.append(label)

    authz = V3Authorization(ak, signed, signature).render()
    req = Request(method, "/", query=query, headers=[*headers, ("Authorization", authz)],
                  body=body, forged=forged, labels=tuple(labels), secrets=(signature,))  # fmt: skip
    if rng.random() < 0.1:  # the same request again: the nonce is spent
        return [req, replace(req, forged=True, labels=(*req.labels, "replay"))]
    return [wire_mutations(rng, req, "/")]


def rpc_case(world: AuthWorld, rng: random.Random) -> list[Request]:
    action = rng.choice(["ApplyToken", "ApplyToken", "QueryToken", "RevokeToken"])
    business = _openapi_params(world, rng, action)
    labels: list[str] = []
    forged = False
    ak, secret = AK, SK
    late = False
    method = rng.choice(["GET", "GET", "POST"])
    common = {
        "Action": action, "Version": API_VERSION, "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0", "SignatureNonce": _nonce(rng), "Timestamp": _date(),
        "Format": "JSON",
    }  # fmt: skip
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        kind = rng.choice(["business", "business", "timestamp", "nonce", "method", "version"])
        if kind == "business":
            label, creds = _openapi_presign(world, rng, business)
            if creds:
                ak, secret = creds
            labels.append(label)
        elif kind == "timestamp":
            common["Timestamp"], late, label = _timestamp(rng)
            labels.append(label)
        elif kind == "nonce":
            common["SignatureNonce"] = rng.choice(["", "x", UNICODE])
            labels.append("nonce_odd")
        elif kind == "method":
            common["SignatureMethod"] = rng.choice(["HMAC-SHA256", "", "hmac-sha1"])
            labels.append("signature_method")
        else:
            common["SignatureVersion"] = rng.choice(["2.0", "", "1"])
            labels.append("signature_version")
    forged |= late or not common["SignatureNonce"] or _openapi_outside(world, ak, business)
    params = {**common, **business, "AccessKeyId": ak}
    params["Signature"] = rpc_sign(method, params, secret)

    if rng.random() < 0.35:
        forged = True
        kind = rng.choice(["signature", "signature", "secret", "tamper", "method", "key"])
        if kind == "signature":
            params["Signature"], label = _forge_signature(rng, params["Signature"], "=")
        elif kind == "secret":
            params["Signature"] = rpc_sign(method, params, _other_secret(rng, secret))
            label = "sig_wrong_secret"
        elif kind == "tamper":
            name = rng.choice([n for n in params if n not in ("Signature", "Format")])
            params[name] = params[name] + rng.choice(["x", "0", ",#"])
            label = f"tamper_{name}"
        elif kind == "method":  # signed for one method, sent with the other
            method = "POST" if method == "GET" else "GET"
            label = "tamper_method"
        else:
            params["AccessKeyId"] = OTHER_AK if ak == AK else AK
            label = "credential_swapped"
        labels.append(label)

    pairs = list(params.items())
    if method == "GET":
        req = Request("GET", "/", query=pairs)
    else:
        req = replace(_place(rng, "/", pairs), method="POST")
        if "multipart" in (req.header("content-type") or ""):
            # The OpenAPI reads form bodies only: multipart would lose the parameters.
            req = Request("POST", "/", query=pairs)
    req = replace(req, forged=forged, labels=tuple(labels), secrets=(params["Signature"],))
    if rng.random() < 0.1:
        return [req, replace(req, forged=True, labels=(*req.labels, "replay"))]
    return [wire_mutations(rng, req, "/")]


def openapi_succeeded(req: Request, answer: Answer) -> bool:
    """200, and not a query's "this token is not valid" (``TokenStatus: false``)."""
    if answer.status != 200:
        return False
    try:
        body = json.loads(answer.body)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("TokenStatus", True) is not False


# -- admin API (SPEC §3d) -----------------------------------------------------------------------


ADMIN_KEYS = ["dev-ak", "fz-0", "fz-1", "fz-2", "ak2"]
ADMIN_INSTANCES = ["mqtt-dev", "fz-inst", "inst2", "nope"]


def _fault(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["status", "error", "latency", "hang", "reset", "outage", "throttle"])
    fault: dict[str, Any] = {"operation": rng.choice(["apply", "revoke", "query", "*"]),
                             "kind": kind, "probability": rng.choice([0.5, 1.0])}  # fmt: skip
    fault.update(
        {"status": {"status": 503}, "error": {"code": "InternalError"},
         "latency": {"ms": 5, "jitter_ms": 1}, "hang": {}, "reset": {},
         "outage": {"seconds": 30}, "throttle": {"per_second": 10}}[kind]
    )  # fmt: skip
    if rng.random() < 0.5:
        fault["times"] = rng.randrange(1, 4)
    return fault


def _admin_route(rng: random.Random) -> tuple[str, str, list[tuple[str, str]], Any]:
    ak, inst = rng.choice(ADMIN_KEYS), rng.choice(ADMIN_INSTANCES)
    parent = rng.choice(["dev", "fleet", "fz", "ab", "x" * 65, "a-b_c"])
    routes: list[tuple[str, str, list[tuple[str, str]], Any]] = [
        ("GET", "/admin/health", [], None),
        ("GET", "/admin/clock", [], None),
        ("POST", "/admin/clock/advance", [], {"seconds": rng.choice([0, 1, 60.5, 3600])}),
        ("GET", "/admin/broker/bootstrap", [], None),
        ("GET", "/admin/feed", [("after", str(rng.randrange(5))), ("timeout", "0.01")], None),
        ("GET", f"/admin/tokens/{rng.choice(['x', 'AAAA', quote(UNICODE)])}", [], None),
        ("GET", "/admin/accounts", [], None),
        ("GET", f"/admin/accounts/{ak}", [], None),
        ("PUT", f"/admin/accounts/{ak}", [],
         {"secret": f"{ak}-secret", "instances": [inst], "enabled": rng.random() < 0.8}),
        ("DELETE", f"/admin/accounts/{ak}", [], None),
        ("GET", "/admin/instances", [], None),
        ("GET", f"/admin/instances/{inst}/topics", [], None),
        ("PUT", f"/admin/instances/{inst}/topics", [], {"parent_topics": ["dev", "fleet"]}),
        ("PUT", f"/admin/instances/{inst}/topics/{parent}", [], None),
        ("DELETE", f"/admin/instances/{inst}/topics/{parent}", [], None),
        ("GET", "/admin/faults", [], None),
        ("POST", "/admin/faults", [], _fault(rng)),
        ("DELETE", "/admin/faults", [], None),
        ("POST", "/admin/faults/seed", [], {"seed": rng.randrange(100)}),
        ("DELETE", f"/admin/faults/{rng.choice(['1', 'f1', 'nope'])}", [], None),
        ("GET", "/admin/metrics", [], None),
    ]  # fmt: skip
    return rng.choice(routes)


def admin_case(world: AuthWorld, rng: random.Random) -> list[Request]:
    method, path, query, body = _admin_route(rng)
    return [json_request(rng, method, path, body, query=query, prefix="/admin/")]


def admin_succeeded(req: Request, answer: Answer) -> bool:
    return answer.status < 300
