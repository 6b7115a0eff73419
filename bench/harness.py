"""What the load benchmarks share: their options, a store and app to set up, logged-in users,
the service to start, wrk to run, and the summary and results file of their runs."""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable

from bench.catalogue import DEVICES

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-0123456789abcdef0123456789"
LATENCY_LINE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$")
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}
RESULTS_DIR = ROOT / "bench" / "results"


def wrk_options(parser: argparse.ArgumentParser, *, connections: int) -> argparse.ArgumentParser:
    """Add the options of a wrk load run on the served layout: seconds a run, connections, server
    workers and threads, rounds."""
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=connections)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    return parser


def tree_memory_mb(pid: int) -> float:
    """Memory of process ``pid`` and all its descendants, in MiB: the proportional set size (shared
    pages split between the processes sharing them), else the resident size (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        for source, field in ((f"/proc/{current}/smaps_rollup", "Pss:"), (f"/proc/{current}/status", "VmRSS:")):
            try:
                lines = Path(source).read_text().splitlines()
            except OSError:
                continue
            found = [int(line.split()[1]) for line in lines if line.startswith(field)]
            if found:
                total_kb += found[0]
                break
    return round(total_kb / 1024, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk() -> str:
    """The wrk binary (Debian package ``wrk``), installed with apt-get when missing."""
    found = shutil.which("wrk")
    if not found:
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        subprocess.run(["apt-get", "update"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
    return found


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def rotation_script(path: Path, requests: list[tuple[str, dict[str, str]]]) -> Path:
    """A wrk script that sends ``requests`` (path, extra headers) in turn, so no two in a row are alike."""
    lines = ["local requests = {"]
    for target, headers in requests:
        pairs = ", ".join(f'["{k}"] = "{v}"' for k, v in headers.items())
        lines.append(f'  {{ "{target}", {{ {pairs} }} }},')
    lines += [
        "}",
        "local i = 0",
        "request = function()",
        "  i = i % #requests + 1",
        "  local r = requests[i]",
        "  for k, v in pairs(r[2]) do wrk.headers[k] = v end",
        '  return wrk.format("GET", r[1])',
        "end",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def logged_in_requests(
    comps, count: int, rng: random.Random, profile: Callable[[int], dict[str, Any]]
) -> list[tuple[str, dict[str, str]]]:
    """Store ``profile(n)`` for users 0 … ``count`` − 1 and make one logged-in layout request (path,
    headers) per user, from a device and app version drawn from ``rng`` after the user's profile."""
    requests = []
    for n in range(count):
        body = profile(n)
        user_id = body["user_id"]
        comps.profiles.users.put_profile(user_id, body)
        query = f"/v1/layout?page=home&device_model={rng.choice(DEVICES)}&app_version=5.{rng.randint(0, 9)}.0"
        requests.append((query, {"X-User-Token": comps.user_tokens.mint(user_id, 3600)}))
    return requests


def visitor_requests() -> list[tuple[str, dict[str, str]]]:
    """Visitors' layout requests (path, no extra headers): every bench device with ten app versions."""
    return [(f"/v1/layout?page=home&device_model={d}&app_version=5.{v}.0", {}) for d in DEVICES for v in range(10)]


def wsgi_environs(requests: list[tuple[str, dict[str, str]]], headers: dict[str, str]) -> list[dict]:
    """A WSGI environ for each request (path, its own headers), all with ``headers`` too."""
    from werkzeug.test import EnvironBuilder

    return [EnvironBuilder(path=path, headers={**own, **headers}).get_environ() for path, own in requests]


def answer(app, environs: list[dict], count: int) -> list[str]:
    """Call the WSGI ``app`` ``count`` times, cycling through ``environs``; the statuses that were not 200.

    Then, for the service, write its queued decision log as a served worker's
    background thread does: turning each layout into its analysis record and
    writing it to the stream costs the worker's process per layout too, so a
    benchmark in one process counts it (the bare floor has none).
    """
    failed: list[str] = []

    def start_response(status, headers, exc_info=None):
        if not status.startswith("200"):
            failed.append(status)

    for n in range(count):
        body = app(dict(environs[n % len(environs)]), start_response)
        b"".join(body)
        body.close()
    components = getattr(app, "extensions", {}).get("wallet_market")
    if components is not None:
        components.decision_log.flush()
    return failed


