"""Adapter files (pure): the issue's shape parses as written, the built-in adapter is a
file like any other, and every kind of mistake is ONE line naming the file, the line
and the key."""

from __future__ import annotations

import contextlib
import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.customer.adapter import AdapterFileError, load_adapter, parse_adapter
from sim.customer.adapter.model import FieldList, FieldTable
from sim.customer.adapter.parse import BUILTIN_TOML

from .conftest import ADAPTER

#: The adapter exactly as users are shown it (docs/your-appserver.md, the issue).
AS_WRITTEN = """\
[request]
method = "POST"
url = "/api/mqtt/token"     # joined to the AppServer URL given on the command line
auth = "basic"              # basic (client id : secret) | bearer (secret) | none
body = "json"               # json | form | query
[request.fields]
device = "{client_id}"
key = "{secret}"
topics = "{resources}"      # a list in json, comma-joined in form and query
access = "{actions}"        # R | W | R,W
[response]
username = "mqtt.username"  # JMESPath into the JSON answer
password = "mqtt.password"
expire_ms = "mqtt.expireAt" # optional
[clients]                   # who may ask, for checks and fleets
id = "GID_shop@@@dev-{n}"
secret = "secret-{n}"
resources = ["shop/dev-{n}/#"]
forbidden = ["shop/other/#"]
"""


def test_the_shape_as_written_parses() -> None:
    a = parse_adapter(AS_WRITTEN, source="shop.toml")
    assert a.name == "shop" and a.request is not None and a.response is not None
    assert (a.request.method, a.request.url, a.request.auth, a.request.body) == (
        "POST",
        "/api/mqtt/token",
        "basic",
        "json",
    )
    assert [k for k, _ in a.request.fields.items] == ["device", "key", "topics", "access"]
    assert a.response.expire_ms is not None and a.response.expire_ms.expression == "mqtt.expireAt"
    assert a.clients is not None
    c = a.clients.identity(7)
    assert (c.client_id, c.secret, c.resources) == (
        "GID_shop@@@dev-7",
        "secret-7",
        ("shop/dev-7/#",),
    )
    assert a.clients.forbidden_for(7) == ("shop/other/#",)
    assert "secret-7" not in repr(c)  # secrets stay out of logs


def test_the_worked_example_and_the_builtin_adapter_load() -> None:
    foreign = load_adapter(ADAPTER)
    assert foreign.clients is not None and foreign.clients.count == 200
    builtin = load_adapter("builtin")
    assert builtin.is_builtin and builtin.request is not None
    assert builtin.request.url == "/v1/tokens"
    assert builtin.provision == "sim.customer.adapter.builtin:provision"
    assert parse_adapter(BUILTIN_TOML, source="builtin") == builtin


def test_nested_and_literal_fields_parse_for_json() -> None:
    a = parse_adapter(
        AS_WRITTEN.replace(
            'access = "{actions}"        # R | W | R,W',
            'access = "{actions}"\nversion = 2\nwho = ["{client_id}", true]\n'
            '[request.fields.meta]\nsource = "sim"',
        )
    )
    assert a.request is not None
    fields = dict(a.request.fields.items)
    assert fields["version"] == 2
    assert fields["who"] == FieldList(("{client_id}", True))
    assert fields["meta"] == FieldTable((("source", "sim"),))


def edit(old: str, new: str) -> str:
    assert old in AS_WRITTEN, old
    return AS_WRITTEN.replace(old, new)


