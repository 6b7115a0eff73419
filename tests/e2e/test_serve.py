"""End to end: `wallet-market serve` in a fresh directory, called over HTTP.

It runs on an embedded Redis, as a new user starts it, unless
``WALLET_MARKET_TEST_REDIS_URL`` names a Redis (or a Redis Cluster): then the
service is pointed at it under a key prefix of its own, removed afterwards.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.redis_keys import delete_prefix

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
    """The service as a new user starts it: a fresh working directory, two workers, no Redis URL but the test's."""
    workdir = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLET_MARKET_")}
    env.update(
        WALLET_MARKET_CONFIG_DIR=str(ROOT / "config"),
        WALLET_MARKET_SECRET_KEY=SECRET,
        WALLET_MARKET_DEMO_CATALOGUE=str(ROOT / "config" / "demo_catalogue.toml"),
        WALLET_MARKET_SNAPSHOT_POLL_SECONDS="30",
        # The pages below must show their best products. By default a layout now and then shows
        # an alternative in one slot (exploration, 200 bps, tested in tests/unit/test_placement.py),
        # and the logged-in page's top banner then failed its assertion.
        WALLET_MARKET_EXPLORATION_BPS="0",
        PYTHONUNBUFFERED="1",
    )
    redis_url = os.environ.get("WALLET_MARKET_TEST_REDIS_URL")
    prefix = f"wmtest-e2e-{uuid.uuid4().hex[:10]}"
    if redis_url:
        env.update(WALLET_MARKET_REDIS_URL=redis_url, WALLET_MARKET_KEY_PREFIX=prefix)
    log = open(workdir / "serve.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "wallet_market", "serve", "--port", str(port), "--workers", "2"],
        cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield _wait_until_ready(process, log, port, env, redis_url, workdir)
    finally:  # also when it never became ready: nothing started here outlives the tests
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        if redis_url:
            delete_prefix(redis_url, prefix)


def _wait_until_ready(process, log, port, env, redis_url, workdir) -> dict:
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
    return {"base": base, "keys": keys, "workdir": workdir, "env": env, "redis_url": redis_url}


def _cli(served, *args) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "wallet_market", *args],
        cwd=served["workdir"], env=served["env"], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_serve_starts_and_prints_demo_keys(served):
    """With no Redis URL it starts its own, keeping its data under the working directory."""
    assert set(served["keys"]) == {"app", "pm", "finance", "internal"}
    if served["redis_url"] is None:
        assert (served["workdir"] / "var" / "wallet_market.db").exists() or any((served["workdir"] / "var").iterdir())
    else:
        assert not (served["workdir"] / "var").exists()
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
    # A draft equal to the served version publishes nothing: change something first.
    changed = requests.patch(
        served["base"] + "/admin/v1/pages/home", json={"title": f"Home {time.time_ns()}"}, headers=pm, timeout=5
    )
    assert changed.status_code == 200, changed.text
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
