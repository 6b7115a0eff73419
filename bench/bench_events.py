"""Load benchmark of event ingestion: POST /v1/events in batches of 100, beside bare XADD pipelines.

The service runs under gunicorn (``wallet-market serve --no-worker``) and wrk
posts batches of 100 genuine, distinct impression/click events (tokens signed
beforehand). The baseline, in the same run, is Python processes (as many as
the server's workers) sending pipelines of 100 XADDs of the same stream entries
straight to Redis: the cost of ingestion without HTTP, authentication, token
verification and idempotency. Then the ledger worker applies what was ingested,
for its throughput.

    python bench/bench_events.py [--duration 5] [--connections 16] [--workers 2] [--rounds 3] [--bodies 5000]

Needs wrk (installed on demand with apt-get when missing). Uses
WALLET_MARKET_REDIS_URL when set, else an embedded Redis.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.catalogue import build as build_catalogue  # noqa: E402
from bench.harness import BenchStore, ensure_wrk, free_port, run_wrk  # noqa: E402

BATCH = 100

WRK_SCRIPT = """
local bodies = {}
local next_id = 0
local position = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  local count = tonumber(args[2])
  position = math.floor(#bodies * id / count)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[3]
end

function request()
  position = position + 1
  return wrk.format(nil, nil, nil, bodies[(position % #bodies) + 1])
end
"""


def make_events(comps, count: int):
    """``count`` distinct app events (impressions and clicks of signed impression tokens) and their stream entries."""
    from wallet_market.domain.funnel import LedgerEvent
    from wallet_market.store.ledger import encode_event
    from wallet_market.services.tokens import Impression

    catalogue = comps.snapshots.current.built.catalogue
    page = next(iter(catalogue.pages.values()))
    products = sorted(catalogue.products)
    now = int(time.time())
    events, entries = [], []
    for n in range(count // 2):
        slot = page.slots[n % len(page.slots)]
        impression = Impression(
            decision_id=uuid.uuid4().hex[:18], page_id=page.page_id, slot_id=slot.slot_id, position=n % len(page.slots),
            product_id=products[n % len(products)], ruleset_version=catalogue.version, user_id=f"bench-{n % 5000}",
            risk_tier="ABCD"[n % 4], propensity_bps=10_000, issued_at=now,
        )
        token = comps.impression_tokens.sign(impression)
        for kind in ("impression", "click"):
            events.append({"type": kind, "impression_token": token})
            entries.append(encode_event(LedgerEvent(
                type=kind, occurred_at=now, source="app", decision_id=impression.decision_id,
                page_id=impression.page_id, slot_id=impression.slot_id, position=impression.position,
                product_id=impression.product_id, ruleset_version=impression.ruleset_version,
                user_id=impression.user_id, risk_tier=impression.risk_tier,
            )))
    return events, entries


def forget_events(client, keys) -> None:
    """Drop the event stream and the idempotency marks, so the prepared events count as new again."""
    client.delete(keys.event_stream())
    batch = []
    for key in client.scan_iter(match=keys.event_seen("*"), count=5_000):
        batch.append(key)
        if len(batch) >= 5_000:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


def xadd_loop(redis_url: str, stream: str, entries: list[bytes], seconds: float, out) -> None:
    """Pipelines of 100 XADDs of the given entries for ``seconds``; puts the number of entries added."""
    import redis

    client = redis.Redis.from_url(redis_url)
    added = 0
    i = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pipe = client.pipeline(transaction=False)
        for _ in range(BATCH):
            pipe.xadd(stream, {"e": entries[i % len(entries)]})
            i += 1
        pipe.execute()
        added += BATCH
    client.close()
    out.put(added)


def run_xadd(redis_url: str, stream: str, entries: list[bytes], seconds: float, processes: int) -> float:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    workers = [context.Process(target=xadd_loop, args=(redis_url, stream, entries, seconds, out)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    added = sum(out.get(timeout=seconds + 60) for _ in workers)
    for worker in workers:
        worker.join(30)
    return added / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bodies", type=int, default=5000,
                        help="distinct batches of 100 events prepared (enough for one round)")
    args = parser.parse_args()
    wrk = ensure_wrk()

    from wallet_market.services.ledger_worker import LedgerWorker
    from wallet_market.store.keys import Keys

    with BenchStore("bench-events") as bench:
        comps = bench.comps
        comps.admin.load(build_catalogue(), actor="bench", publish=True)
        comps.snapshots.refresh()
        app_key = comps.api_keys.create("app", name="bench")
        keys = Keys(bench.prefix)
        bench.prefixes.append(f"{bench.prefix}-xadd")
        baseline_stream = Keys(f"{bench.prefix}-xadd").event_stream()

        started = time.perf_counter()
        events, entries = make_events(comps, args.bodies * BATCH)
        bodies_file = bench.tmp / "bodies.jsonl"
        with bodies_file.open("w") as fh:
            for i in range(0, len(events), BATCH):
                fh.write(json.dumps({"events": events[i:i + BATCH]}, separators=(",", ":")) + "\n")
        script = bench.tmp / "post_events.lua"
        script.write_text(WRK_SCRIPT)
        print(f"prepared {len(events)} events in {len(events) // BATCH} batches in {time.perf_counter() - started:.1f}s")

        port = free_port()
        bench.serve(port, args.workers, args.threads)
        url = f"http://127.0.0.1:{port}/v1/events"
        results: dict[str, list[dict]] = {"http_events": [], "xadd_pipeline": []}
        for _ in range(args.rounds):
            forget_events(comps.redis, keys)  # every round posts events the ledger has not seen
            run = run_wrk(wrk, url, script=script, script_args=(str(bodies_file), "1", app_key), threads=1,
                          duration=args.duration, connections=args.connections)
            appended = comps.redis.xlen(keys.event_stream())
            run["events_per_s"] = round(run["rps"] * BATCH, 1)
            run["appended_per_s"] = round(appended / args.duration, 1)
            results["http_events"].append(run)
            rate = run_xadd(bench.redis_url, baseline_stream, entries, args.duration, args.workers)
            results["xadd_pipeline"].append({"events_per_s": round(rate, 1)})

        backlog = comps.redis.xlen(keys.event_stream())
        worker = LedgerWorker(comps.redis, keys, consumer="bench", batch_size=500, claim_idle_ms=1000)
        started = time.perf_counter()
        applied = worker.run_until_idle(timeout_seconds=600)
        worker_rate = applied / (time.perf_counter() - started)

    http = sum(r["events_per_s"] for r in results["http_events"]) / args.rounds
    appended = sum(r["appended_per_s"] for r in results["http_events"]) / args.rounds
    bare = sum(r["events_per_s"] for r in results["xadd_pipeline"]) / args.rounds
    p99 = max(r.get("p99_ms", 0) for r in results["http_events"])
    non_2xx = sum(r["non_2xx"] for r in results["http_events"])
    print(f"{args.connections} connections; gunicorn {args.workers} workers x {args.threads} threads; "
          f"{args.rounds} rounds of {args.duration}s; batches of {BATCH}")
    print(f"{'path':<34}{'events/s':>12}{'ratio':>8}")
    print(f"{'bare XADD pipelines (Python)':<34}{bare:>12.0f}{1:>8.2f}")
    print(f"{'POST /v1/events (HTTP)':<34}{http:>12.0f}{http / bare:>8.3f}")
    print(f"{'  of which appended (not repeats)':<34}{appended:>12.0f}{appended / bare:>8.3f}")
    print(f"batch p99 {p99:.1f} ms, non-2xx {non_2xx}")
    print(f"ledger worker: {applied} entries applied at {worker_rate:.0f} entries/s (backlog was {backlog})")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    summary = {"http_events_per_s": round(http, 1), "appended_per_s": round(appended, 1),
               "xadd_events_per_s": round(bare, 1), "ratio": round(http / bare, 4), "p99_ms": p99,
               "worker_entries_per_s": round(worker_rate, 1)}
    (out_dir / f"events-{int(time.time())}.json").write_text(
        json.dumps({"args": vars(args), "summary": summary, "runs": results}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
