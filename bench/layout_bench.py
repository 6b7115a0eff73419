"""Load benchmark of GET /v1/layout beside a bare Flask + one Redis pipeline baseline.

Both run under the same gunicorn settings on this machine, measured in the same
run with wrk, alternating rounds so drift in machine load hits both alike.
Reported as ratios against the baseline (targets: layout throughput >= 60% of
the baseline, layout p99 < 20 ms at 16 concurrent clients).

    python bench/layout_bench.py [--duration 15] [--connections 16] [--workers 2] [--threads 1] [--rounds 2]

Needs wrk (Debian package ``wrk``; installed on demand with apt-get when missing).
Uses WALLET_MARKET_REDIS_URL when set, else an embedded Redis.
"""
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.catalogue import DEVICES, REGIONS, TIERS  # noqa: E402
from bench.catalogue import build as build_catalogue  # noqa: E402

SECRET = "bench-secret-0123456789abcdef0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
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


LATENCY_LINE = re.compile(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$")
UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


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


def run_wrk(wrk: str, url: str, headers: dict[str, str], duration: int, connections: int, script: Path | None = None) -> dict:
    command = [wrk, "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script is not None:
        command += ["-s", str(script)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(command + [url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {}
    for line in out.splitlines():
        match = LATENCY_LINE.match(line)
        if match:
            latency[f"p{match.group(1)}_ms"] = round(float(match.group(2)) * UNITS[match.group(3)], 3)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return {"rps": rps, **latency, "non_2xx": int(errors.group(1)) if errors else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--users", type=int, default=500, help="distinct logged-in users the requests rotate through")
    args = parser.parse_args()
    wrk = ensure_wrk()

    from wallet_market.app import create_app
    from wallet_market.store.connection import EmbeddedRedis

    tmp = Path(tempfile.mkdtemp(prefix="wallet-market-bench-"))
    embedded = None
    redis_url = os.environ.get("WALLET_MARKET_REDIS_URL")
    if not redis_url:
        embedded = EmbeddedRedis(tmp / "bench.db")
        redis_url = embedded.url
    prefix = f"wmbench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "WALLET_MARKET_ENV": "development",
        "WALLET_MARKET_REDIS_URL": redis_url,
        "WALLET_MARKET_KEY_PREFIX": prefix,
        "WALLET_MARKET_SECRET_KEY": SECRET,
        "WALLET_MARKET_LOG_LEVEL": "WARNING",
        "WALLET_MARKET_RATE_LIMIT_PER_MINUTE": "100000000",
        "WALLET_MARKET_CONFIG_DIR": str(ROOT / "config"),
    }
    app = create_app(
        {"redis_url": redis_url, "key_prefix": prefix, "secret_key": SECRET, "log_level": "WARNING"},
        start_background=False,
    )
    comps = app.extensions["wallet_market"]
    catalogue = build_catalogue()
    comps.admin.load(catalogue, actor="bench", publish=True)
    app_key = comps.api_keys.create("app", name="bench")
    # A population of users with different tiers, regions, ages and consents, asking from
    # different devices and app versions, each request a different user from the last.
    rng = random.Random(11)
    partner_ids = [p["partner_id"] for p in catalogue["partners"]]
    logged_in_requests = []
    for n in range(args.users):
        user_id = f"bench-user-{n}"
        consents = rng.choice([partner_ids, partner_ids, partner_ids[: len(partner_ids) // 2], []])
        comps.users.put_profile(
            user_id,
            {
                "user_id": user_id,
                "risk_tier": rng.choice(TIERS),
                "in_house_decision": {"status": rng.choice(["none", "approved", "approved", "declined"]), "decided_at": None},
                "consents": {"personalized": rng.random() > 0.1, "share_with_partners": consents},
                "age": rng.randint(20, 60),
                "region": rng.choice(REGIONS),
                "phone_sha256": None,
            },
        )
        query = f"/v1/layout?page=home&device_model={rng.choice(DEVICES)}&app_version=5.{rng.randint(0, 9)}.0"
        logged_in_requests.append((query, {"X-User-Token": comps.user_tokens.mint(user_id, 3600)}))
    visitor_requests = [
        (f"/v1/layout?page=home&device_model={device}&app_version=5.{v}.0", {}) for device in DEVICES for v in range(10)
    ]

    service_port, baseline_port = free_port(), free_port()
    processes = []
    try:
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "wallet_market", "serve", "--no-worker", "--host", "127.0.0.1",
                 "--port", str(service_port), "--workers", str(args.workers), "--threads", str(args.threads)],
                env=env, cwd=tmp, stdout=subprocess.DEVNULL,
            )
        )
        baseline_code = (
            "import sys; sys.path.insert(0, %r)\n"
            "from bench.baseline_app import create_baseline_app\n"
            "from wallet_market.serve import GunicornApp, gunicorn_options\n"
            "GunicornApp(gunicorn_options('127.0.0.1', %d, %d, %d), factory=create_baseline_app).run()\n"
        ) % (str(ROOT), baseline_port, args.workers, args.threads)
        processes.append(subprocess.Popen([sys.executable, "-c", baseline_code], env=env, cwd=tmp, stdout=subprocess.DEVNULL))
        wait_ready(f"http://127.0.0.1:{service_port}/readyz")
        wait_ready(f"http://127.0.0.1:{baseline_port}/baseline")

        auth = {"Authorization": f"Bearer {app_key}"}
        service = f"http://127.0.0.1:{service_port}"
        targets = {
            "baseline": (f"http://127.0.0.1:{baseline_port}/baseline", {}, None),
            "layout_logged_in": (service, auth, rotation_script(tmp / "logged_in.lua", logged_in_requests)),
            "layout_visitor": (service, auth, rotation_script(tmp / "visitor.lua", visitor_requests)),
        }
        for name, (url, headers, script) in targets.items():  # warm up
            run_wrk(wrk, url, headers, 2, args.connections, script)
        results: dict[str, list[dict]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, headers, script) in targets.items():
                results[name].append(run_wrk(wrk, url, headers, args.duration, args.connections, script))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        for key in comps.redis.scan_iter(match=f"{prefix}:*", count=1000):
            comps.redis.delete(key)
        comps.close()
        if embedded is not None:
            embedded.close()
        shutil.rmtree(tmp, ignore_errors=True)

    summary = {}
    for name, runs in results.items():
        summary[name] = {
            "rps": round(sum(r["rps"] for r in runs) / len(runs), 1),
            "p50_ms": max(r.get("p50_ms", 0) for r in runs),
            "p99_ms": max(r.get("p99_ms", 0) for r in runs),
            "non_2xx": sum(r["non_2xx"] for r in runs),
        }
    base = summary["baseline"]["rps"]
    print(f"catalogue: {len(catalogue['products'])} products, {len(catalogue['pages'][0]['slots'])} slots, "
          f"{len(catalogue['rules'])} rules; {args.users} users; {args.connections} connections; gunicorn {args.workers} workers x "
          f"{args.threads} threads; {args.rounds} rounds of {args.duration}s")
    print(f"{'endpoint':<18}{'req/s':>10}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for name, row in summary.items():
        print(f"{name:<18}{row['rps']:>10.1f}{row['rps'] / base:>8.2f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['non_2xx']:>9}")
    ok = all(summary[n]["rps"] / base >= 0.60 and summary[n]["p99_ms"] < 20 for n in ("layout_logged_in", "layout_visitor"))
    print("targets (>= 0.60 of baseline throughput, p99 < 20 ms):", "met" if ok else "NOT met")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"layout-{int(time.time())}.json").write_text(json.dumps({"args": vars(args), "summary": summary, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
