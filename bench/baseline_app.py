"""The benchmark's baseline: a bare Flask endpoint making one Redis pipeline call.

The pipeline reads what a layout reads (the key check script for the
benchmark's own API key, held in-process as the service holds it, with its
rate counter this minute; a profile, two hashes, a set) so both sides pay for
the same round trip and the same work in Redis; the difference is everything
the service does besides. The key's hash comes in ``BENCH_APP_KEY_HASH``
(:meth:`bench.harness.BenchStore.app_auth` sets it).
"""
from __future__ import annotations

import os
import time

import redis
from flask import Flask, jsonify

from wallet_market.store.keys import Keys
from wallet_market.store.layout_reads import queue_key_reads


def create_baseline_app() -> Flask:
    app = Flask(__name__)
    client = redis.Redis.from_url(os.environ["WALLET_MARKET_REDIS_URL"])
    keys = Keys(os.environ.get("WALLET_MARKET_KEY_PREFIX", "wm"))
    key_hash = os.environ.get("BENCH_APP_KEY_HASH")
    if not key_hash:
        raise SystemExit("BENCH_APP_KEY_HASH is not set: make the benchmark's key with BenchStore.app_auth first")
    profile, impressions = keys.profile("bench-user-0"), keys.impressions_today("bench-user-0", "0")
    suppressed, at_cap = keys.suppressed_partners("bench-user-0"), keys.leads_at_cap("0")

    @app.get("/baseline")
    def baseline():
        pipe = client.pipeline(transaction=False)
        queue_key_reads(pipe, keys, key_hash, False, time.time())  # the layout's key check, its key held in-process
        pipe.get(profile)
        pipe.hgetall(impressions)
        pipe.hgetall(suppressed)
        pipe.smembers(at_cap)
        results = pipe.execute()
        if not int(results[0][0]):
            return jsonify({"ok": False, "error": "the benchmark's API key is unknown"}), 401
        return jsonify({"ok": True, "profile_bytes": len(results[1] or b"")})

    return app
