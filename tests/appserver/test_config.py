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
        ("revoke_retry_max_s", 1, "revoke_retry_max_s"),
        ("revoke_api", "rpc", "revoke_api"),
        ("openapi_url", "onsmqtt.example", "openapi_url"),
        ("revoke_limit", 0, "revoke_limit"),
        ("revoke_limit", 2.5, "revoke_limit"),
        ("revoke_window_s", 0, "revoke_window_s"),
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


def test_revoke_limit_defaults_to_the_documented_one_of_the_api() -> None:
    from sim.customer.appserver.revocation import RevokeLimit

    assert AppServerConfig().revoke_rate == RevokeLimit(5, 1.0)  # RevokeToken (SPEC §3b)
    assert AppServerConfig(revoke_api="legacy").revoke_rate == RevokeLimit(1, 60.0)
    assert AppServerConfig(revoke_limit=3).revoke_rate == RevokeLimit(3, 1.0)
    assert AppServerConfig(revoke_window_s=2).revoke_rate == RevokeLimit(5, 2.0)
    assert AppServerConfig().revoke_url == AppServerConfig().authserver_url
    assert AppServerConfig(openapi_url="http://o:1").revoke_url == "http://o:1"
    assert AppServerConfig(revoke_api="legacy", openapi_url="http://o:1").revoke_url == (
        AppServerConfig().authserver_url
    )


def test_revocation_flags_reach_the_config() -> None:
    import argparse

    from sim.customer.appserver.cli import add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--revoke-api=legacy",
            "--openapi-url=http://127.0.0.1:9",
            "--revoke-limit=2",
            "--revoke-window=30",
            "--revoke-retry=5",
            "--revoke-retry-max=50",
        ]
    )
    c = config_from_args(args)
    assert (c.revoke_api, c.openapi_url, c.revoke_limit, c.revoke_window_s) == (
        "legacy",
        "http://127.0.0.1:9",
        2,
        30.0,
    )
    assert (c.revoke_retry_s, c.revoke_retry_max_s) == (5.0, 50.0)
    assert config_from_args(parser.parse_args([])).revoke_api == "openapi"
