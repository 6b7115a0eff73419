"""Settings: files, then environment; validated once, errors naming the key."""
from pathlib import Path

import pytest

from wallet_market.settings import SettingsError, load_settings

CONFIG = Path(__file__).resolve().parents[2] / "config"
PRODUCTION_REDIS = {"WALLET_MARKET_REDIS_URL": "redis://redis.internal:6379/0"}
PRODUCTION = {"WALLET_MARKET_ENV": "production", "WALLET_MARKET_SECRET_KEY": "p" * 40}


def test_defaults_then_environment_file_then_variables():
    settings = load_settings(environ={"WALLET_MARKET_ENV": "testing", "WALLET_MARKET_APR_CAP_BPS": "2000"}, config_dir=CONFIG)
    assert settings.env == "testing"
    assert settings.log_level == "WARNING"  # from testing.toml over default.toml
    assert settings.apr_cap_bps == 2000  # from the environment over both files
    assert settings.placement_view == "group"  # the default view is the group's whole P&L


@pytest.mark.parametrize(
    "variable, value, named",
    [
        ("WALLET_MARKET_APR_CAP_BPS", "2500", "apr_cap_bps"),  # above the 24% ceiling
        ("WALLET_MARKET_APR_CAP_BPS", "lots", "apr_cap_bps"),
        ("WALLET_MARKET_PLACEMENT_VIEW", "everyone", "placement_view"),
        ("WALLET_MARKET_REDIS_URL", "http://localhost", "redis_url"),
        ("WALLET_MARKET_ENV", "staging", "env"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_key(variable, value, named):
    with pytest.raises(SettingsError, match=named):
        load_settings(environ={variable: value}, config_dir=CONFIG)


def test_unknown_key_in_a_config_file_is_refused(tmp_path):
    (tmp_path / "default.toml").write_text('apr_cap = 2400\n')
    with pytest.raises(SettingsError, match="apr_cap"):
        load_settings(environ={}, config_dir=tmp_path)


def test_production_takes_the_secret_only_from_the_environment(tmp_path):
    (tmp_path / "default.toml").write_text('secret_key = "' + "s" * 40 + '"\n')
    with pytest.raises(SettingsError, match="secret_key"):
        load_settings(environ={"WALLET_MARKET_ENV": "production"}, config_dir=tmp_path)
    settings = load_settings(
        environ={"WALLET_MARKET_ENV": "production", "WALLET_MARKET_SECRET_KEY": "e" * 40, **PRODUCTION_REDIS},
        config_dir=tmp_path,
    )
    assert settings.secret_key == "e" * 40


def test_production_refuses_a_short_secret():
    with pytest.raises(SettingsError, match="secret_key"):
        load_settings(environ={"WALLET_MARKET_ENV": "production", "WALLET_MARKET_SECRET_KEY": "short"}, config_dir=CONFIG)


def test_production_refuses_to_start_without_a_redis_url():
    with pytest.raises(SettingsError, match="WALLET_MARKET_REDIS_URL") as refused:
        load_settings(environ=PRODUCTION, config_dir=CONFIG)
    assert "WALLET_MARKET_ALLOW_EMBEDDED_REDIS" in str(refused.value)
    assert load_settings(environ={**PRODUCTION, **PRODUCTION_REDIS}, config_dir=CONFIG).redis_url == PRODUCTION_REDIS[
        "WALLET_MARKET_REDIS_URL"
    ]


def test_production_runs_on_the_embedded_redis_only_when_asked_by_name():
    settings = load_settings(environ={**PRODUCTION, "WALLET_MARKET_ALLOW_EMBEDDED_REDIS": "true"}, config_dir=CONFIG)
    assert settings.redis_url is None and settings.allow_embedded_redis is True
    with pytest.raises(SettingsError, match="allow_embedded_redis"):
        load_settings(environ={**PRODUCTION, "WALLET_MARKET_ALLOW_EMBEDDED_REDIS": "perhaps"}, config_dir=CONFIG)


def test_the_embedded_redis_needs_no_opt_in_outside_production():
    assert load_settings(environ={"WALLET_MARKET_ENV": "development"}, config_dir=CONFIG).redis_url is None


@pytest.mark.parametrize("env", ["development", "testing", "production"])
def test_an_unknown_variable_stops_start_up_naming_it_in_every_env(env):
    environ = {**PRODUCTION, **PRODUCTION_REDIS, "WALLET_MARKET_ENV": env, "WALLET_MARKET_RATE_LIMT_PER_MINUTE": "0"}
    with pytest.raises(SettingsError, match="WALLET_MARKET_RATE_LIMT_PER_MINUTE") as refused:
        load_settings(environ=environ, config_dir=CONFIG)
    assert "did you mean WALLET_MARKET_RATE_LIMIT_PER_MINUTE" in str(refused.value)


def test_variables_read_outside_the_settings_are_known():
    environ = {
        "WALLET_MARKET_CONFIG_DIR": str(CONFIG),
        "WALLET_MARKET_TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
        "WALLET_MARKET_POSTBACK_SECRET": "s" * 20,
        "WALLET_MARKETING": "not ours: no underscore after the prefix",
    }
    assert load_settings(environ=environ, config_dir=CONFIG).env == "development"


def test_the_rate_limit_can_be_switched_off_but_not_made_negative():
    assert load_settings(environ={"WALLET_MARKET_RATE_LIMIT_PER_MINUTE": "0"}, config_dir=CONFIG).rate_limit_per_minute == 0
    with pytest.raises(SettingsError, match="rate_limit_per_minute"):
        load_settings(environ={"WALLET_MARKET_RATE_LIMIT_PER_MINUTE": "-1"}, config_dir=CONFIG)
