"""Injected faults (SPEC §3d): what may go wrong with the next request, decided here.

:class:`FaultSet` is pure: :meth:`FaultSet.decide` takes the operation, the virtual time
and a real monotonic time and returns a :class:`Decision` (extra latency, then an outcome:
an error of the tree, ``"hang"`` or ``"reset"``).  The dice are a seeded
:class:`random.Random`, so a run with the same seed and the same requests repeats.
:func:`mock_authserver.gate.gate` is the shell part that carries a decision out on a
live request.

A fault (``POST /admin/faults``)::

    {"operation": "apply"|"revoke"|"query"|"*", "kind": K, "probability": 1.0,
     "times": null, ...kind fields}

=========  =====================================================================
kind       fields / effect
=========  =====================================================================
status     ``status`` (400..599): that HTTP status, body in the request's style
error      ``code``: a provider code (``"SystemOverFlow"``) or legacy int (``409``);
           ``status`` optional for codes the tree does not know
latency    ``ms``, ``jitter_ms``: added delay (real time), then served normally
hang       never answers (until the client gives up or the server stops)
reset      the connection is aborted without an answer
outage     ``seconds`` (virtual), ``mode`` ``"503"`` (default) or ``"reset"``:
           every request of the operation fails until then
throttle   ``per_second``: past N requests in any real second, the answer of the
           real rate limit (:mod:`.ratelimit`): ``ApplyTokenOverFlow`` for an
           apply, ``Throttling.User`` otherwise (HTTP 400); legacy code 429
=========  =====================================================================

``probability`` (default 1) is rolled per request for status/error/latency/hang/reset;
``times`` (optional) removes the fault after it fired that many times.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import (
    AdminError,
    AuthServerError,
    InjectedFault,
    InternalError,
    InvalidParameter,
    ParameterError,
    RevokeFailed,
    ServiceUnavailable,
    SignatureMismatch,
    Throttled,
    TokenExpired,
    TokenForged,
    TokenGenerationError,
    TokenRevoked,
)
from .ratelimit import throttled

__all__ = [
    "KINDS",
    "OPERATIONS",
    "Decision",
    "Fault",
    "FaultSet",
    "error_for_code",
]

OPERATIONS = ("apply", "revoke", "query", "*")
KINDS = ("status", "error", "latency", "hang", "reset", "outage", "throttle")

_LEGACY: dict[int, type[AuthServerError]] = {
    400: ParameterError,
    407: SignatureMismatch,
    409: TokenGenerationError,
    410: RevokeFailed,
    1: TokenForged,
    2: TokenExpired,
    3: TokenRevoked,
    429: Throttled,
    500: InternalError,
    503: ServiceUnavailable,
}
_STATUS_CODES = {500: "InternalError", 503: "ServiceUnavailable", 429: "Throttling"}


def _all_errors() -> list[type[AuthServerError]]:
    out: list[type[AuthServerError]] = []
    todo: list[type[AuthServerError]] = [AuthServerError]
    while todo:
        cls = todo.pop(0)
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def error_for_code(
    code: str | int, status: int | None = None, operation: str = "*"
) -> AuthServerError:
    """The error an ``error`` fault raises for a provider code or a legacy int code
    (a throttling code answers as the real limit of ``operation`` does)."""
    message = f"injected fault: {code}"
    if isinstance(code, int) or (isinstance(code, str) and code.lstrip("-").isdigit()):
        number = int(code)
        cls = _LEGACY.get(number)
        if cls is Throttled and status is None:
            return throttled(operation, message)
        if cls is not None and status is None:
            return cls(message)
        return InjectedFault(
            message,
            legacy_code=number,
            openapi_code=_STATUS_CODES.get(status or 500, "InjectedFault"),
            http_status=status or 500,
        )
    if status is None and code.startswith("InvalidParameter.") and len(code) > 17:
        return InvalidParameter(code.split(".", 1)[1], message)
    if status is None:
        for cls in _all_errors():
            if cls not in (InjectedFault, InvalidParameter) and cls.openapi_code == code:
                return cls(message)
    return InjectedFault(
        message, legacy_code=status or 500, openapi_code=code, http_status=status or 500
    )


@dataclass
class Fault:
    id: str
    operation: str
    kind: str
    probability: float = 1.0
    times: int | None = None
    status: int | None = None
    code: str | int | None = None
    ms: float = 0.0
    jitter_ms: float = 0.0
    seconds: float = 0.0
    mode: str = "503"
    per_second: float = 0.0
    until_ms: int = 0  # outage end, virtual ms
    fired: int = 0
    _window: deque[float] = field(default_factory=deque, repr=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "kind": self.kind,
            "probability": self.probability,
            "times": self.times,
            "fired": self.fired,
        }
        extra: dict[str, tuple[str, ...]] = {
            "status": ("status",),
            "error": ("code", "status"),
            "latency": ("ms", "jitter_ms"),
            "outage": ("seconds", "mode", "until_ms"),
            "throttle": ("per_second",),
        }
        for name in extra.get(self.kind, ()):
            out[name] = getattr(self, name)
        return out


@dataclass
class Decision:
    delay_s: float = 0.0
    outcome: AuthServerError | Literal["hang", "reset"] | None = None


def _number(data: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AdminError(f"fault field {name!r} must be a number")
    if not lo <= value <= hi:
        raise AdminError(f"fault field {name!r} must be within {lo}..{hi}")
    return float(value)


class FaultSet:
    def __init__(self, seed: int = 0):
        self._rng = random.Random(seed)
        self._faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)

    @property
    def active(self) -> bool:
        return bool(self._faults)

    def reseed(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def list(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self._faults.values()]

    def clear(self) -> None:
        self._faults.clear()

    def remove(self, fault_id: str) -> bool:
        return self._faults.pop(fault_id, None) is not None

    def add(self, data: object, now_ms: int) -> Fault:
        """Validate a fault description (:class:`AdminError` if wrong) and add it."""
        if not isinstance(data, dict):
            raise AdminError("a fault is a JSON object")
        known = {
            "operation",
            "kind",
            "probability",
            "times",
            "status",
            "code",
            "ms",
            "jitter_ms",
            "seconds",
            "mode",
            "per_second",
        }
        unknown = set(data) - known
        if unknown:
            raise AdminError(f"unknown fault fields {sorted(unknown)[:5]}")
        operation = data.get("operation", "*")
        if operation not in OPERATIONS:
            raise AdminError(f"fault operation must be one of {', '.join(OPERATIONS)}")
        kind = data.get("kind")
        if kind not in KINDS:
            raise AdminError(f"fault kind must be one of {', '.join(KINDS)}")
        times = data.get("times")
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise AdminError("fault field 'times' must be a positive integer or null")
        fault = Fault(
            id=str(next(self._ids)),
            operation=operation,
            kind=kind,
            probability=_number(data, "probability", 1.0, 0.0, 1.0),
            times=times,
        )
        if kind == "status" or (kind == "error" and "status" in data):
            fault.status = int(_number(data, "status", 0, 400, 599))
        if kind == "error":
            code = data.get("code")
            if isinstance(code, bool) or not isinstance(code, str | int) or code == "":
                raise AdminError("an error fault needs 'code': a provider code or a legacy int")
            if isinstance(code, str) and len(code) > 100:
                raise AdminError("fault code is too long")
            fault.code = code
        elif kind == "latency":
            fault.ms = _number(data, "ms", 0.0, 0.0, 600_000.0)
            fault.jitter_ms = _number(data, "jitter_ms", 0.0, 0.0, 600_000.0)
        elif kind == "outage":
            fault.seconds = _number(data, "seconds", math.nan, 0.0, 10 * 365 * 86400.0)
            fault.until_ms = now_ms + int(fault.seconds * 1000)
            mode = data.get("mode", "503")
            if mode not in ("503", "reset"):
                raise AdminError("outage mode must be '503' or 'reset'")
            fault.mode = mode
        elif kind == "throttle":
            fault.per_second = _number(data, "per_second", math.nan, 0.0, 1e9)
        self._faults[fault.id] = fault
        return fault

    def decide(self, operation: str, now_ms: int, mono_s: float) -> Decision:
        decision = Decision()
        for fault in list(self._faults.values()):
            if fault.operation not in ("*", operation):
                continue
            if fault.kind == "outage":
                if now_ms >= fault.until_ms:
                    del self._faults[fault.id]  # the outage is over
                    continue
                outcome: AuthServerError | Literal["hang", "reset"] | None = (
                    "reset"
                    if fault.mode == "reset"
                    else ServiceUnavailable("the token service is unavailable (outage)")
                )
            elif fault.kind == "throttle":
                window = fault._window
                while window and window[0] <= mono_s - 1.0:
                    window.popleft()
                if len(window) >= fault.per_second:
                    outcome = throttled(
                        operation,
                        f"injected throttle: more than {fault.per_second:g} requests per second",
                    )
                else:
                    window.append(mono_s)
                    continue
            else:
                if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                    continue
                outcome = None
                if fault.kind == "latency":
                    jitter = self._rng.uniform(-fault.jitter_ms, fault.jitter_ms)
                    decision.delay_s += max(0.0, fault.ms + jitter) / 1000.0
                elif fault.kind == "status":
                    status = fault.status or 500
                    outcome = InjectedFault(
                        f"injected fault: HTTP {status}",
                        legacy_code=status,
                        openapi_code=_STATUS_CODES.get(status, "InjectedFault"),
                        http_status=status,
                    )
                elif fault.kind == "error":
                    assert fault.code is not None
                    outcome = error_for_code(fault.code, fault.status, operation)
                elif fault.kind in ("hang", "reset"):
                    outcome = fault.kind  # type: ignore[assignment]
            fault.fired += 1
            if fault.times is not None and fault.fired >= fault.times:
                del self._faults[fault.id]
            if outcome is not None:
                decision.outcome = outcome
                break
        return decision