def run_wrk(
    wrk: str,
    url: str,
    *,
    duration: int,
    connections: int,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
    script_args: tuple[str, ...] = (),
    threads: int = 2,
) -> dict:
    """One wrk run: requests per second, latency percentiles (ms) and non-2xx answers."""
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script is not None:
        command += ["-s", str(script)]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {}
    for line in out.splitlines():
        match = LATENCY_LINE.match(line)
        if match:
            latency[f"p{match.group(1)}_ms"] = round(float(match.group(2)) * UNITS[match.group(3)], 3)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, **latency, "non_2xx": int(errors.group(1)) if errors else 0}


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Per name, its wrk runs in one row: mean requests per second, the worst p50 and p99, all non-2xx."""
    return {
        name: {
            "rps": round(sum(r["rps"] for r in results) / len(results), 1),
            "p50_ms": max(r.get("p50_ms", 0) for r in results),
            "p99_ms": max(r.get("p99_ms", 0) for r in results),
            "non_2xx": sum(r["non_2xx"] for r in results),
        }
        for name, results in runs.items()
    }


def save_results(kind: str, record: dict) -> Path:
    """Write ``record`` as ``bench/results/<kind>-<epoch seconds>.json``."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{kind}-{int(time.time())}.json"
    path.write_text(json.dumps(record, indent=2))
    return path


class BenchStore:
    """A Redis (``WALLET_MARKET_REDIS_URL`` or an embedded one), a key prefix of the run's own,
    the environment the service is started with, and an app on the same store for set-up.

    Everything it made — keys under its prefixes, the embedded server, the scratch
    directory — is removed on exit.
    """

    def __init__(self, name: str):
        self.name = name
        self.prefixes: list[str] = []

    def __enter__(self) -> "BenchStore":
        from wallet_market.app import create_app
        from wallet_market.store.connection import EmbeddedRedis

        self.tmp = Path(tempfile.mkdtemp(prefix=f"wallet-market-{self.name}-"))
        self.embedded = None
        self.redis_url = os.environ.get("WALLET_MARKET_REDIS_URL")
        if not self.redis_url:
            self.embedded = EmbeddedRedis(self.tmp / "bench.db")
            self.redis_url = self.embedded.url
        self.prefix = f"wmbench-{uuid.uuid4().hex[:8]}"
        self.prefixes.append(self.prefix)
        self.env = {
            **os.environ,
            "WALLET_MARKET_ENV": "development",
            "WALLET_MARKET_REDIS_URL": self.redis_url,
            "WALLET_MARKET_KEY_PREFIX": self.prefix,
            "WALLET_MARKET_SECRET_KEY": SECRET,
            "WALLET_MARKET_LOG_LEVEL": "WARNING",
            "WALLET_MARKET_RATE_LIMIT_PER_MINUTE": "0",  # no per-key limit: the benchmark is one key
            "WALLET_MARKET_CONFIG_DIR": str(ROOT / "config"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        self.app = create_app(
            {"redis_url": self.redis_url, "key_prefix": self.prefix, "secret_key": SECRET, "log_level": "WARNING"},
            start_background=False,
        )
        self.comps = self.app.extensions["wallet_market"]
        self.processes: list[subprocess.Popen] = []
        return self

    def app_auth(self) -> dict[str, str]:
        """The ``Authorization`` header of a new ``app`` key; the bare floor checks the same key."""
        from wallet_market.store.access import key_hash

        api_key = self.comps.api_keys.create("app", name="bench")
        self.env["BENCH_APP_KEY_HASH"] = key_hash(api_key)
        return {"Authorization": f"Bearer {api_key}"}

    def layout_app(self):
        """The service as a WSGI app in this process, on this store, without the per-key rate limit."""
        from wallet_market.app import create_app

        return create_app(
            {"redis_url": self.redis_url, "key_prefix": self.prefix, "secret_key": SECRET, "log_level": "WARNING",
             "rate_limit_per_minute": 0},
            start_background=False,
        )

    def bare_app(self):
        """The bare floor (``bench/baseline_app.py``) as a WSGI app in this process, on this store."""
        from bench.baseline_app import create_baseline_app

        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("WALLET_MARKET_", "BENCH_"))})
        return create_baseline_app()

    def serve(self, port: int, workers: int, threads: int, server: str | None = None) -> subprocess.Popen:
        """Start ``wallet-market serve`` (no ledger worker) on ``port`` and wait until it is ready."""
        command = [sys.executable, "-m", "wallet_market", "serve", "--no-worker", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", str(workers), "--threads", str(threads)]
        if server:
            command += ["--server", server]
        process = self.start(command)
        wait_ready(f"http://127.0.0.1:{port}/readyz")
        return process

    def start(self, command: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(command, env=self.env, cwd=self.tmp, stdout=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        try:
            for prefix in self.prefixes:
                for key in self.comps.redis.scan_iter(match=f"{prefix}:*", count=1000):
                    self.comps.redis.delete(key)
        finally:
            self.comps.close()
            if self.embedded is not None:
                self.embedded.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
