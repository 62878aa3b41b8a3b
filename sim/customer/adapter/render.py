"""An adapter's request for one client, and its answer read back (pure).

:func:`prepare_request` fills the templates of a :class:`~.model.RequestSpec` for one
:class:`~.model.ClientIdentity`; :func:`read_answer` turns the AppServer's status,
headers and body into :class:`~.model.Credentials` or an :class:`~.errors.AskError`.
Any HTTP client can carry the request out (the asyncio shell in :mod:`.client`, a
Locust user's own session): no I/O here, the time of the answer is passed in.

Placeholders: ``{client_id}``, ``{account}`` (the AppServer login: the client id unless
``[clients] account`` says otherwise), ``{secret}``, ``{resources}`` (a JSON list when a
JSON field is exactly ``"{resources}"``, otherwise comma-joined), ``{actions}`` (``R``,
``W`` or ``R,W``).  In ``url`` every value is percent-encoded.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from sim.shared.httplimits import JsonTooDeep, loads_json

from .errors import AskError, BadAnswer, Refused, Unauthenticated, Unavailable, kind_of
from .model import (
    ClientIdentity,
    Credentials,
    FieldList,
    FieldTable,
    FieldValue,
    JsonPath,
    RequestSpec,
    ResponseSpec,
)

__all__ = [
    "MAX_RETRY_AFTER_S",
    "PreparedRequest",
    "error_for_status",
    "join_url",
    "prepare_request",
    "read_answer",
    "retry_after_seconds",
]

#: A Retry-After longer than this is taken as this (a client still retries).
MAX_RETRY_AFTER_S = 3600.0
_MESSAGE_KEYS = ("message", "error", "err", "detail", "msg")
_MAX_MESSAGE = 200


@dataclass(frozen=True)
class PreparedRequest:
    """One HTTP request, ready to send (``path`` is joined to the AppServer URL)."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    #: the JSON body, or None
    json: Any = None
    #: the form fields (``application/x-www-form-urlencoded``), or None
    form: tuple[tuple[str, str], ...] | None = None

    def body_bytes(self) -> bytes | None:
        """The body as it goes on the wire (for HTTP clients without a JSON/form helper)."""
        if self.json is not None:
            return json.dumps(self.json, separators=(",", ":")).encode()
        if self.form is not None:
            return urlencode(self.form).encode()
        return None

    def content_type(self) -> str | None:
        if self.json is not None:
            return "application/json"
        if self.form is not None:
            return "application/x-www-form-urlencoded"
        return None


def join_url(base: str, path: str) -> str:
    """``http://host:port/prefix`` + ``/api/x`` → ``http://host:port/prefix/api/x``."""
    return base.rstrip("/") + path


def _values(client: ClientIdentity) -> dict[str, str]:
    return {
        "client_id": client.client_id,
        "account": client.login,
        "secret": client.secret,
        "resources": ",".join(client.resources),
        "actions": client.actions,
    }


def _fill(template: str, values: Mapping[str, str]) -> str:
    # check_template (at parse time) allowed only plain {name}: format_map is safe here
    return template.format_map(values)


def _json_value(value: FieldValue, client: ClientIdentity, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        if value == "{resources}":
            return list(client.resources)
        return _fill(value, values)
    if isinstance(value, FieldList):
        out: list[Any] = []
        for item in value.items:
            if item == "{resources}":
                out.extend(client.resources)  # ["{resources}"] is the list itself
            else:
                out.append(_json_value(item, client, values))
        return out
    if isinstance(value, FieldTable):
        return {k: _json_value(v, client, values) for k, v in value.items}
    return value


def _flat_value(value: FieldValue, values: Mapping[str, str]) -> str:
    if isinstance(value, str):
        return _fill(value, values)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, FieldList):
        return ",".join(_flat_value(v, values) for v in value.items)
    if isinstance(value, FieldTable):  # refused at parse time for form/query bodies
        raise ValueError("a nested table needs a JSON body")
    return str(value)


def _header_safe(name: str, value: str) -> tuple[str, str]:
    if any(c in value for c in "\r\n\0"):
        raise Refused(f"the {name} header would carry a line break: not sent")
    return name, value


