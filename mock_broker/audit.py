"""The device audit: what each client does at the broker, checked against the seed's
client rules (docs/your-appserver.md "The device audit", SPEC §6).

The token policy (:mod:`mock_broker.token_policy`) reports what it sees -- an accepted
or refused CONNECT, a connection's end, a ``$SYS/uploadToken``, a PUBLISH or SUBSCRIBE
read before the upload's PUBACK could have reached the client -- and :class:`DeviceAudit`
keeps per-client records and turns them into findings, each with the client ids and the
evidence (times, token *ids*, never token text; counts):

    rule                     flagged when                                  seed rule
    new-token-while-valid    a CONNECT brings a new token of the same      "persistence of the
                             permissions while the previous one still had  tokens ... to avoid
                             more than ``early_fraction`` of its life     applying for the same
                             (not expired, not revoked, not refused)       token during each
                                                                           reconnection"
    dead-token-reuse         ``dead_token_repeats`` CONNECTs refused for   "must know the
                             an expired or revoked token, with no          validity period of
                             accepted CONNECT in between                   the used token"
    tight-retry              ``tight_retry_run`` retries in a row (after   SPEC §6 "exponential
                             a refusal or a loss), each within             backoff and full
                             ``tight_retry_gap_s`` of the failure          jitter"
    reconnect-lockstep       after a mass disconnect (``lockstep_min_      SPEC §6 "never a
                             clients`` lost within ``lockstep_window_s``)  synchronized retry
                             they come back in the order they were lost:   loop"
                             Spearman rank correlation >=
                             ``lockstep_max_correlation``
    used-before-upload-ack   a PUBLISH/SUBSCRIBE only the uploaded token   SPEC §4, §6 (wait for
                             allows, sent before the client could have     the PUBACK)
                             seen the upload's PUBACK
    old-token-after-upload   the next CONNECT after an upload presents     "the local
                             the token the upload replaced                 configuration is also
                                                                           updated to avoid that
                                                                           the old token is used"
    provider-lacks           the fidelity report's uses (SPEC §4a)         docs/fidelity.md

Pure: no I/O, no clock; every event carries ``now`` (virtual seconds of the stack's
clock, the clock the SDK's backoff and the tokens' expiry use).  Bounded: the records of
the ``max_clients`` most recently seen clients (least recently seen forgotten first,
counted in ``clients_forgotten``), each of fixed size; at most ``max_findings`` findings
kept with their evidence (later ones counted in ``totals`` and ``findings_dropped``); at
most ``lockstep_max_events`` mass disconnects followed at once, each with at most
``lockstep_max_members`` clients.  Only clients that proved a genuine token of a known
account (accepted CONNECTs, and CONNECTs refused for a token that decodes) get a record.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from sim.shared.protocol.tokens import TokenClaims

from .fidelity import WHY, FidelityReport

__all__ = [
    "ABNORMAL_END",
    "RULE_SOURCES",
    "AuditBounds",
    "AuditReport",
    "DeviceAudit",
    "Finding",
    "Rule",
    "spearman",
]


class Rule(enum.StrEnum):
    """The client rules the audit checks (module docstring)."""

    NEW_TOKEN_WHILE_VALID = "new-token-while-valid"  # noqa: S105 - a rule's name
    DEAD_TOKEN_REUSE = "dead-token-reuse"  # noqa: S105 - a rule's name
    TIGHT_RETRY = "tight-retry"
    RECONNECT_LOCKSTEP = "reconnect-lockstep"
    USED_BEFORE_UPLOAD_ACK = "used-before-upload-ack"
    OLD_TOKEN_AFTER_UPLOAD = "old-token-after-upload"  # noqa: S105 - a rule's name
    PROVIDER_LACKS = "provider-lacks"


#: Where each rule comes from (docs/your-appserver.md quotes them in full).
RULE_SOURCES: Mapping[Rule, str] = {
    Rule.NEW_TOKEN_WHILE_VALID: (
        "seed: the MQTT client must perform persistence of the tokens that are returned by"
        " the application server to avoid applying for the same token during each reconnection"
    ),
    Rule.DEAD_TOKEN_REUSE: (
        "seed: the MQTT client must know the validity period of the used token and ensure"
        " that it is within the validity period"
    ),
    Rule.TIGHT_RETRY: "SPEC §6: reconnects with exponential backoff and full jitter",
    Rule.RECONNECT_LOCKSTEP: "SPEC §6: never a synchronized retry loop (full jitter)",
    Rule.USED_BEFORE_UPLOAD_ACK: (
        "SPEC §4, §6: the session's token is replaced when the PUBACK of $SYS/uploadToken is"
        " sent; wait for it before further publish/subscribe"
    ),
    Rule.OLD_TOKEN_AFTER_UPLOAD: (
        "seed: if the token is updated dynamically, the MQTT client must ensure that the local"
        " configuration is also updated to avoid that the old token is used during the next"
        " connection initialization"
    ),
    Rule.PROVIDER_LACKS: (
        "SPEC §4a: features the provider's broker does not have (docs/fidelity.md)"
    ),
}

#: Connection ends the client did not ask for (a DISCONNECT is ``client``; a takeover is
#: the same client connecting again): each makes the next CONNECT a *retry*.
POLITE_END = frozenset({"client", "takeover"})
ABNORMAL_END = "any close reason but " + ", ".join(sorted(POLITE_END))
#: Refusals for a token that decodes, of a known account: attributable to a client.
ATTRIBUTABLE_REFUSALS = frozenset(
    {"forged", "wrong_account", "revoked", "expired", "type_mismatch", "bad_signature"}
)
DEAD_REASONS = frozenset({"revoked", "expired"})
#: Connection ends that kill the token the session held (it must not come back).
_TOKEN_KILLING_END = frozenset({"expired", "revoked", "account", "upload_refused"})
_EVIDENCE_SAMPLES = 5
_MAX_ID_CHARS = 128
_LISTED_CLIENTS = 50


@dataclass(frozen=True)
class AuditBounds:
    """The audit's bounds (docs/your-appserver.md explains each default).  Times are
    virtual seconds of the stack's clock."""

    early_fraction: float = 0.5
    """new-token-while-valid: the previous token still had more than this share of its
    life at the CONNECT with the new one.  The SDK renews at ``margin`` (300 s of an
    hour); an AppServer's cache renews in the last part of a token's life."""
    dead_token_repeats: int = 2
    """dead-token-reuse: refused CONNECTs with an expired or revoked token, none accepted
    in between.  The first refusal (CONNACK 5) tells the client; a second is a client
    that did not react."""
    tight_retry_gap_s: float = 0.1
    """tight-retry: a retry this soon after the failure is tight."""
    tight_retry_run: int = 10
    """tight-retry: this many tight retries in a row.  With the SDK's full jitter
    (``uniform(0, base * 2**n)``) ten in a row below 0.1 s happen with probability below
    1e-6 even at the storm scenario's smallest base; a loop without backoff does it in
    its first second."""
    lockstep_min_clients: int = 20
    """reconnect-lockstep: losses of one namespace that make a mass disconnect, and the
    returns needed to judge it."""
    lockstep_window_s: float = 1.0
    """reconnect-lockstep: losses within this time of the first one are one event."""
    lockstep_follow_s: float = 300.0
    """reconnect-lockstep: returns are awaited this long after the first loss."""
    lockstep_max_correlation: float = 0.8
    """reconnect-lockstep: Spearman's rank correlation between the order of the losses
    and the order of the returns, at or above which the fleet came back in lockstep.  For
    a random order (full jitter) ``rho * sqrt(n - 1)`` is about standard normal: at 20
    clients 0.8 is 3.5 standard deviations (p < 3e-4)."""
    max_clients: int = 20_000
    """Client records kept (least recently seen forgotten first)."""
    max_findings: int = 1000
    """Findings kept with their evidence; further ones are only counted."""
    lockstep_max_events: int = 8
    """Mass disconnects followed at once (the oldest is judged early)."""
    lockstep_max_members: int = 5000
    """Clients followed per mass disconnect (the first lost)."""

    def __post_init__(self) -> None:
        if not 0.0 < self.early_fraction <= 1.0:
            raise ValueError("early_fraction must be in (0, 1]")
        for name in (
            "dead_token_repeats",
            "tight_retry_run",
            "max_clients",
            "max_findings",
            "lockstep_max_events",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.lockstep_min_clients < 3:
            raise ValueError("lockstep_min_clients must be >= 3 (a correlation needs 3)")
        if self.lockstep_max_members < self.lockstep_min_clients:
            raise ValueError("lockstep_max_members must be >= lockstep_min_clients")
        for name in ("tight_retry_gap_s", "lockstep_window_s", "lockstep_follow_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number of seconds >= 0")
        if not -1.0 <= self.lockstep_max_correlation <= 1.0:
            raise ValueError("lockstep_max_correlation must be in [-1, 1]")

    @classmethod
    def parse(cls, text: str, base: AuditBounds | None = None) -> AuditBounds:
        """``name=value,name=value`` over ``base`` (a CLI flag, an environment variable);
        :class:`ValueError` naming the bad part."""
        kinds = {f.name: f.type for f in fields(cls)}
        changes: dict[str, Any] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            name, sep, raw = part.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in kinds:
                known = ", ".join(kinds)
                raise ValueError(f"audit bound {part!r}: expected NAME=VALUE, NAME one of {known}")
            try:
                changes[name] = int(raw) if str(kinds[name]) == "int" else float(raw)
            except ValueError:
                raise ValueError(f"audit bound {name}: not a number: {raw.strip()!r}") from None
        return replace(base or cls(), **changes)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> AuditBounds:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in names})


