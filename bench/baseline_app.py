"""The benchmark's baseline: a bare Flask endpoint making one Redis pipeline call.

The pipeline reads what a layout reads (a key lookup, a rate counter, a profile,
two hashes, a set) so both sides pay for the same round trip; the difference is
everything the service does besides.
"""
from __future__ import annotations

import os

import redis
from flask import Flask, jsonify


def create_baseline_app() -> Flask:
    app = Flask(__name__)
    client = redis.Redis.from_url(os.environ["WALLET_MARKET_REDIS_URL"])
    prefix = os.environ.get("WALLET_MARKET_KEY_PREFIX", "wm")

    @app.get("/baseline")
    def baseline():
        pipe = client.pipeline(transaction=False)
        pipe.hget(f"{prefix}:{{auth}}:api_keys", "x")
        pipe.incr(f"{prefix}:{{rl:bench}}:0")
        pipe.expire(f"{prefix}:{{rl:bench}}:0", 120)
        pipe.get(f"{prefix}:{{u:bench-user}}:profile")
        pipe.hgetall(f"{prefix}:{{u:bench-user}}:impressions:0")
        pipe.hgetall(f"{prefix}:{{u:bench-user}}:suppressed")
        pipe.smembers(f"{prefix}:{{partners}}:at_cap:0")
        results = pipe.execute()
        return jsonify({"ok": True, "profile_bytes": len(results[3] or b"")})

    return app
