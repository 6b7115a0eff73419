"""The layout's own Python cost, measured in one process beside the bare floor: no HTTP server, no load generator.

Each request is a WSGI call straight into the application, so what the
numbers show is what the service's code costs on top of the bare floor (a Flask
endpoint making the same one Redis pipeline call, ``bench/baseline_app.py``),
both against the same Redis in the same run, in alternating rounds. This is
the steadier companion of ``bench/layout_bench.py``: the HTTP server and wrk
share the machine's cores there, and not here. The decision log a served
worker writes on a background thread (each layout's analysis record, then the
stream) is written at the end of each series and counted with it.

    python bench/layout_inprocess.py [--requests 3000] [--rounds 3] [--users 500]
        [--profile [--profile-sort tottime] [--profile-lines 40]]

``--profile`` then runs the logged-in layout once more under cProfile and
prints where its time goes, by cumulative time.
Uses WALLET_MARKET_REDIS_URL when set, else an embedded Redis.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.catalogue import build as build_catalogue  # noqa: E402
from bench.harness import BenchStore, answer, visitor_requests, wsgi_environs  # noqa: E402
from bench.layout_bench import user_population  # noqa: E402


def timed(app, envs: list[dict], count: int) -> float:
    """Microseconds per request over ``count`` WSGI calls cycling through ``envs``; every answer must be a 200."""
    started = time.perf_counter()
    failed = answer(app, envs, count)
    elapsed = time.perf_counter() - started
    if failed:
        raise SystemExit(f"{len(failed)} requests did not answer 200 (first: {failed[0]})")
    return elapsed / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per endpoint per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--profile", action="store_true", help="then print a cProfile of the logged-in layout")
    parser.add_argument("--profile-sort", default="cumulative", help="pstats sort key (cumulative, tottime, ...)")
    parser.add_argument("--profile-lines", type=int, default=40, help="how many functions the profile prints")
    args = parser.parse_args()

    with BenchStore("layout-inprocess") as bench:
        from wallet_market.cli.serve import tune_collector

        catalogue = build_catalogue()
        bench.comps.admin.load(catalogue, actor="bench", publish=True)
        auth = bench.app_auth()
        bare, app = bench.bare_app(), bench.layout_app()
        tune_collector()  # as a served worker does once its application is built
        targets = {
            "bare": (bare, wsgi_environs([("/baseline", {})], {})),
            "layout_logged_in": (app, wsgi_environs(user_population(bench.comps, catalogue, args.users), auth)),
            "layout_visitor": (app, wsgi_environs(visitor_requests(), auth)),
        }
        for wsgi, envs in targets.values():  # warm up: snapshot, memos, connections
            timed(wsgi, envs, min(500, args.requests))
        runs: dict[str, list[float]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (wsgi, envs) in targets.items():
                runs[name].append(timed(wsgi, envs, args.requests))
        best = {name: min(values) for name, values in runs.items()}
        print(f"{args.requests} requests x {args.rounds} rounds per endpoint, best round; {args.users} users")
        print(f"{'endpoint':<20}{'us/request':>12}{'vs bare':>9}")
        for name, micros in best.items():
            print(f"{name:<20}{micros:>12.1f}{best['bare'] / micros:>9.2f}")
        if args.profile:
            wsgi, envs = targets["layout_logged_in"]
            profiler = cProfile.Profile()
            profiler.enable()
            timed(wsgi, envs, args.requests)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(args.profile_sort).print_stats(args.profile_lines)
            print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