def prepare_request(spec: RequestSpec, client: ClientIdentity) -> PreparedRequest:
    """The request ``spec`` describes, for ``client``."""
    values = _values(client)
    path = spec.url.format_map({k: quote(v, safe="") for k, v in values.items()})
    headers: list[tuple[str, str]] = [("Accept", "application/json")]
    if spec.auth == "basic":
        raw = f"{client.login}:{client.secret}".encode()
        headers.append(("Authorization", "Basic " + base64.b64encode(raw).decode("ascii")))
    elif spec.auth == "bearer":
        headers.append(_header_safe("Authorization", "Bearer " + _fill(spec.auth_value, values)))
    elif spec.auth == "header":
        assert spec.auth_header is not None
        headers.append(_header_safe(spec.auth_header, _fill(spec.auth_value, values)))
    for name, template in spec.headers:
        headers.append(_header_safe(name, _fill(template, values)))
    if spec.body == "json":
        body = {k: _json_value(v, client, values) for k, v in spec.fields.items}
        return PreparedRequest(spec.method, path, tuple(headers), json=body)
    pairs = tuple((k, _flat_value(v, values)) for k, v in spec.fields.items)
    if spec.body == "form":
        return PreparedRequest(spec.method, path, tuple(headers), form=pairs)
    if spec.body == "query" and pairs:
        path += ("&" if "?" in path else "?") + urlencode(pairs)
    return PreparedRequest(spec.method, path, tuple(headers))


# -- the answer ----------------------------------------------------------------------


def retry_after_seconds(value: str | None) -> float:
    """``Retry-After`` in seconds: 0 when absent, negative or an HTTP date (we do not
    trust the server's clock; the client's backoff applies), at most an hour."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        return 0.0
    if seconds != seconds:  # NaN
        return 0.0
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


def _string_at(path: JsonPath, key: str, doc: object) -> str:
    value = path.search(doc)
    if not isinstance(value, str) or not value:
        raise BadAnswer(
            f"[response] {key} = {path.expression!r} finds {kind_of(value)} in the answer"
        )
    return value


def _ms_at(path: JsonPath, key: str, doc: object) -> int:
    value = path.search(doc)
    ms: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        ms = value
    elif isinstance(value, float) and value.is_integer():
        ms = int(value)
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        ms = int(value)  # some AppServers send times as strings
    if ms is None or ms <= 0:
        raise BadAnswer(
            f"[response] {key} = {path.expression!r} finds {kind_of(value)}, not a time in ms"
        )
    return ms


def _seconds_at(path: JsonPath, key: str, doc: object) -> float:
    value = path.search(doc)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1e10:
        raise BadAnswer(
            f"[response] {key} = {path.expression!r} finds {kind_of(value)}, not seconds"
        )
    return float(value)


def _message(spec: ResponseSpec, doc: object, status: int) -> str:
    text: object = None
    if spec.message is not None:
        text = spec.message.search(doc)
    elif isinstance(doc, dict):
        text = next((doc[k] for k in _MESSAGE_KEYS if isinstance(doc.get(k), str)), None)
    if isinstance(text, str) and text:
        return f"HTTP {status}: {text[:_MAX_MESSAGE]}"
    return f"HTTP {status}"


def error_for_status(status: int, message: str, retry_after: float = 0.0) -> AskError:
    """What a non-2xx status means to a client: 401 who are you; other 4xx no; 408, 429
    and 5xx not now."""
    if status == 401:
        return Unauthenticated(message, status=status)
    if status in (408, 429) or status >= 500:
        return Unavailable(message, status=status, retry_after=retry_after)
    if 400 <= status < 500:
        return Refused(message, status=status)
    return BadAnswer(f"{message} (not an answer a token request expects)", status=status)


def read_answer(
    spec: ResponseSpec,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now_ms: int,
) -> Credentials:
    """The credentials in a 2xx answer; the matching :class:`AskError` otherwise."""
    doc: object = None
    parsed = True
    try:
        doc = loads_json(body) if body else None
    except (ValueError, JsonTooDeep):
        parsed = False
    if not 200 <= status < 300:
        retry_after = retry_after_seconds(headers.get("Retry-After"))
        raise error_for_status(status, _message(spec, doc, status), retry_after)
    if not parsed or doc is None:
        raise BadAnswer(f"HTTP {status}: the answer is not JSON", status=status)
    username = _string_at(spec.username, "username", doc)
    password = _string_at(spec.password, "password", doc)
    expire_ms: int | None = None
    if spec.expire_ms is not None:
        expire_ms = _ms_at(spec.expire_ms, "expire_ms", doc)
    elif spec.expires_in_s is not None:
        expire_ms = now_ms + round(_seconds_at(spec.expires_in_s, "expires_in_s", doc) * 1000)
    stale = False
    if spec.stale is not None:
        value = spec.stale.search(doc)
        if value is not None and not isinstance(value, bool):
            raise BadAnswer(
                f"[response] stale = {spec.stale.expression!r} finds {kind_of(value)}, "
                "not a boolean"
            )
        stale = bool(value)
    return Credentials(username=username, password=password, expire_ms=expire_ms, stale=stale)
