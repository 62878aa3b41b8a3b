"""Reading an adapter file (pure): TOML text in, an :class:`~.model.Adapter` out, or ONE
:class:`~.errors.AdapterFileError` naming the file, the line and the key.

The keys, their defaults and what each does are in docs/your-appserver.md; the shape
below (the one users write by hand) always parses::

    [request]
    method = "POST"
    url = "/api/mqtt/token"
    auth = "basic"              # basic | bearer | header | field | none
    body = "json"               # json | form | query | none
    [request.fields]
    device = "{client_id}"
    key = "{secret}"
    topics = "{resources}"
    access = "{actions}"
    [response]
    username = "mqtt.username"  # JMESPath
    password = "mqtt.password"
    expire_ms = "mqtt.expireAt"
    [clients]
    id = "GID_shop@@@dev-{n}"
    secret = "secret-{n}"
    resources = ["shop/dev-{n}/#"]
    forbidden = ["shop/other/#"]

Response paths are JMESPath (https://jmespath.org), compiled here, so a typo is an error
at load time, not a missing token at run time.
"""

from __future__ import annotations

import difflib
import re
import string
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import jmespath
import jmespath.exceptions

from sim.shared.protocol import parse_actions, render_actions, validate_client_id, validate_filter
from sim.shared.protocol.errors import WireFormatError

from .errors import AdapterFileError, kind_of
from .model import (
    ASK_FIELDS,
    CLIENT_FIELDS,
    Adapter,
    AuthScheme,
    BodyKind,
    ClientTemplates,
    FieldList,
    FieldTable,
    FieldValue,
    JsonPath,
    RequestSpec,
    ResponseSpec,
)

__all__ = ["BUILTIN_TOML", "builtin_adapter", "check_template", "parse_adapter"]

METHODS = ("GET", "POST", "PUT", "PATCH")
AUTH_SCHEMES: tuple[AuthScheme, ...] = ("basic", "bearer", "header", "field", "none")
BODY_KINDS: tuple[BodyKind, ...] = ("json", "form", "query", "none")
MAX_TIMEOUT_S = 300.0
MAX_CLIENTS = 10_000_000

