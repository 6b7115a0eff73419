"""Shared fixtures: a real Redis (the one ``WALLET_MARKET_TEST_REDIS_URL`` names, else an embedded one),
an isolated key prefix per test, and the app → client → keys chain."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.redis_keys import connect, delete_prefix, is_cluster_url

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-0123456789abcdef0123456789"


def pytest_configure(config):
    os.environ.setdefault("WALLET_MARKET_CONFIG_DIR", str(ROOT / "config"))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    """``WALLET_MARKET_TEST_REDIS_URL`` when set (``redis://``, ``unix://`` or ``redis+cluster://``), else an embedded Redis."""
    url = os.environ.get("WALLET_MARKET_TEST_REDIS_URL")
    if url:
        yield url
        return
    from wallet_market.store.connection import EmbeddedRedis

    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis") / "test.db")
    yield embedded.url
    embedded.close()


@pytest.fixture(scope="session")
def cluster_url(redis_url, tmp_path_factory):
    """A Redis Cluster: the test Redis when it is one, else three local masters started for the session."""
    if is_cluster_url(redis_url):
        yield redis_url
        return
    from tests.redis_cluster import LocalCluster, redis_server_path

    if redis_server_path() is None:
        pytest.skip("redis-server is not installed: no local Redis Cluster")
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster.url


@pytest.fixture
def key_prefix(redis_url):
    """A key prefix of this test's own; its keys are removed afterwards (never FLUSHALL)."""
    prefix = f"wmtest-{uuid.uuid4().hex[:10]}"
    yield prefix
    delete_prefix(redis_url, prefix)


@pytest.fixture
def redis_client(redis_url):
    client = connect(redis_url)
    yield client
    client.close()


@pytest.fixture
def settings_overrides(redis_url, key_prefix, tmp_path):
    return {
        "env": "testing",
        "redis_url": redis_url,
        "key_prefix": key_prefix,
        "secret_key": TEST_SECRET,
        "demo_catalogue": str(ROOT / "config" / "demo_catalogue.toml"),
    }


@pytest.fixture
def app(settings_overrides):
    from wallet_market.app import create_app

    application = create_app(settings_overrides, start_background=False)
    yield application
    application.extensions["wallet_market"].close()


@pytest.fixture
def comps(app):
    return app.extensions["wallet_market"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def api_keys(comps):
    """One API key per role."""
    return {role: comps.api_keys.create(role, name=f"test-{role}") for role in ("app", "pm", "finance", "internal")}


@pytest.fixture
def auth(api_keys):
    """``auth("pm")`` → the headers of a caller with that role."""

    def headers(role: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_keys[role]}", **extra}

    return headers


@pytest.fixture
def demo_app(app, comps):
    """The app with the demo catalogue loaded and published."""
    from wallet_market.services.catalogue_files import load_demo_if_empty

    load_demo_if_empty(comps.admin, comps.api_keys, comps.settings, echo=lambda _line: None)
    comps.snapshots.refresh()
    return app


@pytest.fixture
def cli_env(redis_url, key_prefix):
    """The environment a ``wallet-market`` command needs to share this test's store."""
    return {
        "WALLET_MARKET_REDIS_URL": redis_url,
        "WALLET_MARKET_KEY_PREFIX": key_prefix,
        "WALLET_MARKET_ENV": "testing",
        "WALLET_MARKET_SECRET_KEY": TEST_SECRET,
    }


@pytest.fixture
def cli(cli_env):
    """``cli("keys", "list")`` runs the command in process against this test's store."""
    from click.testing import CliRunner

    from wallet_market.cli import main

    return lambda *args: CliRunner().invoke(main, list(args), env=cli_env)
