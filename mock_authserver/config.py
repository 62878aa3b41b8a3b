"""The AuthServer's configuration: one frozen, typed dataclass (STYLE.md "Configuration").

Built by the CLI (:mod:`mock_authserver.cli`) from flags and an accounts file, or directly
by tests and the stack runner.  Every field changes behaviour; ``tests/authserver`` shows it.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from sim.shared.clockspec import ClockSpec
from sim.shared.devaccount import DEV_ACCESS_KEY, DEV_INSTANCE, DEV_SECRET_KEY
from sim.shared.httplimits import HttpLimits
from sim.shared.protocol.errors import InvalidTopic
from sim.shared.protocol.topics import validate_parent_topic

from .ratelimit import RateLimits

__all__ = [
    "DEFAULT_PORT",
    "DEV_ACCOUNT",
    "MAX_PARENT_TOPICS",
    "AccountSpec",
    "AccountsFile",
    "AuthServerConfig",
    "InstanceSpec",
    "load_accounts_file",
    "parse_bool",
]

#: The CLI's default port (``mqtt-token-sim authserver --port``).
DEFAULT_PORT = 18080


@dataclass(frozen=True)
class AccountSpec:
    """An AccessKey pair and the instances its account owns (SPEC §3c)."""

    access_key_id: str
    secret: str
    instances: tuple[str, ...]
    enabled: bool = True

    def __post_init__(self) -> None:
        for name, value in (("access_key_id", self.access_key_id), ("secret", self.secret)):
            if not isinstance(value, str) or not value or len(value) > 256:
                raise ValueError(f"account {name} must be a non-empty string of <= 256 chars")
            if any(c in value for c in "|\x00\r\n"):
                raise ValueError(f"account {name} must not contain '|', NUL or line breaks")
        if isinstance(self.instances, str) or not all(
            isinstance(i, str) and i and len(i) <= 256 and "|" not in i for i in self.instances
        ):
            raise ValueError("account instances must be a list of non-empty strings without '|'")
        if not isinstance(self.enabled, bool):
            raise ValueError("account enabled must be a boolean")


def _check_instance_id(value: object) -> None:
    if not isinstance(value, str) or not value or len(value) > 256 or "|" in value:
        raise ValueError("an instance id must be a non-empty string of <= 256 chars without '|'")


#: Most parent topics one instance may have here (a bound on admin input; the provider's
#: own quota is a billing matter, docs/fidelity.md).
MAX_PARENT_TOPICS = 1000


@dataclass(frozen=True)
class InstanceSpec:
    """An instance's parent topics (SPEC §4a): the first levels its topics may have."""

    instance_id: str
    parent_topics: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_instance_id(self.instance_id)
        if isinstance(self.parent_topics, str) or not isinstance(self.parent_topics, tuple):
            raise ValueError("parent_topics must be a list of parent topic names")
        if len(self.parent_topics) > MAX_PARENT_TOPICS:
            raise ValueError(f"at most {MAX_PARENT_TOPICS} parent topics per instance")
        seen: set[str] = set()
        for name in self.parent_topics:
            try:
                validate_parent_topic(name)
            except InvalidTopic as exc:
                raise ValueError(str(exc)) from None
            if name in seen:
                raise ValueError(f"parent topic {name!r} is listed twice")
            seen.add(name)


#: The documented dev account, present in every fresh data dir.
DEV_ACCOUNT = AccountSpec(DEV_ACCESS_KEY, DEV_SECRET_KEY, (DEV_INSTANCE,))
#: The dev instance's parent topics (docs/authserver.md): ``dev`` (the dev client's
#: ``dev/#``), ``demo`` (the provider's demos), ``test``, ``fleet`` (the fleet's default
#: prefix), ``devices``, ``locust``, ``bench`` and ``rawrate`` (load tools, benchmarks).
DEV_PARENT_TOPICS = InstanceSpec(
    DEV_INSTANCE,
    ("dev", "demo", "test", "fleet", "devices", "locust", "bench", "rawrate"),
)


