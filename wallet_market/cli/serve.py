"""``wallet-market serve``: gunicorn workers, the embedded Redis they share, and the ledger worker."""
from __future__ import annotations

import atexit
import gc
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import click
from gunicorn.app.base import BaseApplication

from ..settings import Settings, load_settings
from .context import settings as cli_settings


GC_YOUNG_THRESHOLD = 20_000


class GunicornApp(BaseApplication):
    """Runs ``create_app()`` in every gunicorn worker (after the fork, so nothing is shared by accident)."""

    def __init__(self, options: dict, factory=None):
        self.options = options
        self.factory = factory
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        if self.factory is not None:
            application = self.factory()
        else:
            from ..app import create_app

            application = create_app()
        # The app's long-lived objects (catalogue snapshot, indexes, schemas) never become
        # garbage: keep them out of the collector's generations so requests do not pay to rescan them.
        gc.collect()
        gc.freeze()
        # A request allocates thousands of short-lived objects and creates no reference cycles
        # worth collecting early: run the young-generation collector less often.
        gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
        return application


def gunicorn_options(host: str, port: int, workers: int, threads: int) -> dict:
    """The server settings shared by the service and the benchmark's baseline."""

    def child_exit(server, worker):
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid)

    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread" if threads > 1 else "sync",
        "keepalive": 5,
        "backlog": 2048,
        "timeout": 30,
        "graceful_timeout": 10,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "child_exit": child_exit,
    }


def run(settings: Settings, *, host: str, port: int, workers: int, threads: int, with_worker: bool) -> None:
    """Start everything ``serve`` runs and block until stopped."""
    from ..store.connection import EmbeddedRedis

    embedded = None
    if not settings.redis_url:
        # Started here, in the master, and shared by every worker through its socket.
        embedded = EmbeddedRedis(settings.embedded_redis_path)
        os.environ["WALLET_MARKET_REDIS_URL"] = embedded.url
        settings = load_settings()
        click.echo(f"Embedded Redis: {embedded.data_file}")
    metrics_dir = tempfile.mkdtemp(prefix="wallet-market-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from prometheus_client import values

    # Whatever imported prometheus-client before this point, metrics created from now on
    # (in the workers) write to the shared directory.
    values.ValueClass = values.get_value_class()
    atexit.register(shutil.rmtree, metrics_dir, True)

    from ..composition import build_components
    from ..services.catalogue_files import load_demo_if_empty

    comps = build_components(settings)
    try:
        load_demo_if_empty(comps.admin, comps.api_keys, settings, echo=click.echo)
    finally:
        comps.redis.close()

    worker = None
    if with_worker:
        worker = subprocess.Popen([sys.executable, "-m", "wallet_market", "worker"], env=os.environ.copy())
        click.echo(f"Ledger worker started (pid {worker.pid}).")

    def _stop_worker(*_):
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()

    atexit.register(_stop_worker)
    click.echo(f"Serving on http://{host}:{port} with {workers} worker(s); OpenAPI at /openapi.json, docs at /docs.")
    try:
        GunicornApp(gunicorn_options(host, port, workers, threads)).run()
    finally:
        _stop_worker()
        if embedded is not None:
            embedded.close()


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=int, show_default=True)
@click.option("--workers", default=2, type=click.IntRange(1, 64), show_default=True)
@click.option("--threads", default=1, type=click.IntRange(1, 64), show_default=True, help="Threads per worker.")
@click.option("--no-worker", is_flag=True, help="Do not start the ledger worker beside the web workers.")
def serve(host: str, port: int, workers: int, threads: int, no_worker: bool) -> None:
    """Serve the API with gunicorn (embedded Redis when WALLET_MARKET_REDIS_URL is unset)."""
    run(cli_settings(), host=host, port=port, workers=workers, threads=threads, with_worker=not no_worker)


def register(main: click.Group) -> None:
    main.add_command(serve)