@dataclass(frozen=True)
class Finding:
    """One rule broken by one client (or, for ``reconnect-lockstep``, by the clients of one
    mass disconnect)."""

    rule: Rule
    access_key_id: str
    instance_id: str
    client_ids: tuple[str, ...]
    count: int
    first_ms: int
    last_ms: int
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def client_id(self) -> str:
        return self.client_ids[0] if self.client_ids else ""

    def line(self) -> str:
        who = self.client_id if len(self.client_ids) == 1 else f"{len(self.client_ids)} clients"
        facts = ", ".join(f"{k}={_short(v)}" for k, v in self.evidence.items() if k != "clients")
        return f"{self.rule} {self.instance_id or '-'} {who} x{self.count}: {facts}"

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": str(self.rule),
            "access_key_id": self.access_key_id,
            "instance_id": self.instance_id,
            "client_ids": list(self.client_ids),
            "count": self.count,
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
            "evidence": dict(self.evidence),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Finding:
        return cls(
            rule=Rule(doc["rule"]),
            access_key_id=str(doc.get("access_key_id", "")),
            instance_id=str(doc.get("instance_id", "")),
            client_ids=tuple(str(c) for c in doc.get("client_ids", ())),
            count=int(doc.get("count", 1)),
            first_ms=int(doc.get("first_ms", 0)),
            last_ms=int(doc.get("last_ms", 0)),
            evidence=dict(doc.get("evidence") or {}),
        )


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        inner = ",".join(_short(v) for v in value[:4])
        return f"[{inner}{',...' if len(value) > 4 else ''}]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_short(v)}" for k, v in list(value.items())[:4]) + "}"
    return str(value)


