"""What an adapter is (pure): how to ask one AppServer for a token, and who may ask.

An :class:`Adapter` holds a :class:`RequestSpec` (the HTTP request: method, URL, how the
device authenticates, the body's fields as templates), a :class:`ResponseSpec` (JMESPath
expressions into the JSON answer) -- or, instead of both, a Python callable named
``module:function`` -- and the :class:`ClientTemplates` of the clients that may ask (for
checks and fleets).  Parsed from a TOML file by :mod:`.parse`; rendered into a request
and read back by :mod:`.render`.  docs/your-appserver.md describes every key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from sim.shared.protocol import validate_client_id

__all__ = [
    "ASK_FIELDS",
    "CLIENT_FIELDS",
    "Adapter",
    "AuthScheme",
    "BodyKind",
    "ClientIdentity",
    "ClientTemplates",
    "Credentials",
    "FieldList",
    "FieldTable",
    "FieldValue",
    "JsonPath",
    "RequestSpec",
    "ResponseSpec",
]

AuthScheme = Literal["basic", "bearer", "header", "field", "none"]
BodyKind = Literal["json", "form", "query", "none"]

#: Placeholders of the request's templates: who asks, and for what.
ASK_FIELDS = ("client_id", "account", "secret", "resources", "actions")
#: Placeholders of the ``[clients]`` templates: the client's number.
CLIENT_FIELDS = ("n",)


@dataclass(frozen=True)
class FieldList:
    """A list in the request body (``[...]`` in the file)."""

    items: tuple[FieldValue, ...]


@dataclass(frozen=True)
class FieldTable:
    """A table of fields (``[request.fields]``, or a nested one for JSON bodies), in
    file order."""

    items: tuple[tuple[str, FieldValue], ...] = ()


#: A field of the request body: a template (str), a literal, a list or a table of them.
FieldValue: TypeAlias = "str | int | float | bool | FieldList | FieldTable"


@dataclass(frozen=True)
class JsonPath:
    """A JMESPath expression into the AppServer's JSON answer, compiled once."""

    expression: str
    compiled: Any = field(compare=False, repr=False, hash=False)

    def search(self, document: object) -> object:
        result: object = self.compiled.search(document)
        return result


@dataclass(frozen=True)
class RequestSpec:
    method: str
    #: joined to the AppServer URL; placeholders are URL-encoded
    url: str
    auth: AuthScheme
    body: BodyKind
    #: the body's (or, for ``body = "query"``, the query string's) fields, in file order
    fields: FieldTable = FieldTable()
    #: extra headers: (name, template)
    headers: tuple[tuple[str, str], ...] = ()
    #: ``auth = "header"``: the header that carries the credential
    auth_header: str | None = None
    #: ``auth = "header"`` / ``"bearer"``: the credential's template
    auth_value: str = "{secret}"
    #: real seconds for the whole exchange
    timeout_s: float = 10.0


@dataclass(frozen=True)
class ResponseSpec:
    username: JsonPath
    password: JsonPath
    #: absolute expiry, milliseconds since the epoch (SPEC §3a's ``expireTime``)
    expire_ms: JsonPath | None = None
    #: or: seconds of life from the moment of the answer
    expires_in_s: JsonPath | None = None
    #: true when the AppServer served a cached token because the AuthServer failed
    stale: JsonPath | None = None
    #: where an error answer says what is wrong
    message: JsonPath | None = None


@dataclass(frozen=True)
class ClientIdentity:
    """One client as it asks: MQTT client id, AppServer login and secret, permissions."""

    client_id: str
    secret: str = field(repr=False)
    resources: tuple[str, ...]
    actions: str = "R,W"
    #: the AppServer login, when it is not the MQTT client id
    account: str | None = None

    @property
    def login(self) -> str:
        return self.account or self.client_id


@dataclass(frozen=True)
class ClientTemplates:
    """``[clients]``: the clients that exist on the AppServer, numbered ``first`` ..
    ``first + count - 1``; ``{n}`` in each template is the number."""

    id: str
    secret: str = field(repr=False)
    resources: tuple[str, ...]
    forbidden: tuple[str, ...] = ()
    actions: str = "R,W"
    account: str | None = None
    first: int = 1
    count: int = 1000

    def numbers(self) -> range:
        return range(self.first, self.first + self.count)

    def identity(self, n: int | str) -> ClientIdentity:
        """Client number ``n`` (any text for a client the AppServer does not know)."""
        values = {"n": str(n)}
        client_id = self.id.format_map(values)
        validate_client_id(client_id)
        return ClientIdentity(
            client_id=client_id,
            secret=self.secret.format_map(values),
            resources=tuple(r.format_map(values) for r in self.resources),
            actions=self.actions,
            account=None if self.account is None else self.account.format_map(values),
        )

    def resources_for(self, n: int | str) -> tuple[str, ...]:
        values = {"n": str(n)}
        return tuple(r.format_map(values) for r in self.resources)

    def forbidden_for(self, n: int | str) -> tuple[str, ...]:
        values = {"n": str(n)}
        return tuple(r.format_map(values) for r in self.forbidden)


@dataclass(frozen=True)
class Credentials:
    """What the AppServer handed out, ready for CONNECT (SPEC §4)."""

    username: str
    password: str = field(repr=False)
    #: ms since the epoch; None when the answer does not say
    expire_ms: int | None
    #: served from the AppServer's disaster-recovery cache
    stale: bool = False


@dataclass(frozen=True)
class Adapter:
    """How to ask one AppServer for a token (docs/your-appserver.md)."""

    name: str
    #: "builtin", or the file it was read from
    source: str
    request: RequestSpec | None = None
    response: ResponseSpec | None = None
    #: ``module:function``: ``async def ask(session, appserver_url, client) -> Credentials``
    ask: str | None = None
    #: ``module:function``: ``async def provision(session, appserver_url, clients) -> None``
    provision: str | None = None
    clients: ClientTemplates | None = None
    #: directory the callables' modules are imported from first (the file's own)
    base_dir: str | None = None

    @property
    def is_builtin(self) -> bool:
        return self.source == "builtin"

    def describe(self) -> Mapping[str, object]:
        """A summary for reports (no secrets)."""
        out: dict[str, object] = {"name": self.name, "source": self.source}
        if self.request is not None:
            out["request"] = f"{self.request.method} {self.request.url} ({self.request.auth})"
        if self.ask is not None:
            out["ask"] = self.ask
        return out
