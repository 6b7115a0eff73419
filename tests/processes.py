"""Real processes for the served-service tests: ``wallet-market serve``, a redis-server of the test's own,
and what the operating system says about them (children, liveness). Every loop here is bounded."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
SECRET = "e2e-secret-0123456789abcdef0123456789"
DEMO_KEY_LINE = re.compile(r"^\s+(app|pm|finance|internal)\s+(wm_\S+)$", re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


# -- what /proc says ------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields from the state on (the name may hold spaces)


def identity(pid: int) -> tuple[int, str] | None:
    """``(pid, start time)``: the same process, not a later one given the same pid."""
    fields = _stat(pid)
    return (pid, fields[19]) if fields else None


def running(process: tuple[int, str]) -> bool:
    """Whether the process is still there (a zombie waiting to be reaped has ended)."""
    fields = _stat(process[0])
    return bool(fields) and fields[19] == process[1] and fields[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def listening_sockets(port: int) -> set[str]:
    """The inodes of the TCP sockets listening on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # sl, local address:port (hex), remote, state (0A: LISTEN), ..., inode
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(fields[9])
    return found


def sockets_held(pid: int) -> set[str]:
    """The inodes of the sockets among ``pid``'s open files."""
    found = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:["):-1])
    return found


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# -- a redis-server of the test's own --------------------------------------------------
class RedisServer:
    """``redis-server`` on a free port, stopped and started again by its pid.

    With ``durable`` it keeps an append-only file (fsync on every write) in
    ``directory``, so a restart loses nothing it acknowledged; otherwise it
    keeps nothing on disk.
    """

    def __init__(self, directory: Path, durable: bool = False):
        self.directory = directory
        self.port = free_port()
        self.durable = durable
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        if binary is None:
            from wallet_market.store.connection import server_binary

            binary = server_binary()
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else ["--appendonly", "no"]
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.directory),
             "--daemonize", "no", *persistence],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            def answers() -> bool:
                try:
                    return bool(client.ping())
                except redis.RedisError:
                    return False

            assert wait_until(answers, 15), "redis-server did not start"
        finally:
            client.close()
        return self

    def stop(self) -> None:
        """SIGTERM by pid; the server flushes what it acknowledged and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


# -- wallet-market serve ----------------------------------------------------------------
def service_env(**settings: str) -> dict[str, str]:
    """The environment of a served service: this machine's, less any WALLET_MARKET_ variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLET_MARKET_")}
    env.update(
        WALLET_MARKET_CONFIG_DIR=str(ROOT / "config"),
        WALLET_MARKET_SECRET_KEY=SECRET,
        WALLET_MARKET_DEMO_CATALOGUE=str(ROOT / "config" / "demo_catalogue.toml"),
        WALLET_MARKET_SNAPSHOT_POLL_SECONDS="30",
        PYTHONUNBUFFERED="1",
    )
    env.update({f"WALLET_MARKET_{name.upper()}": value for name, value in settings.items()})
    return env


class Served:
    """One ``wallet-market serve`` process, its log, and the demo keys it printed."""

    def __init__(self, workdir: Path, env: dict[str, str], *args: str, port: int | None = None, name: str = "serve"):
        self.workdir = workdir
        self.env = env
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0, expect: tuple[int, ...] = (200,)) -> "Served":
        """Start and wait until ``/readyz`` answers one of ``expect`` (200: ready)."""
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wallet_market", "serve", "--port", str(self.port), *self.args],
            cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log()}")
            try:
                return requests.get(f"{self.base}/readyz", timeout=1).status_code in expect
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or a worker still booting
                return False

        assert wait_until(ready, timeout, 0.2), f"serve never became ready:\n{self.log()}"
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    @property
    def keys(self) -> dict[str, str]:
        return dict(DEMO_KEY_LINE.findall(self.log()))

    @property
    def pid(self) -> int:
        return self.process.pid

    def web_workers(self) -> list[int]:
        """The master's children that serve HTTP (not the ledger worker, not redis-server)."""
        return [
            pid for pid in children(self.pid)
            if " serve " in command_line(pid) + " " and "redis-server" not in command_line(pid)
        ]

    def listening_workers(self) -> list[int]:
        """The web workers holding a socket that listens on the port.

        A granian worker on Linux listens on a socket of its own (SO_REUSEPORT),
        opened once its application is loaded: a worker still starting takes no
        connection yet. A gunicorn worker holds the master's socket from its fork.
        """
        listening = listening_sockets(self.port)
        return [pid for pid in self.web_workers() if sockets_held(pid) & listening]

    def ledger_workers(self) -> list[int]:
        return [pid for pid in children(self.pid) if "wallet_market worker" in command_line(pid)]

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                for pid in descendants(self.pid):
                    os.kill(pid, signal.SIGKILL)
                self.process.kill()
                self.process.wait()
        return self.process.returncode