_TABLES = {
    (): ("adapter", "request", "response", "clients"),
    ("adapter",): ("name", "ask", "provision"),
    ("request",): (
        "method",
        "url",
        "auth",
        "body",
        "fields",
        "headers",
        "auth_header",
        "auth_value",
        "timeout_s",
    ),
    ("response",): ("username", "password", "expire_ms", "expires_in_s", "stale", "message"),
    ("clients",): (
        "id",
        "secret",
        "account",
        "resources",
        "forbidden",
        "actions",
        "first",
        "count",
    ),
}
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
_CALLABLE = re.compile(r"[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
_TABLE_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(?:#.*)?$")

#: The reference AppServer's ``POST /v1/tokens`` (docs/appserver.md), written as any
#: user writes an adapter: the built-in adapter is just this file.
BUILTIN_TOML = """\
[adapter]
name = "builtin"
provision = "sim.customer.adapter.builtin:provision"

[request]
method = "POST"
url = "/v1/tokens"
auth = "basic"
body = "json"

[request.fields]
resources = "{resources}"
actions = "{actions}"

[response]
username = "username"
password = "password"
expire_ms = "expireTime"
stale = "stale"
message = "message"

[clients]
id = "GID_check@@@dev-{n}"
secret = "check-secret-{n}"
resources = ["devices/check-{n}/#"]
forbidden = ["devices/others/#"]
"""


def builtin_adapter() -> Adapter:
    """The reference AppServer's adapter (``--adapter builtin``, the default)."""
    return parse_adapter(BUILTIN_TOML, source="builtin")


# -- templates -----------------------------------------------------------------------


def check_template(text: str, allowed: Iterable[str]) -> tuple[str, ...]:
    """The placeholders of ``text``; :class:`ValueError` for anything but ``{name}`` of
    ``allowed`` (``{{``/``}}`` are literal braces)."""
    allowed = tuple(allowed)
    names: list[str] = []
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in allowed:
            hint = difflib.get_close_matches(name, allowed, n=1)
            known = ", ".join("{" + a + "}" for a in allowed)
            guess = f" (did you mean {{{hint[0]}}}?)" if hint else ""
            raise ValueError(f"unknown placeholder {{{name}}}{guess}: use {known}")
        if spec or conversion:
            raise ValueError(f"placeholder {{{name}}} takes no format or conversion")
        names.append(name)
    return tuple(names)


# -- the parser ----------------------------------------------------------------------


@dataclass
class _Reader:
    """Finds the line of a key and raises one error naming it."""

    source: str
    lines: list[str]

    def line_of(self, table: tuple[str, ...], key: str | None) -> int | None:
        current: tuple[str, ...] = ()
        header_line: int | None = None
        for number, line in enumerate(self.lines, 1):
            m = _TABLE_HEADER.match(line)
            if m:
                current = tuple(p.strip().strip('"') for p in m.group(1).split("."))
                if current == table:
                    header_line = number
                    if key is None:
                        return number
                continue
            key_line = rf'^\s*(?:{re.escape(key or "")}|"{re.escape(key or "")}")\s*='
            if key is not None and current == table and re.match(key_line, line):
                return number
        if key is not None:  # a table of that name: [key] or [key.sub] under ``table``
            for number, line in enumerate(self.lines, 1):
                m = _TABLE_HEADER.match(line)
                if m:
                    path = tuple(p.strip().strip('"') for p in m.group(1).split("."))
                    if path[: len(table) + 1] == (*table, key):
                        return number
        if key is not None:  # dotted keys or inline tables: the first plausible line
            dotted = ".".join((*table, key))
            for number, line in enumerate(self.lines, 1):
                if re.match(rf"^\s*{re.escape(dotted)}\s*=", line):
                    return number
        return header_line

    def fail(self, table: tuple[str, ...], key: str | None, message: str) -> NoReturn:
        where = f"[{'.'.join(table)}]" if table else ""
        name = f"{where} {key}".strip() if key else where
        raise AdapterFileError(message, source=self.source, line=self.line_of(table, key), key=name)


def _kind(value: object) -> str:
    return kind_of(value, mapping="a table")


def parse_adapter(text: str, *, source: str = "<adapter>", base_dir: str | None = None) -> Adapter:
    """Parse and check an adapter file; raise :class:`AdapterFileError` on the first
    mistake."""
    reader = _Reader(source, text.splitlines())
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(m.group(1)) if m else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc)) or "invalid TOML"
        raise AdapterFileError(f"not valid TOML: {msg}", source=source, line=line) from None
    _unknown_keys(reader, (), doc)
    for table in ("adapter", "request", "response", "clients"):
        if table in doc and not isinstance(doc[table], dict):
            reader.fail((), table, f"must be a table [{table}], got {_kind(doc[table])}")
    meta: dict[str, Any] = doc.get("adapter", {})
    _unknown_keys(reader, ("adapter",), meta)
    name = _string(reader, ("adapter",), meta, "name", default=_default_name(source))
    ask = _callable(reader, meta, "ask")
    provision = _callable(reader, meta, "provision")

    request = response = None
    if ask is not None:
        for table in ("request", "response"):
            if table in doc:
                reader.fail(
                    (table,), None, "[adapter] ask replaces [request] and [response]: give one"
                )
    else:
        if "request" not in doc:
            reader.fail((), None, 'no [request] table (or [adapter] ask = "module:function")')
        request = _request(reader, doc["request"])
        if "response" not in doc:
            reader.fail((), None, 'no [response] table (or [adapter] ask = "module:function")')
        response = _response(reader, doc["response"])
    clients = _clients(reader, doc["clients"]) if "clients" in doc else None
    return Adapter(
        name=name or "adapter",
        source=source,
        request=request,
        response=response,
        ask=ask,
        provision=provision,
        clients=clients,
        base_dir=base_dir,
    )


