"""Load benchmark of GET /v1/layout on granian and gunicorn, beside a bare Flask + one Redis pipeline floor.

The bare floor is a Flask endpoint making one Redis pipeline call (what a
layout reads), served the same way on each server with the same workers. Every
endpoint is measured in the same run with wrk, alternating rounds so drift in
machine load hits all alike, and reported as ratios:

- against the bare floor on gunicorn (target >= 1.0: the service as served is
  at least as fast as the simplest Flask app on the classic server);
- against the bare floor on the same server (target >= 0.75: what the service
  does beyond one round trip costs at most a quarter);
- p99 latency under 10 ms at 16 connections.

It also reports each server's start-up memory (master and workers, PSS).
Logged-in requests rotate through a population of users with different tiers,
regions, ages and consents, asking from different devices and app versions.
The per-key rate limit is switched off (``WALLET_MARKET_RATE_LIMIT_PER_MINUTE=0``).

    python bench/layout_bench.py [--server both|granian|gunicorn] [--duration 15] [--connections 16]
        [--workers 2] [--threads 1] [--rounds 2] [--users 500]

Needs wrk (Debian package ``wrk``; installed on demand with apt-get when missing).
Uses WALLET_MARKET_REDIS_URL when set, else an embedded Redis.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.catalogue import REGIONS, TIERS  # noqa: E402
from bench.catalogue import build as build_catalogue  # noqa: E402
from bench.harness import BenchStore, ensure_wrk, free_port, logged_in_requests, rotation_script  # noqa: E402
from bench.harness import run_wrk, save_results, summarize, tree_memory_mb, visitor_requests, wait_ready  # noqa: E402
from bench.harness import wrk_options  # noqa: E402
from wallet_market.cli.serve import SERVERS, server_command  # noqa: E402

BASELINE_FACTORY = "bench.baseline_app:create_baseline_app"
FLOOR = "gunicorn"
TARGET_VS_GUNICORN_FLOOR = 1.0
TARGET_VS_OWN_FLOOR = 0.75
TARGET_P99_MS = 10.0


def user_population(comps, catalogue: dict, count: int) -> list[tuple[str, dict[str, str]]]:
    """Profiles for ``count`` users and one logged-in layout request (path, headers) per user."""
    rng = random.Random(11)
    partner_ids = [p["partner_id"] for p in catalogue["partners"]]

    def profile(n: int) -> dict:
        consents = rng.choice([partner_ids, partner_ids, partner_ids[: len(partner_ids) // 2], []])
        return {
            "user_id": f"bench-user-{n}",
            "risk_tier": rng.choice(TIERS),
            "in_house_decision": {"status": rng.choice(["none", "approved", "approved", "declined"]), "decided_at": None},
            "consents": {"personalized": rng.random() > 0.1, "share_with_partners": consents},
            "age": rng.randint(20, 60),
            "region": rng.choice(REGIONS),
            "phone_sha256": None,
        }

    return logged_in_requests(comps, count, rng, profile)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("both", *SERVERS), default="both", help="where the layout is measured")
    wrk_options(parser, connections=16)
    parser.add_argument("--users", type=int, default=500, help="distinct logged-in users the requests rotate through")
    args = parser.parse_args()
    wrk = ensure_wrk()
    servers = list(SERVERS) if args.server == "both" else [args.server]
    floors = sorted({FLOOR, *servers}, key=SERVERS.index)

    memory: dict[str, float] = {}
    with BenchStore("layout-bench") as bench:
        catalogue = build_catalogue()
        bench.comps.admin.load(catalogue, actor="bench", publish=True)
        auth = bench.app_auth()
        logged_in = rotation_script(bench.tmp / "logged_in.lua", user_population(bench.comps, catalogue, args.users))
        visitors = rotation_script(bench.tmp / "visitor.lua", visitor_requests())

        targets: dict[str, tuple[str, dict, Path | None]] = {}
        for server in floors:
            port = free_port()
            bench.start(server_command(server, "127.0.0.1", port, args.workers, args.threads, BASELINE_FACTORY))
            wait_ready(f"http://127.0.0.1:{port}/baseline")
            targets[f"bare_{server}"] = (f"http://127.0.0.1:{port}/baseline", {}, None)
        for server in servers:
            port = free_port()
            process = bench.serve(port, args.workers, args.threads, server)
            time.sleep(1.0)  # let the workers settle before their start-up memory is read
            memory[server] = tree_memory_mb(process.pid)
            service = f"http://127.0.0.1:{port}"
            targets[f"layout_logged_in_{server}"] = (service, auth, logged_in)
            targets[f"layout_visitor_{server}"] = (service, auth, visitors)

        for url, headers, script in targets.values():  # warm up
            run_wrk(wrk, url, headers=headers, script=script, duration=2, connections=args.connections)
        results: dict[str, list[dict]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, headers, script) in targets.items():
                results[name].append(
                    run_wrk(wrk, url, headers=headers, script=script, duration=args.duration, connections=args.connections)
                )

    summary = summarize(results)
    floor = summary[f"bare_{FLOOR}"]["rps"]
    print(f"catalogue: {len(catalogue['products'])} products, {len(catalogue['pages'][0]['slots'])} slots, "
          f"{len(catalogue['rules'])} rules; {args.users} users; {args.connections} connections; "
          f"{args.workers} workers x {args.threads} threads; {args.rounds} rounds of {args.duration}s")
    print(f"{'endpoint':<26}{'req/s':>10}{'vs bare':>9}{'vs own':>8}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    met = True
    for name, row in summary.items():
        server = name.rsplit("_", 1)[1]
        own = summary[f"bare_{server}"]["rps"]
        print(f"{name:<26}{row['rps']:>10.1f}{row['rps'] / floor:>9.2f}{row['rps'] / own:>8.2f}"
              f"{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['non_2xx']:>9}")
        if name.startswith("layout_"):
            row["vs_bare_gunicorn"] = round(row["rps"] / floor, 3)
            row["vs_own_bare"] = round(row["rps"] / own, 3)
            met = met and (row["vs_bare_gunicorn"] >= TARGET_VS_GUNICORN_FLOOR and row["vs_own_bare"] >= TARGET_VS_OWN_FLOOR
                           and row["p99_ms"] < TARGET_P99_MS and row["non_2xx"] == 0)
    print("start-up memory (master and workers, PSS): "
          + ", ".join(f"{server} {mb:.0f} MiB" for server, mb in memory.items()))
    print(f"targets (layout >= {TARGET_VS_GUNICORN_FLOOR:.2f}x bare gunicorn and >= {TARGET_VS_OWN_FLOOR:.2f}x its own "
          f"server's bare floor, p99 < {TARGET_P99_MS:.0f} ms):", "met" if met else "NOT met")
    save_results("layout", {"args": vars(args), "summary": summary, "memory_mb": memory, "runs": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
