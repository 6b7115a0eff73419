"""Start-up refusals of the real commands (run in process): production without a Redis URL, and a
``WALLET_MARKET_*`` variable that names no setting, in every command, as one line naming it."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from wallet_market.cli import main

PRODUCTION = {"WALLET_MARKET_ENV": "production", "WALLET_MARKET_SECRET_KEY": "prod-secret-0123456789abcdef0123456789"}


def run(env: dict[str, str], *args: str):
    return CliRunner().invoke(main, list(args), env={"WALLET_MARKET_REDIS_URL": None, **env})


def test_production_serve_refuses_to_start_without_a_redis_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(PRODUCTION, "serve", "--port", "1")
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    assert "WALLET_MARKET_REDIS_URL" in result.output and "WALLET_MARKET_ALLOW_EMBEDDED_REDIS" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "var").exists()  # nothing was started


@pytest.mark.parametrize("args", [("serve", "--port", "1"), ("keys", "create", "--role", "app"), ("token", "u1")])
def test_an_unknown_variable_stops_every_command_naming_it(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = run({"WALLET_MARKET_SECRET_KY": "typo-for-the-secret"}, *args)
    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "WALLET_MARKET_SECRET_KY" in lines[0] and "did you mean WALLET_MARKET_SECRET_KEY" in lines[0]
    assert not (tmp_path / "var").exists()