def _default_name(source: str) -> str:
    base = source.replace("\\", "/").rsplit("/", 1)[-1]
    return base.removesuffix(".toml") or "adapter"


def _unknown_keys(reader: _Reader, table: tuple[str, ...], values: Mapping[str, object]) -> None:
    known = _TABLES[table]
    for key in values:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            guess = f" (did you mean {hint[0]!r}?)" if hint else ""
            what = f"[{'.'.join(table)}]" if table else "the file"
            reader.fail(table, key, f"unknown key{guess}; {what} takes {', '.join(sorted(known))}")


def _string(
    reader: _Reader,
    table: tuple[str, ...],
    values: Mapping[str, object],
    key: str,
    *,
    default: str | None = None,
    required: bool = False,
) -> str | None:
    if key not in values:
        if required:
            reader.fail(table, None, f"{key!r} is required")
        return default
    value = values[key]
    if not isinstance(value, str):
        reader.fail(table, key, f"must be a string, got {_kind(value)}")
    return value


def _choice(
    reader: _Reader,
    table: tuple[str, ...],
    values: Mapping[str, object],
    key: str,
    choices: tuple[str, ...],
    default: str,
    *,
    normalise: Callable[[str], str] = str.lower,
) -> str:
    raw = _string(reader, table, values, key, default=default)
    assert raw is not None
    value = normalise(raw)
    if value not in choices:
        reader.fail(table, key, f"must be one of {' | '.join(choices)}, got {raw!r}")
    return value


def _template(
    reader: _Reader, table: tuple[str, ...], key: str, text: str, allowed: tuple[str, ...]
) -> tuple[str, ...]:
    try:
        return check_template(text, allowed)
    except ValueError as exc:
        reader.fail(table, key, f"{text!r}: {exc}")


def _callable(reader: _Reader, meta: Mapping[str, object], key: str) -> str | None:
    value = _string(reader, ("adapter",), meta, key)
    if value is not None and not _CALLABLE.fullmatch(value):
        reader.fail(("adapter",), key, f"must be 'module:function', got {value!r}")
    return value


