"""Instructions per layout, counted by valgrind's callgrind: a benchmark the machine's load cannot move.

Wall-clock figures on a shared machine drift with whatever else runs; the
number of instructions the interpreter executes for a request does not. For
each endpoint this runs the application in one process under callgrind twice,
with a short and a long series of WSGI requests after the same set-up, and
takes the difference: the instructions of the extra requests alone, set-up and
warm-up cancelled out. The endpoints are the bare floor of
``bench/baseline_app.py`` (a Flask endpoint making the layout's one Redis
pipeline call), the logged-in layout and the visitor's layout, all against the
same Redis, and the layouts are reported as ratios against the floor.

Only this process's instructions are counted: the Redis server's work, the
same for the floor and the layouts, is not. The layouts' decision log, which a
served worker writes on a background thread, is written after each series and
counted with it.

    python bench/layout_instructions.py [--requests 1000] [--warmup 400] [--users 200]

Needs valgrind (Debian package ``valgrind``). Uses WALLET_MARKET_REDIS_URL when
set, else an embedded Redis. A run takes a few minutes: callgrind runs the
interpreter about fifty times slower.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENDPOINTS = ("bare", "layout_logged_in", "layout_visitor")
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def serve_requests(endpoint: str, count: int, users: int) -> None:
    """Set up a store and the endpoint's application, then answer ``count`` requests in this process."""
    from bench.catalogue import build as build_catalogue
    from bench.harness import BenchStore, answer, visitor_requests, wsgi_environs
    from bench.layout_bench import user_population
    from wallet_market.cli.serve import tune_collector

    with BenchStore("layout-instructions") as bench:
        catalogue = build_catalogue()
        bench.comps.admin.load(catalogue, actor="bench", publish=True)
        auth = bench.app_auth()
        if endpoint == "bare":
            app = bench.bare_app()
            requests: list[tuple[str, dict[str, str]]] = [("/baseline", {})]
        else:
            app = bench.layout_app()
            if endpoint == "layout_logged_in":
                requests = user_population(bench.comps, catalogue, users)
            else:
                requests = visitor_requests()
        tune_collector()
        failed = answer(app, wsgi_environs(requests, auth), count)
        if failed:
            raise SystemExit(f"{endpoint}: {len(failed)} requests did not answer 200 (first: {failed[0]})")


def counted(endpoint: str, count: int, users: int, scratch: Path) -> int:
    """The instructions callgrind counts for set-up plus ``count`` requests of ``endpoint``."""
    command = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch / f'{endpoint}-{count}.out'}",
        sys.executable, str(Path(__file__).resolve()), "--serve", endpoint, "--count", str(count), "--users", str(users),
    ]
    # A fixed hash seed: set and dict layouts, and so the instructions spent on them, repeat from run to run.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{endpoint}: callgrind run failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="the requests counted per endpoint")
    parser.add_argument("--warmup", type=int, default=400, help="requests both series start with")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--serve", choices=ENDPOINTS, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_requests(args.serve, args.count, args.users)
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian package valgrind)")
    with tempfile.TemporaryDirectory(prefix="wallet-market-callgrind-") as scratch:
        series = [(endpoint, count) for endpoint in ENDPOINTS for count in (args.warmup, args.warmup + args.requests)]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # one valgrind per core
            totals = dict(zip(series, pool.map(lambda s: counted(s[0], s[1], args.users, Path(scratch)), series)))
    per_request = {
        endpoint: (totals[endpoint, args.warmup + args.requests] - totals[endpoint, args.warmup]) / args.requests
        for endpoint in ENDPOINTS
    }
    print(f"instructions per request (callgrind; {args.requests} requests after {args.warmup}; {args.users} users)")
    print(f"{'endpoint':<20}{'instructions':>14}{'vs bare':>9}")
    for endpoint, instructions in per_request.items():
        print(f"{endpoint:<20}{instructions:>14,.0f}{per_request['bare'] / instructions:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