@dataclass(frozen=True)
class AuthServerConfig:
    #: Address to bind; loopback by default (PREAMBLE: only loopback).
    host: str = "127.0.0.1"
    #: TCP port; 0 picks a free one (the handle reports it).
    port: int = 0
    #: Where SQLite keeps accounts, keys, issued/revoked tokens and the feed.
    #: ``None`` keeps everything in memory (gone at stop).
    data_dir: Path | None = None
    #: How the runner builds its clock when none is handed in.
    clock: ClockSpec = field(default_factory=ClockSpec)
    #: Extra accounts, created or updated at start (from ``--accounts FILE``).
    accounts: tuple[AccountSpec, ...] = ()
    #: Parent topics per instance, set at start (from ``--accounts FILE``): for each
    #: instance named, the stored set becomes exactly this one.
    instances: tuple[InstanceSpec, ...] = ()
    #: Create the dev account (``dev-ak``/``dev-sk``/``mqtt-dev``, with the parent topics
    #: of :data:`DEV_PARENT_TOPICS`) in a fresh data dir.
    dev_account: bool = True
    #: The provider's API rate limits per account (SPEC §3b), on the server's clock;
    #: ``RateLimits.off()`` turns them all off (``--no-rate-limits``).
    rate_limits: RateLimits = field(default_factory=RateLimits)
    #: Answer the admin API (``/admin/*``) for non-loopback peers too.
    admin_allow_remote: bool = False
    #: Seed of the fault dice, so a run with faults repeats.
    fault_seed: int = 0
    #: Accepted skew between an OpenAPI request's timestamp and wall time, seconds.
    timestamp_skew_s: float = 900.0
    #: Upper bound of remembered OpenAPI nonces (they also expire after the skew window).
    nonce_capacity: int = 200_000
    #: How many feed events are kept for followers (older ``after`` -> reset).
    feed_keep: int = 10_000
    #: Longest ``/admin/feed`` long poll, real seconds.
    feed_max_timeout_s: float = 30.0
    #: Largest accepted request body, bytes (larger -> parameter error, not a 5xx).
    max_body_bytes: int = 1_048_576
    #: Header, body and idle time a connection may take (real seconds; --header-timeout,
    #: --body-timeout, --idle-timeout; docs/authserver.md "Security").
    http: HttpLimits = field(default_factory=HttpLimits)
    #: Virtual seconds between sweeps of expired revocations from memory.
    sweep_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port!r}")
        if self.data_dir is not None and not isinstance(self.data_dir, Path):
            object.__setattr__(self, "data_dir", Path(self.data_dir))
        if self.timestamp_skew_s <= 0 or self.feed_max_timeout_s <= 0:
            raise ValueError("timestamp_skew_s and feed_max_timeout_s must be > 0")
        if self.nonce_capacity < 1 or self.feed_keep < 1 or self.max_body_bytes < 1024:
            raise ValueError("nonce_capacity, feed_keep >= 1 and max_body_bytes >= 1024")
        if self.sweep_interval_s <= 0:
            raise ValueError("sweep_interval_s must be > 0")
        if not isinstance(self.rate_limits, RateLimits):
            raise ValueError("rate_limits must be a RateLimits")
        ids = [i.instance_id for i in self.instances]
        if len(ids) != len(set(ids)):
            raise ValueError("an instance is listed twice in 'instances'")
        if not isinstance(self.http, HttpLimits):
            raise ValueError("http must be an HttpLimits")


def parse_bool(value: object) -> bool:
    """Explicit boolean parsing: ``"false"`` is false (STYLE.md: unlike moto)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class AccountsFile:
    """What an accounts file holds: accounts, and parent topics per instance."""

    accounts: tuple[AccountSpec, ...] = ()
    instances: tuple[InstanceSpec, ...] = ()


def load_accounts_file(path: Path) -> AccountsFile:
    """Accounts and instances from JSON or TOML (by suffix; ``.toml`` is TOML, anything
    else JSON).  Raises :class:`ValueError` saying what is wrong, and where.

    Shape (JSON; TOML: ``[[accounts]]`` tables and ``[instances.<id>]`` tables)::

        {"accounts": [{"access_key_id", "secret", "instances", "enabled"?}],
         "instances": {"<instance id>": {"parent_topics": ["fleet", "demo"]}}}

    ``instances`` is optional; every instance named there must be owned by an account
    (of this file or already stored: the server checks at start).
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if Path(path).suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not valid {Path(path).suffix or 'JSON'}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object with 'accounts' (and 'instances')")
    unknown_top = set(data) - {"accounts", "instances"}
    if unknown_top:
        raise ValueError(f"{path}: unknown top-level keys {sorted(unknown_top)}")
    items = data.get("accounts", [])
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list under 'accounts'")
    accounts = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: accounts[{i}] is not an object")
        unknown = set(item) - {"access_key_id", "secret", "instances", "enabled"}
        if unknown:
            raise ValueError(f"{path}: accounts[{i}] has unknown keys {sorted(unknown)}")
        try:
            accounts.append(
                AccountSpec(
                    access_key_id=item.get("access_key_id"),  # type: ignore[arg-type]
                    secret=item.get("secret"),  # type: ignore[arg-type]
                    instances=tuple(item.get("instances") or ()),
                    enabled=parse_bool(item.get("enabled", True)),
                )
            )
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: accounts[{i}]: {exc}") from None
    table = data.get("instances", {})
    if not isinstance(table, dict):
        raise ValueError(
            f"{path}: expected an object under 'instances': {{instance id: {{parent_topics}}}}"
        )
    instances = []
    for instance_id, spec in table.items():
        where = f"{path}: instances[{instance_id!r}]"
        if not isinstance(spec, dict):
            raise ValueError(f"{where} is not an object")
        unknown = set(spec) - {"parent_topics"}
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}")
        topics = spec.get("parent_topics", [])
        if not isinstance(topics, list):
            raise ValueError(f"{where}: 'parent_topics' must be a list of names")
        try:
            instances.append(InstanceSpec(instance_id, tuple(topics)))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    return AccountsFile(tuple(accounts), tuple(instances))