def _request(reader: _Reader, raw: dict[str, Any]) -> RequestSpec:
    t = ("request",)
    _unknown_keys(reader, t, raw)
    method = _choice(reader, t, raw, "method", METHODS, "POST", normalise=str.upper)
    url = _string(reader, t, raw, "url", required=True)
    assert url is not None
    if not url.startswith("/"):
        reader.fail(
            t, "url", f"must be a path starting with / (joined to the AppServer URL), got {url!r}"
        )
    _template(reader, t, "url", url, ASK_FIELDS)
    auth = cast(AuthScheme, _choice(reader, t, raw, "auth", AUTH_SCHEMES, "basic"))
    default_body = "query" if method == "GET" else "json"
    body = cast(BodyKind, _choice(reader, t, raw, "body", BODY_KINDS, default_body))
    if method == "GET" and body in ("json", "form"):
        reader.fail(t, "body", f'a GET request has no body: use body = "query", not {body!r}')

    auth_header = _string(reader, t, raw, "auth_header")
    if auth == "header":
        if auth_header is None:
            reader.fail(t, None, 'auth = "header" needs auth_header = "<header name>"')
        if not _HEADER_NAME.fullmatch(auth_header):
            reader.fail(t, "auth_header", f"not a header name: {auth_header!r}")
    elif auth_header is not None:
        reader.fail(t, "auth_header", f'only for auth = "header" (auth is {auth!r})')
    auth_value = _string(reader, t, raw, "auth_value", default="{secret}")
    assert auth_value is not None
    if "auth_value" in raw and auth not in ("header", "bearer"):
        reader.fail(t, "auth_value", f'only for auth = "header" or "bearer" (auth is {auth!r})')
    _template(reader, t, "auth_value", auth_value, ASK_FIELDS)

    timeout = raw.get("timeout_s", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        reader.fail(t, "timeout_s", f"must be a number of seconds, got {_kind(timeout)}")
    if not 0 < timeout <= MAX_TIMEOUT_S:
        reader.fail(t, "timeout_s", f"must be within 0..{MAX_TIMEOUT_S:g} s, got {timeout}")

    headers: list[tuple[str, str]] = []
    raw_headers = raw.get("headers", {})
    if not isinstance(raw_headers, dict):
        reader.fail(t, "headers", f"must be a table [request.headers], got {_kind(raw_headers)}")
    ht = ("request", "headers")
    for name, value in raw_headers.items():
        if not _HEADER_NAME.fullmatch(name):
            reader.fail(ht, name, "not a header name")
        if not isinstance(value, str):
            reader.fail(ht, name, f"must be a string, got {_kind(value)}")
        low = name.lower()
        if low == "authorization" and auth in ("basic", "bearer"):
            reader.fail(ht, name, f"auth = {auth!r} sets Authorization already")
        if auth_header is not None and low == auth_header.lower():
            reader.fail(ht, name, "auth_header sets this header already")
        _template(reader, ht, name, value, ASK_FIELDS)
        headers.append((name, value))

    raw_fields = raw.get("fields", {})
    if not isinstance(raw_fields, dict):
        reader.fail(t, "fields", f"must be a table [request.fields], got {_kind(raw_fields)}")
    if body == "none" and raw_fields:
        reader.fail(("request", "fields"), None, 'body = "none" sends no fields')
    fields = _field_table(reader, ("request", "fields"), raw_fields, nested_ok=body == "json")
    used = set(_placeholders(fields))
    if auth == "field" and "secret" not in used:
        reader.fail(
            ("request", "fields"),
            None,
            'auth = "field" needs a field that carries the secret, e.g. key = "{secret}"',
        )
    return RequestSpec(
        method=method,
        url=url,
        auth=auth,
        body=body,
        fields=fields,
        headers=tuple(headers),
        auth_header=auth_header,
        auth_value=auth_value,
        timeout_s=float(timeout),
    )


def _field_value(
    reader: _Reader, table: tuple[str, ...], key: str, value: object, *, nested_ok: bool
) -> FieldValue:
    if isinstance(value, str):
        _template(reader, table, key, value, ASK_FIELDS)
        return value
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, list):
        return FieldList(
            tuple(_field_value(reader, table, key, v, nested_ok=nested_ok) for v in value)
        )
    if isinstance(value, dict):
        if not nested_ok:
            reader.fail(table, key, 'a nested table needs body = "json"')
        return _field_table(reader, (*table, key), value, nested_ok=True)
    reader.fail(table, key, f"must be a string, number, boolean, list or table, got {_kind(value)}")


def _field_table(
    reader: _Reader, table: tuple[str, ...], raw: Mapping[str, object], *, nested_ok: bool
) -> FieldTable:
    return FieldTable(
        tuple(
            (key, _field_value(reader, table, key, value, nested_ok=nested_ok))
            for key, value in raw.items()
        )
    )


def _placeholders(value: FieldValue) -> Iterable[str]:
    if isinstance(value, str):
        yield from check_template(value, ASK_FIELDS)
    elif isinstance(value, FieldList):
        for item in value.items:
            yield from _placeholders(item)
    elif isinstance(value, FieldTable):
        for _, item in value.items:
            yield from _placeholders(item)


