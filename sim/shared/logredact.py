"""Log hygiene for every process of the harness: no credential in a log line, no flood.

Two :class:`logging.Filter`\\ s, installed on the handlers of the root logger by
:func:`install_log_guards` (the command line's ``main`` and every other process that
configures logging call it), so they see the records of every logger the process owns
(ours, aiohttp's, asyncio's, amqtt's):

* :class:`RedactingFilter` rewrites a record's message, its traceback text and its stack
  text with :func:`redact`: values of ``signature=``/``Signature=``, ``token=``,
  ``tokenData``, ``password=``, ``secret``/``AccessKeySecret``, whole ``Authorization``
  header values and ``Basic``/``Bearer`` credentials, and any long Base64 run (a token,
  an MQTT password) become ``[redacted]``.  A legacy apply signature never expires, so
  a logged one would mint tokens on every replay (docs/authserver.md "Security").
* :class:`FloodGuard` lets at most ``burst`` records per call site through per
  ``window_s`` (WARNING and above), counts the rest, and says how many it dropped on the
  next one it lets through: a flood of refused connections (asyncio logs each failed
  ``accept()`` with a traceback) cannot write megabytes a second.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable

__all__ = ["FloodGuard", "RedactingFilter", "install_log_guards", "redact"]

REDACTED = "[redacted]"

# Keys whose value is a credential, as they appear in query strings, form bodies, JSON,
# Python reprs and HTTP headers.  Not followed by a letter: ``SignatureNonce``,
# ``SignatureMethod``, ``tokens`` and ``TokenStatus`` are not secrets.
_KEYS = (
    r"access_?key_?secret|secret_?key|client_?secret|secret|signature|token_?data|token"
    r"|password|passwd|passphrase"
)
_KEY_VALUE = re.compile(
    rf"(?i)(?<![A-Za-z0-9])(?P<key>{_KEYS})(?![A-Za-z])"
    r"(?P<sep>\\?[\"']?\s*[:=]\s*)"
    r"(?P<value>\\?\"(?:[^\"\\\n]|\\[^\"])*\\?\"?|'[^'\n]*'?|[^\s\"'&,;)}\]]+)"
)
_AUTHORIZATION = re.compile(
    r"(?i)(?P<key>(?:proxy-)?authorization)(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\"'\r\n]+)"
)
_SCHEME = re.compile(
    r"(?i)\b(?P<key>basic|bearer|digest)(?P<sep>\s+)(?P<value>[A-Za-z0-9+/=._~-]{4,})"
)
# Base64 (a token, a signature, an MQTT password): 32+ characters mixing upper case,
# lower case and digits.  Hex digests and paths do not mix all three in one run.
_LONG_B64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{32,}={0,2}")


def _keep_key(m: re.Match[str]) -> str:
    return f"{m.group('key')}{m.group('sep')}{REDACTED}"


def _b64(m: re.Match[str]) -> str:
    run = m.group()
    if (
        any(c.isdigit() for c in run)
        and any(c.isupper() for c in run)
        and any(c.islower() for c in run)
    ):
        return REDACTED
    return run


def redact(text: str) -> str:
    """``text`` with every credential it shows replaced by ``[redacted]``."""
    text = _AUTHORIZATION.sub(_keep_key, text)
    text = _SCHEME.sub(_keep_key, text)
    text = _KEY_VALUE.sub(_keep_key, text)
    return _LONG_B64.sub(_b64, text)


class RedactingFilter(logging.Filter):
    """Rewrites each record (message, traceback, stack) through :func:`redact`."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: show the template, not the args
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self._formatter.formatException(record.exc_info)
            # The formatters use exc_text when exc_info is gone; the exception object
            # itself (with the request line in its message) must not reach a handler.
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._redacted = True
        return True


class FloodGuard(logging.Filter):
    """At most ``burst`` records per call site per ``window_s`` (WARNING and above).

    ``suppressed`` counts every record dropped since the start.  Call sites, not
    messages, are counted, so a message with changing text (an f-string) is still one.
    """

    def __init__(
        self,
        *,
        burst: int = 10,
        window_s: float = 10.0,
        level: int = logging.WARNING,
        monotonic: Callable[[], float] = time.monotonic,
        max_sites: int = 4096,
    ):
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self.level = level
        self.suppressed = 0
        self._monotonic = monotonic
        self._max_sites = max_sites
        self._sites: dict[tuple[str, str, int], list[float]] = {}  # start, count, dropped
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        key = (record.name, record.pathname, record.lineno)
        now = self._monotonic()
        with self._lock:
            site = self._sites.get(key)
            if site is None:
                if len(self._sites) >= self._max_sites:
                    self._sites.clear()
                site = self._sites[key] = [now, 0.0, 0.0]
            dropped = 0
            if now - site[0] >= self.window_s:
                dropped = int(site[2])
                site[:] = [now, 0.0, 0.0]
            site[1] += 1
            if site[1] > self.burst:
                site[2] += 1
                self.suppressed += 1
                return False
        if dropped:
            try:
                message = record.getMessage()
            except Exception:
                message = str(record.msg)
            record.msg = f"{message} [{dropped} more like this suppressed in {self.window_s:g} s]"
            record.args = None
        return True


def install_log_guards(
    handlers: Iterable[logging.Handler] | None = None, *, flood: FloodGuard | None = None
) -> FloodGuard:
    """Put one :class:`FloodGuard` and a :class:`RedactingFilter` on each handler
    (default: every handler of the root logger); idempotent.  Returns the flood guard."""
    targets = list(logging.getLogger().handlers if handlers is None else handlers)
    guard = flood
    for handler in targets:
        for existing in handler.filters:
            if guard is None and isinstance(existing, FloodGuard):
                guard = existing
    guard = guard or FloodGuard()
    for handler in targets:
        if not any(isinstance(f, FloodGuard) for f in handler.filters):
            handler.addFilter(guard)
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    return guard
