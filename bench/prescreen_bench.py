"""Load benchmark: GET /v1/layout with one pre-screening partner that hangs, beside the same with none.

Both runs serve the same catalogue and the same logged-in users (each with a
phone hash and consent to share with every partner), under the same gunicorn
settings, measured with wrk in alternating rounds. In the "hanging" run one
partner has a ``prescreen_url`` on a local server that accepts the request and
never answers (until the run ends), with the longest partner timeout allowed
and a breaker that never opens; in the baseline no partner pre-screens.
Reported: throughput and latency of both, and the hanging run's throughput as a
ratio of the baseline's (target: >= 0.80).

    python bench/prescreen_bench.py [--duration 15] [--connections 8] [--workers 2] [--rounds 2] [--users 500]

Needs wrk (Debian package ``wrk``; installed on demand with apt-get when missing).
Uses WALLET_MARKET_REDIS_URL when set, else an embedded Redis.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.catalogue import REGIONS, TIERS  # noqa: E402
from bench.catalogue import build as build_catalogue  # noqa: E402
from bench.harness import BenchStore, ensure_wrk, free_port, logged_in_requests, rotation_script  # noqa: E402
from bench.harness import run_wrk, save_results, summarize, wrk_options  # noqa: E402

HANGING_PARTNER = "partner_00"
PARTNER_SECRET = "bench-partner-secret-0123456789abcdef"
HANG_SECONDS = 120  # the longest the fake holds one request (the run ends well before)


class HangingPartner:
    """A partner's pre-screen endpoint on loopback that reads each request and never answers it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.received = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.received += 1
                owner.release.wait(HANG_SECONDS)
                self.send_response(504)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/prescreen"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def with_hanging_partner(catalogue: dict, url: str) -> dict:
    """The catalogue with ``HANGING_PARTNER`` pre-screening at ``url`` (and signing its calls)."""
    changed = copy.deepcopy(catalogue)
    for partner in changed["partners"]:
        if partner["partner_id"] == HANGING_PARTNER:
            partner.update(prescreen_url=url, timeout_ms=10_000, signing_secret=PARTNER_SECRET)
    return changed


def users(comps, catalogue: dict, count: int) -> list[tuple[str, dict[str, str]]]:
    """``count`` logged-in users who consent to every partner and have a phone hash; one request each."""
    rng = random.Random(13)
    partner_ids = [p["partner_id"] for p in catalogue["partners"]]

    def profile(n: int) -> dict:
        return {
            "user_id": f"bench-prescreen-user-{n}",
            "risk_tier": rng.choice(TIERS[:3]),
            "in_house_decision": {"status": "none", "decided_at": None},
            "consents": {"personalized": True, "share_with_partners": partner_ids},
            "age": rng.randint(22, 55),
            "region": rng.choice(REGIONS),
            "phone_sha256": hashlib.sha256(f"1380000{n:04d}".encode()).hexdigest(),
        }

    return logged_in_requests(comps, count, rng, profile)


def serve_catalogue(bench: BenchStore, catalogue: dict) -> int:
    """Publish ``catalogue`` and wait until the service serves its version."""
    version = int(bench.comps.admin.load(catalogue, actor="bench", publish=True)["version"])
    time.sleep(1.0)  # the workers' snapshots follow the publish message (and poll every few seconds)
    return version


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    wrk_options(parser, connections=8)
    parser.add_argument("--users", type=int, default=500)
    args = parser.parse_args()
    wrk = ensure_wrk()
    partner = HangingPartner()
    try:
        with BenchStore("prescreen-bench") as bench:
            # The worst case: the hanging partner's breaker never opens.
            bench.env["WALLET_MARKET_BREAKER_FAIL_MAX"] = "1000000000"
            plain = build_catalogue()
            hanging = with_hanging_partner(plain, partner.url)
            bench.comps.admin.load(plain, actor="bench", publish=True)
            auth = bench.app_auth()
            script = rotation_script(bench.tmp / "users.lua", users(bench.comps, plain, args.users))
            port = free_port()
            bench.serve(port, args.workers, args.threads)
            url = f"http://127.0.0.1:{port}"

            runs: dict[str, list[dict]] = {"no_prescreen": [], "hanging_partner": []}
            catalogues = {"no_prescreen": plain, "hanging_partner": hanging}
            for name, catalogue in catalogues.items():  # warm up
                serve_catalogue(bench, catalogue)
                run_wrk(wrk, url, headers=auth, script=script, duration=2, connections=args.connections)
            for _ in range(args.rounds):
                for name, catalogue in catalogues.items():
                    serve_catalogue(bench, catalogue)
                    runs[name].append(
                        run_wrk(wrk, url, headers=auth, script=script, duration=args.duration, connections=args.connections)
                    )
    finally:
        asked = partner.received
        partner.close()

    summary = summarize(runs)
    base = summary["no_prescreen"]["rps"]
    print(f"{args.users} logged-in users; {args.connections} connections; gunicorn {args.workers} workers x "
          f"{args.threads} threads; {args.rounds} rounds of {args.duration}s; the hanging partner was asked {asked} times")
    print(f"{'run':<18}{'req/s':>10}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}")
    for name, row in summary.items():
        print(f"{name:<18}{row['rps']:>10.1f}{row['rps'] / base:>8.2f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['non_2xx']:>9}")
    met = summary["hanging_partner"]["rps"] / base >= 0.80
    print("target (with a partner hanging, >= 0.80 of the throughput without):", "met" if met else "NOT met")
    save_results("prescreen", {"args": vars(args), "asked": asked, "summary": summary, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
