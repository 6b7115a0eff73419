"""The benchmark's baseline: a bare Flask endpoint making one Redis pipeline call.

The pipeline reads what a layout reads (a key lookup, a rate counter, a profile,
two hashes, a set) so both sides pay for the same round trip; the difference is
everything the service does besides.
"""
from __future__ import annotations

import os

import redis
from flask import Flask, jsonify

from wallet_market.store.keys import Keys


def create_baseline_app() -> Flask:
    app = Flask(__name__)
    client = redis.Redis.from_url(os.environ["WALLET_MARKET_REDIS_URL"])
    keys = Keys(os.environ.get("WALLET_MARKET_KEY_PREFIX", "wm"))
    api_keys, rate = keys.api_keys(), keys.rate_limit("bench", 0)
    profile, impressions = keys.profile("bench-user-0"), keys.impressions_today("bench-user-0", "0")
    suppressed, at_cap = keys.suppressed_partners("bench-user-0"), keys.leads_at_cap("0")

    @app.get("/baseline")
    def baseline():
        pipe = client.pipeline(transaction=False)
        pipe.hget(api_keys, "x")
        pipe.incr(rate)
        pipe.expire(rate, 120)
        pipe.get(profile)
        pipe.hgetall(impressions)
        pipe.hgetall(suppressed)
        pipe.smembers(at_cap)
        results = pipe.execute()
        return jsonify({"ok": True, "profile_bytes": len(results[3] or b"")})

    return app
