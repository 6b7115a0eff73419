"""Production on the embedded Redis (asked for by name): no demo catalogue, no key printed; the operator
makes the first key and publishes the first rule set beside the running service."""
from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from tests.processes import ROOT, Served, service_env, wait_until

pytestmark = pytest.mark.e2e

PRODUCTION_SECRET = "prod-secret-0123456789abcdef0123456789abcdef"


def production_env(**settings: str) -> dict[str, str]:
    env = service_env(env="production", **settings)
    env["WALLET_MARKET_SECRET_KEY"] = PRODUCTION_SECRET
    env.pop("WALLET_MARKET_DEMO_CATALOGUE")
    return env


def command(env: dict[str, str], cwd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wallet_market", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_production_on_the_embedded_redis_loads_no_demo_and_prints_no_key(tmp_path):
    env = production_env(allow_embedded_redis="true")
    served = Served(tmp_path, env, "--workers", "1").start(expect=(503,))  # nothing published: not ready
    try:
        log = served.log()
        assert "wm_" not in log and "demo" not in log.lower()
        assert "wallet-market keys create" in log and "catalog load" in log
        assert requests.get(f"{served.base}/readyz", timeout=5).json()["ruleset_version"] is None

        # the operator's first steps, beside the running service
        key = command(env, tmp_path, "keys", "create", "--role", "app", "--name", "wallet-app")
        assert key.returncode == 0, key.stderr
        api_key = key.stdout.strip()
        loaded = command(env, tmp_path, "catalog", "load", str(ROOT / "config" / "demo_catalogue.toml"), "--publish")
        assert loaded.returncode == 0, loaded.stderr

        def ready() -> bool:
            return requests.get(f"{served.base}/readyz", timeout=5).status_code == 200

        assert wait_until(ready, 30, 0.2)
        layout = requests.get(
            f"{served.base}/v1/layout", params={"page": "home"}, headers={"Authorization": f"Bearer {api_key}"}, timeout=10
        )
        assert layout.status_code == 200 and layout.json()["degraded"] is False
    finally:
        assert served.stop() == 0, served.log()