MISTAKES = [
    # (file text, the line named, what the message says)
    (edit('body = "json"', 'body = "json'), 5, "not valid TOML"),
    (edit("[clients]", "[clientz]"), 15, "unknown key (did you mean 'clients'?)"),
    (edit("method =", "methd ="), 2, "[request] methd: unknown key (did you mean 'method'?)"),
    (
        edit('method = "POST"', "method = 5"),
        2,
        "[request] method: must be a string, got an integer",
    ),
    (edit('method = "POST"', 'method = "FETCH"'), 2, "[request] method: must be one of GET | POST"),
    (edit('auth = "basic"', 'auth = "basik"'), 4, "[request] auth: must be one of basic | bearer"),
    (edit('body = "json"', 'body = "xml"'), 5, "[request] body: must be one of json | form"),
    (edit('url = "/api/mqtt/token"', 'url = "api/mqtt/token"'), 3, "[request] url: must be a path"),
    (edit('url = "/api/mqtt/token"', "timeout_s = 9"), 1, "[request]: 'url' is required"),
    (
        edit('"{client_id}"', '"{clientid}"'),
        7,
        "unknown placeholder {clientid} (did you mean {client_id}?)",
    ),
    (edit('"{secret}"', '"{secret:>9}"'), 8, "placeholder {secret} takes no format or conversion"),
    (edit('"{secret}"', '"{secret"'), 8, "[request.fields] key: '{secret': "),
    (edit('auth = "basic"', 'auth = "header"'), 1, 'auth = "header" needs auth_header'),
    (
        edit('auth = "basic"', 'auth = "header"\nauth_header = "X Key"'),
        5,
        "[request] auth_header: not a header name",
    ),
    (
        edit('auth = "basic"', 'auth = "basic"\nauth_value = "{secret}"'),
        5,
        "[request] auth_value: only for auth",
    ),
    (
        edit('auth = "basic"', 'auth = "field"').replace('key = "{secret}"', 'key = "x"'),
        6,
        'auth = "field" needs a field that carries the secret',
    ),
    (edit('method = "POST"', 'method = "GET"'), 5, "[request] body: a GET request has no body"),
    (edit('body = "json"', 'body = "none"'), 6, 'body = "none" sends no fields'),
    (
        edit('body = "json"', 'body = "form"') + "[request.fields.x]\n",
        20,
        "a nested table needs body",
    ),
    (
        edit('body = "json"', 'body = "json"\n[request.headers]\nAuthorization = "x"'),
        7,
        "[request.headers] Authorization: auth = 'basic' sets Authorization",
    ),
    (
        edit('body = "json"', 'body = "json"\ntimeout_s = 0'),
        6,
        "[request] timeout_s: must be within 0..300",
    ),
    (
        edit('body = "json"', 'body = "json"\ntimeout_s = "9"'),
        6,
        "[request] timeout_s: must be a number",
    ),
    (
        edit('username = "mqtt.username"  # JMESPath into the JSON answer', ""),
        11,
        "[response]: 'username' is required",
    ),
    (
        edit('"mqtt.password"', '"mqtt..password"'),
        13,
        "[response] password: 'mqtt..password' is not a JMESPath expression",
    ),
    (
        edit('expire_ms = "mqtt.expireAt" # optional', 'expire_ms = "a"\nexpires_in_s = "b"'),
        15,
        "give expire_ms or expires_in_s, not both",
    ),
    (
        edit('id = "GID_shop@@@dev-{n}"', 'id = "GID_shop@@@dev"'),
        16,
        "[clients] id: 'GID_shop@@@dev' needs {n}",
    ),
    (
        edit('id = "GID_shop@@@dev-{n}"', 'id = "shop-{n}"'),
        16,
        "[clients] id: 'shop-{n}' gives an invalid MQTT client id",
    ),
    (
        edit('secret = "secret-{n}"', 'secret = "secret-{id}"'),
        17,
        "[clients] secret: 'secret-{id}': unknown placeholder {id}",
    ),
    (
        edit('["shop/dev-{n}/#"]', '["shop/#/dev-{n}"]'),
        18,
        "[clients] resources: 'shop/#/dev-{n}' gives 'shop/#/dev-1' for n = 1",
    ),
    (
        edit('resources = ["shop/dev-{n}/#"]', "resources = []"),
        18,
        "[clients] resources: needs at least one",
    ),
    (
        edit('forbidden = ["shop/other/#"]', "forbidden = 3"),
        19,
        "[clients] forbidden: must be a list of strings",
    ),
    (AS_WRITTEN + 'actions = "RW"\n', 20, "[clients] actions: 'RW': actions must be R, W or R,W"),
    (AS_WRITTEN + "count = 0\n", 20, "[clients] count: must be within 1.."),
    (AS_WRITTEN + "first = 1.5\n", 20, "[clients] first: must be an integer, got a number"),
    ('[adapter]\nask = "not a callable"\n', 2, "[adapter] ask: must be 'module:function'"),
    (
        '[adapter]\nask = "m:f"\n' + AS_WRITTEN,
        3,
        "[request]: [adapter] ask replaces [request] and [response]",
    ),
    (
        '[clients]\nid = "GID_shop@@@{n}"\nsecret = "s"\nresources = ["a/{n}"]\n',
        None,
        "no [request] table",
    ),
    ("request = 3\n", 1, "request: must be a table [request], got an integer"),
]


@pytest.mark.parametrize(("text", "line", "message"), MISTAKES)
def test_each_mistake_is_one_line_naming_the_key(text: str, line: int | None, message: str) -> None:
    with pytest.raises(AdapterFileError) as info:
        parse_adapter(text, source="shop.toml")
    err = str(info.value)
    assert "\n" not in err
    where = "shop.toml" if line is None else f"shop.toml:{line}:"
    assert err.startswith(where), err
    assert message in err, err
    assert info.value.line == line


def test_loading_names_the_file_and_the_callable(tmp_path: Path) -> None:
    with pytest.raises(AdapterFileError, match=r"nowhere\.toml: cannot read the adapter file"):
        load_adapter(tmp_path / "nowhere.toml")
    (tmp_path / "sync_mod.py").write_text("def ask(session, url, client):\n    return None\n")
    for spec, message in (
        ("no_such_mod_xyz:ask", "cannot import 'no_such_mod_xyz'"),
        ("sync_mod:nothing", "module 'sync_mod' has no 'nothing'"),
        ("sync_mod:ask", "sync_mod:ask must be an async function"),
    ):
        path = tmp_path / "a.toml"
        path.write_text(
            textwrap.dedent(f"""\
            [adapter]
            ask = "{spec}"
            [clients]
            id = "GID_shop@@@d-{{n}}"
            secret = "s"
            resources = ["a/{{n}}/#"]
            """)
        )
        with pytest.raises(AdapterFileError) as info:
            load_adapter(path)
        assert str(info.value).startswith(f"{path}: [adapter] ask: "), info.value
        assert message in str(info.value)


def test_the_documented_worked_example_is_the_foreign_appservers_adapter() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "your-appserver.md").read_text()
    block = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    documented = parse_adapter(block, source="doc")
    real = load_adapter(ADAPTER)
    assert (documented.request, documented.response, documented.clients) == (
        real.request,
        real.response,
        real.clients,
    )


@given(st.text(max_size=300))
def test_any_text_is_an_adapter_or_one_adapter_file_error(text: str) -> None:
    with contextlib.suppress(AdapterFileError):
        parse_adapter(text)


toml_values = st.recursive(
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=6,
)


@given(st.sampled_from(AS_WRITTEN.splitlines()), toml_values)
def test_any_value_of_any_key_is_accepted_or_named(line: str, value: object) -> None:
    if "=" not in line or line.startswith("["):
        return
    key = line.split("=", 1)[0].strip()
    text = AS_WRITTEN.replace(line, f"{key} = {json.dumps(value)}")
    try:
        parse_adapter(text, source="x.toml")
    except AdapterFileError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("x.toml")
