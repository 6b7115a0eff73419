"""End to end: `wallet-market serve` in a fresh directory (embedded Redis), called over HTTP."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-secret-0123456789abcdef0123456789"
PARTNERS = ["beichen_bank", "donghai_bank", "haoyue_mcl", "nanfeng_bank", "qingshan_bank", "xingyun_cf"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The service as a new user starts it: no Redis URL, a fresh working directory, two workers."""
    workdir = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLET_MARKET_")}
    env.update(
        WALLET_MARKET_CONFIG_DIR=str(ROOT / "config"),
        WALLET_MARKET_SECRET_KEY=SECRET,
        WALLET_MARKET_DEMO_CATALOGUE=str(ROOT / "config" / "demo_catalogue.toml"),
        WALLET_MARKET_SNAPSHOT_POLL_SECONDS="30",
        PYTHONUNBUFFERED="1",
    )
    log = open(workdir / "serve.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "wallet_market", "serve", "--port", str(port), "--workers", "2"],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a worker still booting
            pass
        if process.poll() is not None:
            log.seek(0)
            pytest.fail(f"serve exited early:\n{log.read()}")
        time.sleep(0.2)
    else:
        log.seek(0)
        pytest.fail(f"serve never became ready:\n{log.read()}")
    log.seek(0)
    keys = dict(re.findall(r"^\s+(app|pm|finance|internal)\s+(wm_\S+)$", log.read(), re.M))
    yield {"base": base, "keys": keys, "workdir": workdir, "env": env}
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def _cli(served, *args) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "wallet_market", *args],
        cwd=served["workdir"], env=served["env"], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_serve_starts_with_no_redis_installed_and_prints_demo_keys(served):
    assert set(served["keys"]) == {"app", "pm", "finance", "internal"}
    assert (served["workdir"] / "var" / "wallet_market.db").exists() or any((served["workdir"] / "var").iterdir())
    assert requests.get(served["base"] + "/healthz", timeout=2).json() == {"status": "ok"}
    metrics = requests.get(served["base"] + "/metrics", timeout=2).text
    assert "wallet_market_request_seconds" in metrics


def test_visitor_and_logged_in_home_pages_over_http(served):
    app_auth = {"Authorization": f"Bearer {served['keys']['app']}"}
    visitor = requests.get(served["base"] + "/v1/layout", params={"page": "home"}, headers=app_auth, timeout=5)
    assert visitor.status_code == 200
    assert visitor.json()["slots"][0]["product"]["product_id"] == "inhouse_loan"

    profile = {"risk_tier": "A", "consents": {"personalized": True, "share_with_partners": PARTNERS}, "age": 30}
    put = requests.put(
        served["base"] + "/v1/users/e2e-user", json=profile,
        headers={"Authorization": f"Bearer {served['keys']['internal']}"}, timeout=5,
    )
    assert put.status_code == 200
    token = _cli(served, "token", "e2e-user", "--ttl", "600")
    logged_in = requests.get(
        served["base"] + "/v1/layout", params={"page": "home"}, headers={**app_auth, "X-User-Token": token}, timeout=5
    )
    assert logged_in.status_code == 200
    assert logged_in.json()["slots"][0]["product"]["product_id"] == "xingyun_loan"


def test_every_worker_serves_a_publish_within_a_second(served):
    pm = {"Authorization": f"Bearer {served['keys']['pm']}"}
    app_auth = {"Authorization": f"Bearer {served['keys']['app']}"}
    published = requests.post(served["base"] + "/admin/v1/rulesets/publish", json={"note": "e2e"}, headers=pm, timeout=5)
    assert published.status_code == 201
    version = published.json()["version"]
    started = time.monotonic()
    seen = set()
    while time.monotonic() - started < 1.0:
        seen.add(requests.get(served["base"] + "/v1/layout", params={"page": "home"}, headers=app_auth, timeout=2).json()["ruleset_version"])
    # after a second of requests spread over both workers, only the new version is served
    late = {requests.get(served["base"] + "/v1/layout", params={"page": "home"}, headers=app_auth, timeout=2).json()["ruleset_version"] for _ in range(20)}
    assert late == {version}


def test_catalog_export_reads_the_same_store(served):
    exported = _cli(served, "catalog", "export")
    assert 'product_id = "xingyun_loan"' in exported and "signing_secret" not in exported
