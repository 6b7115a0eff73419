"""``wallet-market serve``: the web workers, the embedded Redis they share, and the ledger worker.

The process ``serve`` starts is the master. It alone owns the embedded Redis
(when ``WALLET_MARKET_REDIS_URL`` is unset) and the ledger worker; the web
workers only connect to the Redis socket, so a worker that exits — killed,
recycled after ``--max-requests``, replaced on a reload — takes nothing with
it. On stop the master ends the web workers first, then the ledger worker, and
the embedded Redis last. Every child is asked to die with the master (on Linux
through the kernel's parent-death signal), so even after ``kill -9`` of the
master nothing lingers and ``serve`` restarts in the same directory at once.

Two servers run the same WSGI application: granian (the default; a Rust HTTP
server with keep-alive connections) and gunicorn (``--server gunicorn``).
"""
from __future__ import annotations

import gc
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable

import click

from ..settings import Settings, load_settings
from ..store.connection import child_setup, die_with_parent, start_reaper
from .context import check_reachable
from .context import settings as cli_settings

log = logging.getLogger(__name__)

SERVERS = ("granian", "gunicorn")
DEFAULT_SERVER = "granian"
APP_FACTORY = "wallet_market.app:create_app"
GC_YOUNG_THRESHOLD = 20_000
GRACEFUL_SECONDS = 10
SHORT_LIVED_SECONDS = 5.0  # a granian worker that dies younger than this is respawned after a pause
RESPAWN_PAUSE_SECONDS = 1.0
ORPHAN_GRACE_SECONDS = 2.0  # how long a web worker whose master died may take to stop before it is ended
LEDGER_RESTART_SECONDS = (1.0, 30.0)  # first and longest wait before restarting a ledger worker that died

# The master's pid, recorded before any worker is forked (a forked worker checks it).
_master_pid: int | None = None


def prepare_worker_process() -> None:
    """In a freshly forked web worker: die with the master, whatever way it goes.

    Until the server installs its own handlers, a SIGTERM or SIGINT ends the
    worker at once (a fork inherits the master's handlers, which would ignore it
    while the app is still being built). When the master dies, the kernel sends
    the worker SIGTERM for a graceful stop; a reaper process makes sure the
    worker is gone ``ORPHAN_GRACE_SECONDS`` later even if that stop hangs. It
    has hung: a granian worker was seen stuck in its signal handler, entered
    twice, with every other thread waiting for the interpreter's lock, so no
    thread of the worker could have ended it.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    master = _master_pid if _master_pid is not None else os.getppid()
    asked = die_with_parent(signal.SIGTERM, expected_parent=master)
    start_reaper(master, ORPHAN_GRACE_SECONDS, stop_first=not asked)


def tune_collector() -> None:
    """Keep the app's start-up objects out of the collector and run the young generation less often.

    The catalogue snapshot, indexes and schemas never become garbage; a
    request allocates thousands of short-lived objects and no reference cycles
    worth collecting early.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def load_application(factory: Callable | None = None):
    """The WSGI application of one web worker, built after the fork so nothing is shared by accident."""
    if factory is not None:
        application = factory()
    else:
        from ..app import create_app

        application = create_app()
    tune_collector()
    return application


# -- gunicorn ---------------------------------------------------------------------
def gunicorn_options(host: str, port: int, workers: int, threads: int, max_requests: int = 0) -> dict:
    """The gunicorn settings shared by the service and the benchmark's baseline."""

    def post_fork(server, worker):
        prepare_worker_process()

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
        "graceful_timeout": GRACEFUL_SECONDS,
        "max_requests": max_requests,
        "max_requests_jitter": max_requests // 10 if max_requests else 0,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "post_fork": post_fork,
        "child_exit": child_exit,
    }