@dataclass(frozen=True)
class AuditReport:
    """A snapshot of the audit (``GET /audit``, :meth:`BrokerHandle.audit`,
    ``SimStack.audit()``, ``mqtt-token-sim audit``)."""

    profile: str = "provider"
    bounds: AuditBounds = field(default_factory=AuditBounds)
    findings: tuple[Finding, ...] = ()
    #: occurrences per rule, exact (also those whose evidence was not kept)
    totals: Mapping[str, int] = field(default_factory=dict)
    clients: int = 0
    clients_forgotten: int = 0
    findings_dropped: int = 0
    notes: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.findings and not any(self.totals.values())

    def rules_broken(self) -> list[Rule]:
        return sorted(
            {f.rule for f in self.findings} | {Rule(r) for r, n in self.totals.items() if n}
        )

    def by_rule(self, rule: Rule | str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.rule == Rule(rule))

    def for_client(self, client_id: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if client_id in f.client_ids)

    def without(self, rules: Iterable[Rule | str]) -> AuditReport:
        """The same report with these rules left out (``--ignore``)."""
        drop = {Rule(r) for r in rules}
        return replace(
            self,
            findings=tuple(f for f in self.findings if f.rule not in drop),
            totals={r: n for r, n in self.totals.items() if Rule(r) not in drop},
        )

    def lines(self, max_findings: int = 20) -> list[str]:
        """A short text for a terminal."""
        if self.clean:
            return [f"device audit: clean ({self.clients} clients seen)"]
        broken = ", ".join(f"{r} x{self.totals.get(str(r), 0)}" for r in self.rules_broken())
        out = [f"device audit: {len(self.findings)} findings ({broken})"]
        out += ["  " + f.line() for f in self.findings[:max_findings]]
        hidden = len(self.findings) - max_findings + self.findings_dropped
        if hidden > 0:
            out.append(f"  ... and {hidden} more")
        out += ["  note: " + n for n in self.notes]
        return out

    def assert_clean(self, *, ignore: Iterable[Rule | str] = ()) -> None:
        """``AssertionError`` listing the findings unless none is left after ``ignore``."""
        report = self.without(ignore)
        if not report.clean:
            raise AssertionError("\n".join(report.lines(max_findings=50)))

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "clean": self.clean,
            "bounds": self.bounds.to_json(),
            "totals": dict(self.totals),
            "findings": [f.to_json() for f in self.findings],
            "clients": self.clients,
            "clients_forgotten": self.clients_forgotten,
            "findings_dropped": self.findings_dropped,
            "notes": list(self.notes),
            "rules": {str(r): RULE_SOURCES[r] for r in Rule},
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> AuditReport:
        """The report back from ``GET /audit``; ``ValueError`` for a document that is not
        one."""
        try:
            return cls(
                profile=str(doc.get("profile", "")),
                bounds=AuditBounds.from_json(doc.get("bounds") or {}),
                findings=tuple(Finding.from_json(f) for f in doc.get("findings", ())),
                totals={str(r): int(n) for r, n in (doc.get("totals") or {}).items()},
                clients=int(doc.get("clients", 0)),
                clients_forgotten=int(doc.get("clients_forgotten", 0)),
                findings_dropped=int(doc.get("findings_dropped", 0)),
                notes=tuple(str(n) for n in doc.get("notes", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not an audit report: {exc}") from None


# -- the records ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Held:
    """The token a client last used for one type (never its text)."""

    token_id: str
    issued_ms: int
    expire_ms: int
    scope: int  # hash of (actions, resources): the same permissions asked again
    dead: bool = False  # refused, or its session ended for it (expired, revoked)


@dataclass(slots=True)
class _Client:
    """One client's record: fixed size; the parts most clients never need are made on
    first use (docs/your-appserver.md "Memory")."""

    held: dict[str, _Held] = field(default_factory=dict)
    #: type -> (replaced token id, uploaded token id, upload ms): until the next CONNECT
    uploaded: dict[str, tuple[str, str, int]] | None = None
    live: int = 0
    retry_since: float | None = None  # the failure the next attempt retries
    run: int = 0
    gaps: deque[float] | None = None
    dead_refusals: int = 0
    dead_seen: deque[tuple[str, str, int]] | None = None


@dataclass(slots=True)
class _Finding:
    rule: Rule
    namespace: str
    client_ids: tuple[str, ...]
    count: int
    first_ms: int
    last_ms: int
    evidence: dict[str, Any]

    def frozen(self) -> Finding:
        ak, _, inst = self.namespace.partition("|")
        return Finding(
            self.rule,
            ak,
            inst,
            self.client_ids,
            self.count,
            self.first_ms,
            self.last_ms,
            dict(self.evidence),
        )


@dataclass(slots=True)
class _MassLoss:
    """Clients of one namespace lost together, and the order they come back in."""

    namespace: str
    start: float
    losses: int = 0
    #: client id -> [loss rank, return sequence number or -1]
    members: dict[str, list[int]] = field(default_factory=dict)
    returned: int = 0


def spearman(xs: list[int], ys: list[int]) -> float:
    """Spearman's rank correlation of two sequences of distinct values."""
    n = len(xs)
    if n < 3 or len(ys) != n:
        raise ValueError("spearman needs two sequences of the same length, at least 3")
    rx = _ranks(xs)
    ry = _ranks(ys)
    d2 = sum((a - b) ** 2 for a, b in zip(rx, ry, strict=True))
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))


def _ranks(values: list[int]) -> list[int]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = rank
    return ranks


def _scope(claims: TokenClaims) -> int:
    return hash((claims.actions, tuple(sorted(claims.resources))))


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


class DeviceAudit:
    """The audit's records and rules (module docstring).  Every method takes ``now``
    (virtual seconds); ``namespace`` is ``"<AccessKeyId>|<InstanceId>"``."""

    def __init__(self, bounds: AuditBounds | None = None, *, profile: str = "provider") -> None:
        self.bounds = bounds or AuditBounds()
        self.profile = profile
        self._clients: OrderedDict[tuple[str, str], _Client] = OrderedDict()
        self._forgotten = 0
        self._findings: dict[tuple[str, str, str], _Finding] = {}
        self._dropped = 0
        self._totals: dict[Rule, int] = {}
        self._open: dict[str, _MassLoss] = {}  # namespace -> the mass loss still growing
        self._following: list[_MassLoss] = []  # closed, waiting for returns
        self._awaited: dict[tuple[str, str], _MassLoss] = {}  # client -> its mass loss
        #: no window or follow period ends before this moment (``_settle`` is a no-op)
        self._settle_after = math.inf
        self._seq = 0
        self.on_finding: Callable[[Rule], object] | None = None

    # -- events ---------------------------------------------------------------------------

    def connected(
        self,
        now: float,
        namespace: str,
        client_id: str,
        tokens: Mapping[Any, TokenClaims],
        *,
        is_revoked: Callable[[str], bool] = lambda _: False,
    ) -> None:
        """An accepted CONNECT (its session is up) with these tokens by type."""
        key = (namespace, client_id[:_MAX_ID_CHARS])
        rec = self._record(key)
        self._attempt(now, key, rec)
        for token_type, claims in tokens.items():
            if rec.uploaded is not None:
                self._old_after_upload(_ms(now), key, rec, token_type, claims.token_id)
            prev = rec.held.get(token_type)
            if prev is not None and prev.token_id == claims.token_id:
                prev.dead = False  # the same token again (a reconnect): the same record
                continue
            if prev is not None:
                self._judge_new_token(_ms(now), key, prev, claims, is_revoked)
            rec.held[token_type] = _Held(
                claims.token_id, claims.issued_ms, claims.expire_ms, _scope(claims)
            )
        rec.uploaded = None
        rec.live += 1
        rec.retry_since = None
        rec.dead_refusals = 0

    def refused(
        self,
        now: float,
        namespace: str,
        client_id: str,
        reason: str,
        token_type: str | None = None,
        claims: TokenClaims | None = None,
    ) -> None:
        """A CONNECT refused for ``reason`` (only :data:`ATTRIBUTABLE_REFUSALS` count);
        ``claims``: the refused token's, when it decodes."""
        if reason not in ATTRIBUTABLE_REFUSALS:
            return
        key = (namespace, client_id[:_MAX_ID_CHARS])
        rec = self._record(key)
        self._attempt(now, key, rec)
        now_ms = _ms(now)
        if token_type is not None and claims is not None:
            self._old_after_upload(now_ms, key, rec, token_type, claims.token_id)
            held = rec.held.get(token_type)
            if held is not None and held.token_id == claims.token_id:
                held.dead = True
        if reason in DEAD_REASONS and claims is not None:
            rec.dead_refusals += 1
            if rec.dead_seen is None:
                rec.dead_seen = deque(maxlen=_EVIDENCE_SAMPLES)
            rec.dead_seen.append((claims.token_id, reason, now_ms))
            if rec.dead_refusals >= self.bounds.dead_token_repeats:
                self._flag(
                    Rule.DEAD_TOKEN_REUSE,
                    key,
                    now_ms,
                    {
                        "refused_connects": rec.dead_refusals,
                        "tokens": [
                            {"token_id": t, "reason": r, "at_ms": at} for t, r, at in rec.dead_seen
                        ],
                        "expire_ms": claims.expire_ms,
                    },
                )
        rec.retry_since = now

    def ended(self, now: float, namespace: str, client_id: str, reason: str) -> None:
        """A connection of this client ended (``reason``: the broker's close reason)."""
        key = (namespace, client_id[:_MAX_ID_CHARS])
        rec = self._clients.get(key)
        if rec is None:
            return
        rec.live = max(0, rec.live - 1)
        if reason in _TOKEN_KILLING_END:
            for held in rec.held.values():
                held.dead = True
        if reason in POLITE_END:
            if reason == "client":
                rec.retry_since, rec.run, rec.gaps = None, 0, None
            return
        if rec.live == 0:
            rec.retry_since = now
        self._lost(now, namespace, key)

    def uploaded(
        self,
        now: float,
        namespace: str,
        client_id: str,
        token_type: str,
        old: TokenClaims | None,
        new: TokenClaims,
    ) -> None:
        """An accepted ``$SYS/uploadToken``: ``new`` replaced ``old`` (or was added)."""
        key = (namespace, client_id[:_MAX_ID_CHARS])
        rec = self._record(key)
        if old is not None and old.token_id != new.token_id:
            if rec.uploaded is None:
                rec.uploaded = {}
            rec.uploaded[token_type] = (old.token_id, new.token_id, _ms(now))
        rec.held[token_type] = _Held(new.token_id, new.issued_ms, new.expire_ms, _scope(new))

    def used_before_ack(
        self,
        now: float,
        namespace: str,
        client_id: str,
        *,
        action: str,
        topic: str,
        waited_for_ack: bool,
        old_allows: bool,
        new_allows: bool,
        token_type: str,
        old_token_id: str,
        new_token_id: str,
        upload_ms: int,
    ) -> bool:
        """A PUBLISH (``action="publish"``) or SUBSCRIBE read after an accepted upload:
        a finding when it was sent before the client could have seen the PUBACK
        (``waited_for_ack`` false: its bytes were already at the broker when the PUBACK
        went out) and only the uploaded token allows it.  Returns whether it was one."""
        if waited_for_ack or old_allows or not new_allows:
            return False
        key = (namespace, client_id[:_MAX_ID_CHARS])
        self._flag(
            Rule.USED_BEFORE_UPLOAD_ACK,
            key,
            _ms(now),
            {
                "action": action,
                "topic": topic[:200],
                "token_type": token_type,
                "old_token_id": old_token_id,
                "new_token_id": new_token_id,
                "upload_ms": upload_ms,
            },
        )
        return True

    # -- the rules ------------------------------------------------------------------------

    def _judge_new_token(
        self,
        now_ms: int,
        key: tuple[str, str],
        prev: _Held,
        new: TokenClaims,
        is_revoked: Callable[[str], bool],
    ) -> None:
        life = prev.expire_ms - prev.issued_ms
        left = prev.expire_ms - now_ms
        if (
            prev.dead
            or left <= 0
            or life <= 0
            or new.issued_ms < prev.issued_ms  # older: switching between held tokens
            or _scope(new) != prev.scope  # other permissions: a new ask, not the same token
            or left <= self.bounds.early_fraction * life
            or is_revoked(prev.token_id)
        ):
            return
        self._flag(
            Rule.NEW_TOKEN_WHILE_VALID,
            key,
            now_ms,
            {
                "previous_token_id": prev.token_id,
                "previous_issued_ms": prev.issued_ms,
                "previous_expire_ms": prev.expire_ms,
                "previous_life_left": round(left / life, 3),
                "new_token_id": new.token_id,
                "new_issued_ms": new.issued_ms,
            },
        )

    def _old_after_upload(
        self, now_ms: int, key: tuple[str, str], rec: _Client, token_type: str, token_id: str
    ) -> None:
        pending = rec.uploaded.get(token_type) if rec.uploaded is not None else None
        if pending is None or token_id != pending[0]:
            return
        old_id, new_id, upload_ms = pending
        self._flag(
            Rule.OLD_TOKEN_AFTER_UPLOAD,
            key,
            now_ms,
            {
                "token_type": token_type,
                "old_token_id": old_id,
                "uploaded_token_id": new_id,
                "upload_ms": upload_ms,
            },
        )

    def _attempt(self, now: float, key: tuple[str, str], rec: _Client) -> None:
        """A CONNECT: a retry if the client's last connection failed; and a return
        from a mass disconnect."""
        self._seq += 1
        mass = self._awaited.pop(key, None)
        if mass is not None:
            member = mass.members.get(key[1])
            if member is not None and member[1] < 0:
                member[1] = self._seq
                mass.returned += 1
                if mass.returned == len(mass.members) and mass in self._following:
                    self._close_mass(mass, now)
        self._settle(now)
        if rec.live > 0 or rec.retry_since is None:
            return  # a first connect, or a takeover of its own live connection
        gap = now - rec.retry_since
        if gap > self.bounds.tight_retry_gap_s:
            rec.run, rec.gaps = 0, None
            return
        rec.run += 1
        if rec.gaps is None:
            rec.gaps = deque(maxlen=_EVIDENCE_SAMPLES)
        rec.gaps.append(round(gap, 4))
        if rec.run >= self.bounds.tight_retry_run:
            self._flag(
                Rule.TIGHT_RETRY,
                key,
                _ms(now),
                {"retries_in_a_row": rec.run, "last_gaps_s": list(rec.gaps)},
                count_as=rec.run,
            )

    def _lost(self, now: float, namespace: str, key: tuple[str, str]) -> None:
        """An abnormal end: part of a mass disconnect of its namespace?"""
        b = self.bounds
        mass = self._open.get(namespace)
        if mass is not None and now - mass.start > b.lockstep_window_s:
            del self._open[namespace]
            self._close_window(mass, now)
            mass = None
        if mass is None:
            mass = self._open[namespace] = _MassLoss(namespace, now)
            self._settle_after = min(self._settle_after, now + b.lockstep_window_s)
        mass.losses += 1
        if key[1] not in mass.members and len(mass.members) < b.lockstep_max_members:
            old = self._awaited.get(key)
            if old is not None and old is not mass:
                old.members.pop(key[1], None)
            mass.members[key[1]] = [len(mass.members), -1]
            self._awaited[key] = mass
        self._settle(now)

    def _close_window(self, mass: _MassLoss, now: float) -> None:
        if len(mass.members) < self.bounds.lockstep_min_clients:
            self._forget_mass(mass)
            return
        self._following.append(mass)
        self._settle_after = min(self._settle_after, mass.start + self.bounds.lockstep_follow_s)
        if len(self._following) > self.bounds.lockstep_max_events:
            self._close_mass(self._following[0], now)
        if mass.returned == len(mass.members):
            self._close_mass(mass, now)

    def _settle(self, now: float) -> None:
        """Close the windows and follow periods that are over (on every CONNECT and
        loss: nothing to do, in one comparison, until the first of them ends)."""
        if now <= self._settle_after:
            return
        b = self.bounds
        for namespace, mass in list(self._open.items()):
            if now - mass.start > b.lockstep_window_s:
                del self._open[namespace]
                self._close_window(mass, now)
        for mass in list(self._following):
            if now - mass.start > b.lockstep_follow_s:
                self._close_mass(mass, now)
        self._settle_after = min(
            (
                *(m.start + b.lockstep_window_s for m in self._open.values()),
                *(m.start + b.lockstep_follow_s for m in self._following),
            ),
            default=math.inf,
        )

    def _close_mass(self, mass: _MassLoss, now: float) -> None:
        if mass in self._following:
            self._following.remove(mass)
        finding = self._judge_mass(mass)
        if finding is not None:
            key = (mass.namespace, f"mass@{_ms(mass.start)}")
            self._flag(
                Rule.RECONNECT_LOCKSTEP,
                key,
                _ms(now),
                finding.evidence,
                client_ids=finding.client_ids,
                first_ms=finding.first_ms,
            )
        self._forget_mass(mass)

    def _forget_mass(self, mass: _MassLoss) -> None:
        for client_id in mass.members:
            key = (mass.namespace, client_id)
            if self._awaited.get(key) is mass:
                del self._awaited[key]

    def _judge_mass(self, mass: _MassLoss) -> Finding | None:
        back = [(m[0], m[1], c) for c, m in mass.members.items() if m[1] >= 0]
        if len(back) < self.bounds.lockstep_min_clients:
            return None
        rho = spearman([b[0] for b in back], [b[1] for b in back])
        if rho < self.bounds.lockstep_max_correlation:
            return None
        ak, _, inst = mass.namespace.partition("|")
        in_order = sorted(back, key=lambda b: b[1])
        return Finding(
            Rule.RECONNECT_LOCKSTEP,
            ak,
            inst,
            tuple(c for _, _, c in in_order[:_LISTED_CLIENTS]),
            1,
            _ms(mass.start),
            _ms(mass.start),
            {
                "lost": mass.losses,
                "followed": len(mass.members),
                "returned": len(back),
                "rank_correlation": round(rho, 3),
                "bound": self.bounds.lockstep_max_correlation,
                "loss_ms": _ms(mass.start),
            },
        )

    # -- storage --------------------------------------------------------------------------

    def _record(self, key: tuple[str, str]) -> _Client:
        rec = self._clients.get(key)
        if rec is None:
            rec = self._clients[key] = _Client()
            if len(self._clients) > self.bounds.max_clients:
                self._clients.popitem(last=False)
                self._forgotten += 1
        else:
            self._clients.move_to_end(key)
        return rec

    def _flag(
        self,
        rule: Rule,
        key: tuple[str, str],
        now_ms: int,
        evidence: Mapping[str, Any],
        *,
        client_ids: tuple[str, ...] | None = None,
        first_ms: int | None = None,
        count_as: int | None = None,
    ) -> None:
        self._totals[rule] = self._totals.get(rule, 0) + 1
        if self.on_finding is not None:
            self.on_finding(rule)
        fkey = (str(rule), key[0], key[1])
        found = self._findings.get(fkey)
        if found is None:
            if len(self._findings) >= self.bounds.max_findings:
                self._dropped += 1
                return
            found = self._findings[fkey] = _Finding(
                rule,
                key[0],
                client_ids or (key[1],),
                0,
                now_ms if first_ms is None else first_ms,
                now_ms,
                {},
            )
        found.count = count_as if count_as is not None else found.count + 1
        found.last_ms = now_ms
        found.evidence = dict(evidence)

    # -- the report -----------------------------------------------------------------------

    def report(self, now: float, fidelity: FidelityReport | None = None) -> AuditReport:
        """The findings so far; a mass disconnect still being followed is judged on the
        returns seen (``"complete": false`` in its evidence)."""
        self._settle(now)
        findings = [f.frozen() for f in self._findings.values()]
        totals = {str(r): n for r, n in self._totals.items()}
        for mass in [*self._following, *self._open.values()]:
            pending = self._judge_mass(mass)
            if pending is not None:
                findings.append(replace(pending, evidence={**pending.evidence, "complete": False}))
                totals[str(Rule.RECONNECT_LOCKSTEP)] = (
                    totals.get(str(Rule.RECONNECT_LOCKSTEP), 0) + 1
                )
        if fidelity is not None:
            for uses in fidelity.clients:
                findings.append(
                    Finding(
                        Rule.PROVIDER_LACKS,
                        "",
                        uses.instance_id,
                        (uses.client_id,),
                        sum(uses.counts.values()),
                        0,
                        0,
                        {
                            "uses": {str(f): n for f, n in sorted(uses.counts.items())},
                            "why": [WHY[f] for f in sorted(uses.counts)],
                        },
                    )
                )
            lacks = sum(fidelity.totals.values())
            if lacks:
                totals[str(Rule.PROVIDER_LACKS)] = lacks
        findings.sort(key=lambda f: (f.rule, f.instance_id, f.client_id, f.first_ms))
        notes = []
        if self._forgotten:
            notes.append(
                f"{self._forgotten} clients' records were forgotten (max_clients"
                f" {self.bounds.max_clients}): their later CONNECTs were judged afresh"
            )
        if self._dropped:
            notes.append(f"{self._dropped} findings beyond max_findings were only counted")
        return AuditReport(
            profile=self.profile,
            bounds=self.bounds,
            findings=tuple(findings),
            totals=totals,
            clients=len(self._clients),
            clients_forgotten=self._forgotten,
            findings_dropped=self._dropped,
            notes=tuple(notes),
        )
