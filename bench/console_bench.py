"""Server time and Redis round trips of every console page on the demo catalogue.

Each page is requested in-process through the Flask test client (no network:
the time is the service's own), ``--rounds`` times after a warm-up, beside a
baseline measured in the same run: ``/healthz``, the cheapest request the app
serves. Redis round trips are counted per request at the connection (one per
command or pipeline sent). The report gives each page's median and 90th
percentile in ms, its ratio to the baseline, and its round trips; a page whose
median is over the 200 ms budget is marked.

    python bench/console_bench.py [--rounds 30]

Uses WALLET_MARKET_REDIS_URL when set, else an embedded Redis.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import BenchStore  # noqa: E402

BUDGET_MS = 200.0
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TODAY = datetime.now(timezone.utc).date().isoformat()
PM_PAGES = [
    "/console/catalogue/products", "/console/catalogue/partners", "/console/catalogue/pages", "/console/catalogue/rules",
    "/console/catalogue/products/xingyun_loan", "/console/catalogue/pages/home", "/console/draft", "/console/versions",
    "/console/audit", "/console/preview",
    "/console/preview?submitted=1&page=home&logged_in=1&personalized=1&risk_tier=A&share_with_partners=xingyun_cf&age=30",
    "/console/data-shares?user_id=u1",
    "/console/experiments", "/console/experiments/new", "/console/experiments/bench-pin", "/console/evaluate",
]
FINANCE_PAGES = [
    f"/console/revenue?from={TODAY}&to={TODAY}&group_by=product", "/console/revenue?group_by=partner&view=platform",
    "/console/compare", "/console/reconciliation",
]


class RoundTrips:
    """Counts what is sent to Redis: one per command or pipeline."""

    def __init__(self):
        from redis.connection import AbstractConnection as Connection

        self.count = 0
        self._original = Connection.send_packed_command
        counter = self

        def counted(connection, command, check_health=True):
            counter.count += 1
            return counter._original(connection, command, check_health)

        Connection.send_packed_command = counted

    def close(self):
        from redis.connection import AbstractConnection as Connection

        Connection.send_packed_command = self._original


def start_experiment(comps) -> None:
    """A candidate pinning the in-house loan to the home top banner, running on the home page (no traffic yet)."""
    comps.admin.create("rules", {"rule_id": "bench_pin", "action": "pin", "page_id": "home", "slot_id": "top_banner",
                                 "product_id": "inhouse_loan", "priority": 5}, actor="bench")
    version = comps.admin.freeze_candidate("bench", "pin the in-house loan")["version"]
    now = datetime.now(timezone.utc)
    comps.experiments.create({
        "experiment_id": "bench-pin", "page": "home", "treatment_version": version, "traffic_bps": 10_000,
        "treatment_bps": 5_000, "starts_at": now - timedelta(hours=1), "ends_at": now + timedelta(days=7),
    }, actor="bench")


def sign_in(client, api_key: str) -> None:
    token = CSRF.search(client.get("/console/login").get_data(as_text=True)).group(1)
    response = client.post("/console/login", data={"api_key": api_key, "csrf_token": token})
    assert response.status_code == 303, response.status_code


def measure(client, path: str, rounds: int, trips: RoundTrips) -> tuple[float, float, int]:
    for _ in range(3):
        client.get(path)
    times, counts = [], []
    for _ in range(rounds):
        before = trips.count
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        counts.append(trips.count - before)
        assert response.status_code == 200, (path, response.status_code)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1], max(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    from wallet_market.services.catalogue_files import load_demo_if_empty

    with BenchStore("console") as store:
        load_demo_if_empty(store.comps.admin, store.comps.api_keys, store.comps.settings, echo=lambda _line: None)
        store.comps.snapshots.refresh()
        start_experiment(store.comps)
        pm, finance = store.app.test_client(), store.app.test_client()
        sign_in(pm, store.comps.api_keys.create("pm", name="bench-pm"))
        sign_in(finance, store.comps.api_keys.create("finance", name="bench-finance"))
        trips = RoundTrips()
        try:
            baseline, _, baseline_trips = measure(pm, "/healthz", args.rounds, trips)
            rows = [(path, *measure(pm, path, args.rounds, trips)) for path in PM_PAGES]
            rows += [(path, *measure(finance, path, args.rounds, trips)) for path in FINANCE_PAGES]
        finally:
            trips.close()
    print(f"baseline /healthz: median {baseline:.2f} ms, {baseline_trips} Redis round trips ({args.rounds} rounds)")
    print(f"{'page':<100} {'median ms':>9} {'p90 ms':>8} {'× base':>7} {'redis':>5}")
    over = 0
    for path, median, p90, count in rows:
        flag = "  over budget" if median > BUDGET_MS else ""
        over += bool(flag)
        print(f"{path:<100} {median:9.2f} {p90:8.2f} {median / baseline:7.1f} {count:5d}{flag}")
    print(f"{len(rows) - over} of {len(rows)} pages under {BUDGET_MS:.0f} ms")


if __name__ == "__main__":
    main()
