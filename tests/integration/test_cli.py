"""The wallet-market command on the real store: keys, tokens, catalogue load and export."""
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.catalogue_builders import admin_catalogue
from wallet_market.cli import main
from wallet_market.services.tokens import UserTokens
from wallet_market.store.access import key_hash
from wallet_market.store.connection import client_from_url

ROOT = Path(__file__).resolve().parents[2]
SECRET = "cli-secret-0123456789abcdef0123456789"


@pytest.fixture
def run(redis_url, key_prefix):
    env = {
        "WALLET_MARKET_REDIS_URL": redis_url,
        "WALLET_MARKET_KEY_PREFIX": key_prefix,
        "WALLET_MARKET_ENV": "testing",
        "WALLET_MARKET_SECRET_KEY": SECRET,
    }

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


def test_keys_create_prints_a_key_whose_hash_is_stored(run, redis_url, key_prefix):
    result = run("keys", "create", "--role", "finance", "--name", "cfo-office")
    assert result.exit_code == 0
    api_key = result.output.strip()
    assert re.fullmatch(r"wm_finance_[A-Za-z0-9_\-]+", api_key)
    stored = client_from_url(redis_url).hget(f"{key_prefix}:{{auth}}:api_keys", key_hash(api_key))
    assert json.loads(stored)["role"] == "finance" and json.loads(stored)["name"] == "cfo-office"
    assert run("keys", "create", "--role", "root").exit_code == 2


def test_token_is_signed_with_the_configured_secret_and_expires(run):
    result = run("token", "user-42", "--ttl", "120")
    assert result.exit_code == 0
    assert UserTokens(SECRET, 60).user_id(result.output.strip()) == "user-42"


def test_catalog_load_export_round_trip(run, tmp_path):
    source = tmp_path / "catalogue.json"
    source.write_text(json.dumps(admin_catalogue()))
    loaded = run("catalog", "load", str(source), "--publish")
    assert loaded.exit_code == 0, loaded.output
    assert "3 products" in loaded.output and "version 1" in loaded.output
    exported = tmp_path / "exported.toml"
    assert run("catalog", "export", "--output", str(exported)).exit_code == 0
    again = run("catalog", "load", str(exported))
    assert again.exit_code == 0, again.output
    second = tmp_path / "second.toml"
    run("catalog", "export", "--output", str(second))
    assert exported.read_text() == second.read_text()


def test_catalog_load_refuses_a_guard_violation_naming_the_field(run, tmp_path):
    body = admin_catalogue()
    body["products"][1]["apr_max_bps"] = 3600
    source = tmp_path / "bad.json"
    source.write_text(json.dumps(body))
    result = run("catalog", "load", str(source))
    assert result.exit_code != 0 and "apr_max_bps" in result.output
    draft = json.loads(run("catalog", "export", "--format", "json").output)
    assert draft == {"pages": [], "partners": [], "products": [], "rules": []}  # nothing half-loaded


def test_demo_catalogue_file_loads(run):
    result = run("catalog", "load", str(ROOT / "config" / "demo_catalogue.toml"))
    assert result.exit_code == 0, result.output
    assert "7 products" in result.output


def test_catalog_load_publish_of_an_unchanged_catalogue_makes_no_new_version(run, tmp_path):
    source = tmp_path / "catalogue.json"
    source.write_text(json.dumps(admin_catalogue()))
    assert "Published as version 1" in run("catalog", "load", str(source), "--publish").output
    again = run("catalog", "load", str(source), "--publish")
    assert again.exit_code == 0 and "equals version 1: nothing to publish" in again.output
