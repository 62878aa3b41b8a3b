"""What an HTTP request may cost a server (pure): time limits, JSON depth, body codings.

Both HTTP servers (the mock AuthServer and the reference AppServer) take the same
limits, with the same flags (docs/authserver.md, docs/appserver.md "Security"):

* ``header_timeout_s``: from a connection's first byte of a request (or from its
  opening) until the request's headers are complete;
* ``body_timeout_s``: from the end of the headers until the whole body has arrived;
* ``idle_timeout_s``: how long a keep-alive connection may wait for its next request.

Request bodies: JSON no deeper than :data:`MAX_JSON_DEPTH`; a ``Content-Encoding`` of
``gzip``, ``deflate`` or ``identity`` only (one coding; anything else is refused
before the body is read, never passed through undecoded).

Configuration modules import this, not :mod:`sim.shared.httpserver` (the aiohttp side),
so that they stay pure.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACCEPTED_CONTENT_CODINGS",
    "MAX_JSON_DEPTH",
    "HttpLimits",
    "JsonTooDeep",
    "add_http_limit_arguments",
    "check_json_depth",
    "content_coding_problem",
    "http_limits_from_args",
    "loads_json",
]

#: Deepest JSON nesting any endpoint accepts (the deepest real body, a bulk import of
#: accounts with grants, is 5 levels).
MAX_JSON_DEPTH = 32

#: The request body codings both servers decode (RFC 9110 §8.4.1).
ACCEPTED_CONTENT_CODINGS = frozenset({"identity", "gzip", "deflate"})


@dataclass(frozen=True)
class HttpLimits:
    """Real seconds (network waits, not virtual time)."""

    #: Headers of a request must be complete this long after its first byte (after the
    #: connection opened, for its first request); else the connection is closed.
    header_timeout_s: float = 10.0
    #: The whole body must have arrived this long after the headers; else the request
    #: is answered 408 (in the server's JSON error shape) and the connection closed.
    body_timeout_s: float = 30.0
    #: A keep-alive connection with no request for this long is closed.
    idle_timeout_s: float = 75.0

    def __post_init__(self) -> None:
        for name in ("header_timeout_s", "body_timeout_s", "idle_timeout_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")


_FLAGS = (
    ("--header-timeout", "header_timeout_s", "close a connection whose request head takes longer"),
    ("--body-timeout", "body_timeout_s", "answer 408 and close when a request body takes longer"),
    ("--idle-timeout", "idle_timeout_s", "close a keep-alive connection idle this long"),
)


def add_http_limit_arguments(
    parser: argparse.ArgumentParser, defaults: HttpLimits | None = None
) -> None:
    """The flags of :class:`HttpLimits`, shared by both HTTP servers."""
    d = defaults or HttpLimits()
    for flag, name, text in _FLAGS:
        parser.add_argument(
            flag,
            type=float,
            default=getattr(d, name),
            metavar="S",
            dest=name,
            help=f"{text} (default %(default)s s)",
        )


def http_limits_from_args(args: argparse.Namespace) -> HttpLimits:
    """Parse :func:`add_http_limit_arguments`' flags; :class:`ValueError` says what is wrong."""
    return HttpLimits(**{name: getattr(args, name) for _, name, _ in _FLAGS})


def content_coding_problem(values: Sequence[str]) -> str | None:
    """Why a request with these ``Content-Encoding`` header values is refused, or None.

    One coding from :data:`ACCEPTED_CONTENT_CODINGS`, case-insensitive.  A list of
    codings (``gzip, gzip``) is refused too: the HTTP parser would pass it through
    undecoded, and the handler would read the compressed bytes as the body.
    """
    if not values:
        return None
    if len(values) > 1:
        return "send one Content-Encoding header"
    coding = values[0].strip().lower()
    if coding in ACCEPTED_CONTENT_CODINGS:
        return None
    shown = coding if re.fullmatch(r"[a-z0-9._-]{1,32}", coding) else "this coding"
    return f"Content-Encoding {shown!r} is not supported (gzip, deflate or identity)"


class JsonTooDeep(ValueError):
    """A JSON text nests deeper than the limit."""


# A JSON string, or an unterminated one up to the end: brackets inside strings do not
# nest.  Possessive, and never failing from an opening quote, so it stays linear.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.S)
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def check_json_depth(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`JsonTooDeep` if ``raw`` (JSON text) nests deeper than ``max_depth``.

    Runs before parsing, in time linear in ``raw`` times the depth at most, so a body of
    ``[[[[...`` costs neither recursion nor the objects a parser would build, closed or
    not (a parser recurses into unclosed brackets before it finds them unclosed).  Other
    unbalanced text passes (the parser refuses it as invalid).
    """
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return
    skeleton = _STRING.sub(b"", raw).translate(_BRACKETS, _NOT_BRACKETS)
    # Balanced text of depth d empties in exactly d rounds of removing innermost pairs;
    # what is left then is closers and openers never closed, which nest what follows.
    for rounds in range(max_depth + 1):
        shorter = skeleton.replace(b"()", b"")
        if len(shorter) == len(skeleton):
            if skeleton.count(b"(") + rounds <= max_depth:
                return
            break
        skeleton = shorter
    raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")


def loads_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` with a depth limit; :class:`ValueError` (or :class:`JsonTooDeep`)
    for text that is not JSON or nests too deep."""
    check_json_depth(raw, max_depth)
    try:
        return json.loads(raw)
    except RecursionError:  # belt and braces: the check above bounds depth already
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels") from None