def _path(
    reader: _Reader, raw: Mapping[str, object], key: str, *, required: bool
) -> JsonPath | None:
    t = ("response",)
    expression = _string(reader, t, raw, key, required=required)
    if expression is None:
        return None
    try:
        compiled = jmespath.compile(expression)
    except jmespath.exceptions.JMESPathError as exc:
        first = str(exc).strip().splitlines()[0].removesuffix(", for expression:")
        reader.fail(t, key, f"{expression!r} is not a JMESPath expression: {first}")
    return JsonPath(expression, compiled)


def _response(reader: _Reader, raw: dict[str, Any]) -> ResponseSpec:
    t = ("response",)
    _unknown_keys(reader, t, raw)
    for key in ("username", "password"):
        if key not in raw:
            reader.fail(t, None, f"{key!r} is required: the JMESPath of the MQTT {key}")
    if "expire_ms" in raw and "expires_in_s" in raw:
        reader.fail(t, "expires_in_s", "give expire_ms or expires_in_s, not both")
    username = _path(reader, raw, "username", required=True)
    password = _path(reader, raw, "password", required=True)
    assert username is not None and password is not None
    return ResponseSpec(
        username=username,
        password=password,
        expire_ms=_path(reader, raw, "expire_ms", required=False),
        expires_in_s=_path(reader, raw, "expires_in_s", required=False),
        stale=_path(reader, raw, "stale", required=False),
        message=_path(reader, raw, "message", required=False),
    )


def _filters(
    reader: _Reader, raw: Mapping[str, object], key: str, *, required: bool
) -> tuple[str, ...]:
    t = ("clients",)
    if key not in raw:
        if required:
            reader.fail(t, None, f"{key!r} is required: a list of topic filters with {{n}}")
        return ()
    value = raw[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        reader.fail(t, key, f"must be a list of strings, got {_kind(value)}")
    if required and not value:
        reader.fail(t, key, "needs at least one topic filter")
    items = tuple(cast(list[str], value))
    for item in items:
        _template(reader, t, key, item, CLIENT_FIELDS)
        example = item.format_map({"n": "1"})
        try:
            validate_filter(example)
        except WireFormatError as exc:
            reader.fail(t, key, f"{item!r} gives {example!r} for n = 1: {exc}")
    return items


def _int(
    reader: _Reader, raw: Mapping[str, object], key: str, default: int, low: int, high: int
) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        reader.fail(("clients",), key, f"must be an integer, got {_kind(value)}")
    if not low <= value <= high:
        reader.fail(("clients",), key, f"must be within {low}..{high}, got {value}")
    return value


def _clients(reader: _Reader, raw: dict[str, Any]) -> ClientTemplates:
    t = ("clients",)
    _unknown_keys(reader, t, raw)
    ident = _string(reader, t, raw, "id", required=True)
    secret = _string(reader, t, raw, "secret", required=True)
    account = _string(reader, t, raw, "account")
    assert ident is not None and secret is not None
    for key, text in (("id", ident), ("secret", secret), ("account", account)):
        if text is not None:
            _template(reader, t, key, text, CLIENT_FIELDS)
    if "{n}" not in ident:
        reader.fail(t, "id", f"{ident!r} needs {{n}}: every client has its own id")
    try:
        validate_client_id(ident.format_map({"n": "1"}))
    except WireFormatError as exc:
        reader.fail(t, "id", f"{ident!r} gives an invalid MQTT client id for n = 1: {exc}")
    actions_text = _string(reader, t, raw, "actions", default="R,W")
    assert actions_text is not None
    try:
        actions = render_actions(parse_actions(actions_text))
    except (WireFormatError, ValueError) as exc:
        reader.fail(t, "actions", f"{actions_text!r}: {exc}")
    return ClientTemplates(
        id=ident,
        secret=secret,
        resources=_filters(reader, raw, "resources", required=True),
        forbidden=_filters(reader, raw, "forbidden", required=False),
        actions=actions,
        account=account,
        first=_int(reader, raw, "first", 1, 0, MAX_CLIENTS),
        count=_int(reader, raw, "count", 1000, 1, MAX_CLIENTS),
    )
