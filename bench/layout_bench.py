"""Load benchmark of GET /v1/layout beside a bare Flask + one Redis pipeline baseline.

Both run under the same gunicorn settings on this machine, measured in the same
run with wrk, alternating rounds so drift in machine load hits both alike.
Reported as ratios against the baseline (targets: layout throughput >= 60% of
the baseline, layout p99 < 20 ms at 16 concurrent clients). Logged-in requests
rotate through a population of users with different tiers, regions, ages and
consents, asking from different devices and app versions.

    python bench/layout_bench.py [--duration 15] [--connections 16] [--workers 2] [--threads 1] [--rounds 2] [--users 500]

Needs wrk (Debian package ``wrk``; installed on demand with apt-get when missing).
Uses WALLET_MARKET_REDIS_URL when set, else an embedded Redis.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.catalogue import DEVICES, REGIONS, TIERS  # noqa: E402
from bench.catalogue import build as build_catalogue  # noqa: E402
from bench.harness import BenchStore, ensure_wrk, free_port, run_wrk, wait_ready  # noqa: E402

BASELINE = (
    "import sys; sys.path.insert(0, %r)\n"
    "from bench.baseline_app import create_baseline_app\n"
    "from wallet_market.cli.serve import GunicornApp, gunicorn_options\n"
    "GunicornApp(gunicorn_options('127.0.0.1', %d, %d, %d), factory=create_baseline_app).run()\n"
)


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


def user_population(comps, catalogue: dict, count: int) -> list[tuple[str, dict[str, str]]]:
    """Profiles for ``count`` users and one logged-in layout request (path, headers) per user."""
    rng = random.Random(11)
    partner_ids = [p["partner_id"] for p in catalogue["partners"]]
    requests = []
    for n in range(count):
        user_id = f"bench-user-{n}"
        consents = rng.choice([partner_ids, partner_ids, partner_ids[: len(partner_ids) // 2], []])
        comps.profiles.users.put_profile(
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
        requests.append((query, {"X-User-Token": comps.user_tokens.mint(user_id, 3600)}))
    return requests


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

    with BenchStore("layout-bench") as bench:
        catalogue = build_catalogue()
        bench.comps.admin.load(catalogue, actor="bench", publish=True)
        auth = {"Authorization": f"Bearer {bench.comps.api_keys.create('app', name='bench')}"}
        logged_in = user_population(bench.comps, catalogue, args.users)
        visitors = [(f"/v1/layout?page=home&device_model={d}&app_version=5.{v}.0", {}) for d in DEVICES for v in range(10)]

        service_port, baseline_port = free_port(), free_port()
        bench.serve(service_port, args.workers, args.threads)
        bench.start([sys.executable, "-c", BASELINE % (str(ROOT), baseline_port, args.workers, args.threads)])
        wait_ready(f"http://127.0.0.1:{baseline_port}/baseline")

        service = f"http://127.0.0.1:{service_port}"
        targets = {
            "baseline": (f"http://127.0.0.1:{baseline_port}/baseline", {}, None),
            "layout_logged_in": (service, auth, rotation_script(bench.tmp / "logged_in.lua", logged_in)),
            "layout_visitor": (service, auth, rotation_script(bench.tmp / "visitor.lua", visitors)),
        }
        for url, headers, script in targets.values():  # warm up
            run_wrk(wrk, url, headers=headers, script=script, duration=2, connections=args.connections)
        results: dict[str, list[dict]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, headers, script) in targets.items():
                results[name].append(
                    run_wrk(wrk, url, headers=headers, script=script, duration=args.duration, connections=args.connections)
                )

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
          f"{len(catalogue['rules'])} rules; {args.users} users; {args.connections} connections; gunicorn "
          f"{args.workers} workers x {args.threads} threads; {args.rounds} rounds of {args.duration}s")
    print(f"{'endpoint':<18}{'req/s':>10}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for name, row in summary.items():
        print(f"{name:<18}{row['rps']:>10.1f}{row['rps'] / base:>8.2f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['non_2xx']:>9}")
    met = all(summary[n]["rps"] / base >= 0.60 and summary[n]["p99_ms"] < 20 for n in ("layout_logged_in", "layout_visitor"))
    print("targets (>= 0.60 of baseline throughput, p99 < 20 ms):", "met" if met else "NOT met")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"layout-{int(time.time())}.json").write_text(json.dumps({"args": vars(args), "summary": summary, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