def run_gunicorn(options: dict, factory: Callable | None = None) -> None:
    from gunicorn.app.base import BaseApplication

    class GunicornApp(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings and value is not None:
                    self.cfg.set(key, value)

        def load(self):
            return load_application(factory)

    GunicornApp().run()


# -- granian ----------------------------------------------------------------------
def _import(path: str) -> Callable:
    module, _, name = path.partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def _granian_loader(factory_path: str):
    """Runs in each granian worker: the app, after the worker is tied to the master."""
    prepare_worker_process()
    return load_application(_import(factory_path))


def _granian_server():
    """granian's server, minus its exit when a worker dies again soon after being respawned.

    granian treats that as a crash loop and stops the whole server, so killing
    the same worker twice within a few seconds would take the service down. Here
    a worker that dies is always respawned, after a short pause when it lived
    only briefly (so a worker that cannot start does not spin).

    A worker forked a moment ago runs the master's signal handlers until it is
    set up (:func:`prepare_worker_process`). There a stop would only set a flag
    in the worker's copy of the server and be lost, and the worker would go on
    to serve until the master killed it ``GRACEFUL_SECONDS`` later; here it
    ends the worker at once, as the same signal does a moment later.
    """
    import time

    from granian import Granian

    class Server(Granian):
        def signal_handler_interrupt(self, signum: int = signal.SIGTERM, *args, **kwargs):
            if os.getpid() != self.pid:  # a worker, not yet set up: stop as the signal says
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            super().signal_handler_interrupt(signum, *args, **kwargs)

        def _respawn_workers(self, workers, spawn_target, target_loader, delay: float = 0):
            now = time.monotonic()
            if not delay and any(now - self.wrks[idx].birth < SHORT_LIVED_SECONDS for idx in workers):
                time.sleep(RESPAWN_PAUSE_SECONDS)
            super()._respawn_workers(workers, spawn_target, target_loader, delay)
            self.respawned_wrks.clear()  # what granian's crash-loop check reads

    return Server


def run_granian(
    host: str, port: int, workers: int, threads: int, worker_lifetime: int | None = None, factory_path: str = ""
) -> None:
    """Serve with granian: WSGI, ``threads`` Python threads per worker, workers respawned when they die."""
    from granian.constants import Interfaces
    from granian.log import LogLevels

    server = _granian_server()(
        factory_path or APP_FACTORY,
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=threads,
        backlog=2048,
        respawn_failed_workers=True,
        workers_lifetime=worker_lifetime,
        workers_kill_timeout=GRACEFUL_SECONDS,
        log_level=LogLevels.warning,
        process_name=None,
    )
    server.serve(target_loader=_granian_loader)


def server_command(server: str, host: str, port: int, workers: int, threads: int, factory_path: str) -> list[str]:
    """A command line that serves ``factory_path`` (``module:function``) like ``serve`` does (for benchmarks)."""
    return [
        sys.executable, "-c",
        "from wallet_market.cli.serve import serve_factory; "
        f"serve_factory({server!r}, {host!r}, {port}, {workers}, {threads}, {factory_path!r})",
    ]


def serve_factory(server: str, host: str, port: int, workers: int, threads: int, factory_path: str) -> None:
    """Serve another WSGI factory on either server, with the workers set up as ``serve`` sets them up."""
    global _master_pid
    _master_pid = os.getpid()
    if server == "gunicorn":
        run_gunicorn(gunicorn_options(host, port, workers, threads), _import(factory_path))
    else:
        run_granian(host, port, workers, threads, factory_path=factory_path)


# -- the ledger worker ---------------------------------------------------------------
class LedgerWorkerProcess:
    """``wallet-market worker`` as a child of the master, restarted if it dies, stopped on request.

    A thread of its own starts, watches and stops it (the parent-death signal
    follows the thread that started the child, so that thread lives as long as
    the child). The consumer name is stable per host and port, so a restarted
    worker first applies what its predecessor left unacknowledged.
    """

    def __init__(self, consumer: str, echo: Callable[[str], None] = click.echo):
        self.consumer = consumer
        self.echo = echo
        self.process: subprocess.Popen | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="ledger-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def _spawn(self) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "wallet_market", "worker", "--consumer", self.consumer],
            env=os.environ.copy(),
            start_new_session=True,  # a Ctrl-C reaches the master, which stops the worker in its turn
            preexec_fn=child_setup(signal.SIGTERM),
        )
        self.process = process
        return process

    def _supervise(self) -> None:
        process = self._spawn()
        self.echo(f"Ledger worker started (pid {process.pid}).")
        self._started.set()
        wait = LEDGER_RESTART_SECONDS[0]
        while not self._stop.wait(0.5):
            code = process.poll()
            if code is None:
                wait = LEDGER_RESTART_SECONDS[0]
                continue
            log.warning("ledger worker (pid %s) exited with %s; restarting in %.0f s", process.pid, code, wait)
            if self._stop.wait(wait):
                break
            wait = min(wait * 2, LEDGER_RESTART_SECONDS[1])
            process = self._spawn()
            self.echo(f"Ledger worker restarted (pid {process.pid}).")
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=GRACEFUL_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        """Stop the worker (it finishes the batch in hand) and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(GRACEFUL_SECONDS + 5)


# -- serve ---------------------------------------------------------------------------
def _multiprocess_metrics() -> str:
    """Every worker writes its samples under one directory; ``/metrics`` sums them."""
    metrics_dir = tempfile.mkdtemp(prefix="wallet-market-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from prometheus_client import values

    # Whatever imported prometheus-client before this point, metrics created from now on
    # (in the workers) write to the shared directory.
    values.ValueClass = values.get_value_class()
    return metrics_dir


def _prepare_store(settings: Settings) -> None:
    """Outside production, an empty store gets the demo catalogue (and demo keys); in production, never."""
    from ..composition import build_components
    from ..services.catalogue_files import load_demo_if_empty

    comps = build_components(settings)
    try:
        keys_before = comps.api_keys.count()
        loaded = False
        if not settings.is_production:
            loaded = load_demo_if_empty(comps.admin, comps.api_keys, settings, echo=click.echo)
        elif comps.catalogue_store.current_version() == 0:
            click.echo("No rule set is published yet: load one with `wallet-market catalog load FILE --publish`.")
    finally:
        comps.close()
    # Keys are shown once, when they are made: say how to get one when none was printed.
    make_one = "make one with `wallet-market keys create --role app|pm|finance|internal`"
    if keys_before:
        click.echo(f"This store already has {keys_before} API key(s), not shown again; {make_one}.")
    elif not loaded:
        click.echo(f"This store has no API key yet; {make_one}.")


def run(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    with_worker: bool,
    server: str = DEFAULT_SERVER,
    max_requests: int = 0,
    worker_lifetime: int | None = None,
) -> None:
    """Start everything ``serve`` runs and block until stopped."""
    from ..store.connection import EmbeddedRedis

    global _master_pid
    _master_pid = os.getpid()
    embedded = None
    metrics_dir = None
    ledger = None
    try:
        if settings.redis_url:
            check_reachable(settings.redis_url)
        else:
            # Started here, in the master, and shared by every worker through its socket.
            embedded = EmbeddedRedis(settings.embedded_redis_path)
            os.environ["WALLET_MARKET_REDIS_URL"] = embedded.url
            settings = load_settings()
            click.echo(f"Embedded Redis: {embedded.data_file}")
        metrics_dir = _multiprocess_metrics()
        _prepare_store(settings)
        # Imported here, before the fork, so every worker (and every replacement) starts with the code loaded.
        from .. import app as _app  # noqa: F401
        if with_worker:
            ledger = LedgerWorkerProcess(f"{socket.gethostname()}-serve-{port}")
            ledger.start()
        click.echo(
            f"Serving on http://{host}:{port} with {server}, {workers} worker(s); "
            "OpenAPI at /openapi.json, docs at /docs."
        )
        if server == "gunicorn":
            run_gunicorn(gunicorn_options(host, port, workers, threads, max_requests))
        else:
            run_granian(host, port, workers, threads, worker_lifetime)
    finally:
        # gunicorn forks its workers from inside the call above, and a worker leaves by raising
        # SystemExit through these frames: only the master may clean up.
        if os.getpid() != _master_pid:
            return
        # The web workers are gone by now; then the ledger worker, and the Redis they used last.
        if ledger is not None:
            ledger.stop()
        if embedded is not None:
            embedded.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=click.IntRange(1, 65535), show_default=True)
@click.option("--workers", default=2, type=click.IntRange(1, 64), show_default=True)
@click.option("--threads", default=1, type=click.IntRange(1, 64), show_default=True, help="Threads per worker.")
@click.option("--server", type=click.Choice(SERVERS), default=DEFAULT_SERVER, show_default=True,
              help="The HTTP server running the workers.")
@click.option("--max-requests", default=0, type=click.IntRange(0, None), show_default=True,
              help="gunicorn: recycle a worker after this many requests (0: never).")
@click.option("--worker-lifetime", default=None, type=click.IntRange(60, None),
              help="granian: recycle a worker after this many seconds.")
@click.option("--no-worker", is_flag=True, help="Do not start the ledger worker beside the web workers.")
def serve(
    host: str, port: int, workers: int, threads: int, server: str, max_requests: int,
    worker_lifetime: int | None, no_worker: bool,
) -> None:
    """Serve the API (embedded Redis when WALLET_MARKET_REDIS_URL is unset)."""
    if max_requests and server != "gunicorn":
        raise click.UsageError("--max-requests needs --server gunicorn (granian recycles by --worker-lifetime)")
    if worker_lifetime and server != "granian":
        raise click.UsageError("--worker-lifetime needs --server granian (gunicorn recycles by --max-requests)")
    run(
        cli_settings(), host=host, port=port, workers=workers, threads=threads, with_worker=not no_worker,
        server=server, max_requests=max_requests, worker_lifetime=worker_lifetime,
    )


def register(main: click.Group) -> None:
    main.add_command(serve)
