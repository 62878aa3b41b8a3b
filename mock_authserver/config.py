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

__all__ = [
    "DEFAULT_PORT",
    "DEV_ACCOUNT",
    "AccountSpec",
    "AuthServerConfig",
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


#: The documented dev account, present in every fresh data dir.
DEV_ACCOUNT = AccountSpec("dev-ak", "dev-sk", ("mqtt-dev",))


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
    #: Create the dev account (``dev-ak``/``dev-sk``/``mqtt-dev``) in a fresh data dir.
    dev_account: bool = True
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


def load_accounts_file(path: Path) -> tuple[AccountSpec, ...]:
    """Accounts from JSON or TOML (by suffix; ``.toml`` is TOML, anything else JSON).

    Shape: ``{"accounts": [{"access_key_id", "secret", "instances", "enabled"?}]}``
    (TOML: ``[[accounts]]`` tables).  Raises :class:`ValueError` saying what is wrong.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if Path(path).suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: not valid {Path(path).suffix or 'JSON'}: {exc}") from None
    items = data.get("accounts") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a list under 'accounts'")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: accounts[{i}] is not an object")
        unknown = set(item) - {"access_key_id", "secret", "instances", "enabled"}
        if unknown:
            raise ValueError(f"{path}: accounts[{i}] has unknown keys {sorted(unknown)}")
        try:
            out.append(
                AccountSpec(
                    access_key_id=item.get("access_key_id"),  # type: ignore[arg-type]
                    secret=item.get("secret"),  # type: ignore[arg-type]
                    instances=tuple(item.get("instances") or ()),
                    enabled=parse_bool(item.get("enabled", True)),
                )
            )
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: accounts[{i}]: {exc}") from None
    return tuple(out)
