"""AppServerConfig: validated, every field has an effect (the effect tests live with the
component that reads the field)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sim.customer.appserver.config import AppServerConfig
from sim.customer.appserver.errors import ConfigError


def test_defaults_are_the_dev_account() -> None:
    c = AppServerConfig()
    assert (c.access_key, c.secret_key, c.instance_id) == ("dev-ak", "dev-sk", "mqtt-dev")
    assert c.authserver_url == "http://127.0.0.1:18080" and c.port == 18081
    assert c.db_path is None


def test_data_dir_string_becomes_a_path(tmp_path: Path) -> None:
    c = AppServerConfig(data_dir=str(tmp_path))  # type: ignore[arg-type]
    assert c.db_path == tmp_path / "appserver.sqlite3"


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("port", 70000, "port"),
        ("authserver_url", "ftp://x", "authserver_url"),
        ("authserver_url", "127.0.0.1:18080", "authserver_url"),
        ("access_key", "a b", "access_key"),
        ("instance_id", "", "instance_id"),
        ("secret_key", "", "secret_key"),
        ("token_ttl_s", 59, "token_ttl_s"),
        ("token_ttl_s", 31 * 86400, "token_ttl_s"),
        ("token_ttl_s", float("nan"), "finite"),
        ("refresh_margin_s", 3600, "refresh_margin_s"),
        ("refresh_margin_s", -1, "refresh_margin_s"),
        ("upstream_timeout_s", 0, "upstream_timeout_s"),
        ("breaker_failures", 0, "breaker_failures"),
        ("breaker_open_s", 0, "breaker_open_s"),
        ("breaker_jitter", -0.1, "breaker_jitter"),
        ("retry_after_s", 0, "retry_after_s"),
        ("drain_rate_per_s", 0, "drain_rate_per_s"),
        ("drain_burst", 0, "drain_burst"),
        ("drain_max_wait_s", -1, "drain_max_wait_s"),
        ("revoke_retry_s", 0, "revoke_retry_s"),
        ("password_hash_cost", 0, "password_hash_cost"),
        ("credential_cache_s", 0, "credential_cache_s"),
        ("credential_cache_size", 0, "credential_cache_size"),
        ("max_body_bytes", 10, "max_body_bytes"),
        ("serve_stale", "false", "serve_stale"),
        ("admin_remote", 1, "admin_remote"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        AppServerConfig(**{field: value})  # type: ignore[arg-type]


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        AppServerConfig().port = 1  # type: ignore[misc]
