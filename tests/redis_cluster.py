"""A local Redis Cluster of three masters, for tests and CI.

As a helper::

    with LocalCluster(tmp_dir) as cluster:
        cluster.url   # redis+cluster://127.0.0.1:PORT

As a script (the servers outlive the command; ``stop`` ends exactly the pids
``start`` wrote to ``DIR/pids``)::

    python -m tests.redis_cluster start DIR    # prints the URL
    python -m tests.redis_cluster stop DIR

Each master runs the OS ``redis-server`` on a free port, keeps nothing on disk
(``--save '' --appendonly no``) and has its working files in a directory of its
own under ``DIR``. Every wait is bounded; a start that fails stops whatever it
had started.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
BUS_PORT_OFFSET = 10_000  # Redis Cluster's node-to-node port is the client port + 10000
START_SECONDS = 20.0
STOP_SECONDS = 10.0
PIDS_FILE = "pids"
URL_FILE = "url"


class ClusterError(RuntimeError):
    """The cluster could not be started (the message says which step failed)."""


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int, taken: set[int] | None = None) -> list[int]:
    """``count`` ports free now whose cluster bus ports (+10000) are free too."""
    taken = set(taken or ())
    ports: list[int] = []
    for _ in range(200):
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        bus = port + BUS_PORT_OFFSET
        if port in taken or bus > 65_535 or bus in taken or not _port_free(bus):
            continue
        ports.append(port)
        taken.update((port, bus))
        if len(ports) == count:
            return ports
    raise ClusterError(f"found only {len(ports)} of {count} free port pairs")


def _cli(port: int, *args: str, timeout: float = 5.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["redis-cli", "-h", HOST, "-p", str(port), *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def _wait(what: str, check, deadline: float) -> None:
    while True:
        try:
            if check():
                return
        except (subprocess.TimeoutExpired, OSError):
            pass
        if time.monotonic() >= deadline:
            raise ClusterError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _is_our_server(pid: int, port: int) -> bool:
    """True while ``pid`` is still the redis-server listening on ``port`` (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and b"redis-server" in cmdline[0] and str(port).encode() in b" ".join(cmdline)


class LocalCluster:
    """Three (or ``masters``) cluster-enabled redis-server processes with all slots assigned."""

    def __init__(self, directory: str | os.PathLike[str], masters: int = 3):
        if masters < 3:
            raise ValueError("Redis Cluster needs at least three masters")
        self.directory = Path(directory)
        self.masters = masters
        self.servers: dict[int, int] = {}  # port -> pid, of the processes this object started

    @property
    def url(self) -> str:
        port = next(iter(self.servers))
        return f"redis+cluster://{HOST}:{port}"

    def start(self) -> str:
        if redis_server_path() is None:
            raise ClusterError("redis-server is not installed (apt-get install -y redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._start_servers()
            self._create()
        except BaseException:
            self.stop()
            raise
        self._write_state()
        return self.url

    def _start_servers(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        for port in free_ports(self.masters):
            node_dir = self.directory / f"node-{port}"
            node_dir.mkdir()
            log = open(node_dir / "redis.log", "wb")
            process = subprocess.Popen(
                [
                    "redis-server", "--port", str(port), "--bind", HOST,
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "5000",
                    "--save", "", "--appendonly", "no",
                    "--dir", str(node_dir), "--daemonize", "no",
                ],
                cwd=node_dir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # a script's Ctrl-C or exit does not take the servers along
            )
            log.close()
            self.servers[port] = process.pid
            self._write_state()
        for port in self.servers:
            _wait(f"redis-server on port {port}", lambda p=port: _cli(p, "PING").stdout.strip() == "PONG", deadline)

    def _create(self) -> None:
        nodes = [f"{HOST}:{port}" for port in self.servers]
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=START_SECONDS, stdin=subprocess.DEVNULL,
        )
        if created.returncode != 0:
            raise ClusterError(f"redis-cli --cluster create failed:\n{created.stdout}{created.stderr}")
        deadline = time.monotonic() + START_SECONDS

        def ready(port: int) -> bool:
            info = _cli(port, "CLUSTER", "INFO").stdout
            return "cluster_state:ok" in info and f"cluster_known_nodes:{self.masters}" in info

        for port in self.servers:
            _wait(f"cluster_state:ok on port {port}", lambda p=port: ready(p), deadline)

    def _write_state(self) -> None:
        lines = "".join(f"{pid} {port}\n" for port, pid in self.servers.items())
        (self.directory / PIDS_FILE).write_text(lines)
        if self.servers:
            (self.directory / URL_FILE).write_text(self.url + "\n")

    def stop(self) -> None:
        """Stop exactly the servers this object (or the ``start`` that wrote its pids file) started."""
        stop_pids(self.servers)
        self.servers.clear()
        for path in self.directory.glob("node-*"):
            shutil.rmtree(path, ignore_errors=True)
        for name in (PIDS_FILE, URL_FILE):
            (self.directory / name).unlink(missing_ok=True)

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str]) -> "LocalCluster":
        """The cluster a ``start`` left running in ``directory`` (from its pids file)."""
        cluster = cls(directory)
        pids = Path(directory) / PIDS_FILE
        if pids.exists():
            for line in pids.read_text().split("\n"):
                if line.strip():
                    pid, port = line.split()
                    cluster.servers[int(port)] = int(pid)
        return cluster

    def __enter__(self) -> "LocalCluster":
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()


def stop_pids(servers: dict[int, int]) -> None:
    """SIGTERM each ``port -> pid`` still running as that redis-server; SIGKILL what outlives the wait."""
    alive = {pid: port for port, pid in servers.items() if not _reap(pid) and _is_our_server(pid, port)}
    for pid in alive:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + STOP_SECONDS
    while alive and time.monotonic() < deadline:
        for pid in list(alive):
            if _reap(pid) or not _is_our_server(pid, alive[pid]):
                del alive[pid]
        time.sleep(0.05)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(pid)


def _reap(pid: int) -> bool:
    """Collect ``pid`` if it is our exited child; True when it is gone."""
    try:
        done, _status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (started by an earlier ``start``): /proc tells
        return not Path(f"/proc/{pid}").exists()
    return done == pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.redis_cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("directory", help="a directory of the cluster's own (its pids and node files)")
    parser.add_argument("--masters", type=int, default=3)
    args = parser.parse_args(argv)
    if args.action == "start":
        try:
            url = LocalCluster(args.directory, masters=args.masters).start()
        except ClusterError as exc:
            print(f"redis_cluster: {exc}", file=sys.stderr)
            return 1
        print(url)
        return 0
    LocalCluster.from_directory(args.directory).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
