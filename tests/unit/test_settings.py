"""Settings: files, then environment; validated once, errors naming the key."""
from pathlib import Path

import pytest

from wallet_market.settings import SettingsError, load_settings

CONFIG = Path(__file__).resolve().parents[2] / "config"


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
        environ={"WALLET_MARKET_ENV": "production", "WALLET_MARKET_SECRET_KEY": "e" * 40}, config_dir=tmp_path
    )
    assert settings.secret_key == "e" * 40


def test_production_refuses_a_short_secret():
    with pytest.raises(SettingsError, match="secret_key"):
        load_settings(environ={"WALLET_MARKET_ENV": "production", "WALLET_MARKET_SECRET_KEY": "short"}, config_dir=CONFIG)
