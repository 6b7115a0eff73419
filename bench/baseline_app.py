"""The benchmark's baseline: a bare Flask endpoint making one Redis pipeline call.

The pipeline reads what a layout reads (the key check script with its rate
counter, a profile, two hashes, a set) so both sides pay for the same round
trip; the difference is everything the service does besides.
"""
from __future__ import annotations

import os

import redis
from flask import Flask, jsonify

from wallet_market.store.keys import Keys
from wallet_market.store.ledger import script_text


def create_baseline_app() -> Flask:
    app = Flask(__name__)
    client = redis.Redis.from_url(os.environ["WALLET_MARKET_REDIS_URL"])
    keys = Keys(os.environ.get("WALLET_MARKET_KEY_PREFIX", "wm"))
    api_keys, rate, last_used = keys.api_keys(), keys.rate_limit("bench", 0), keys.api_keys_last_used()
    check_key = script_text("check_key")
    profile, impressions = keys.profile("bench-user-0"), keys.impressions_today("bench-user-0", "0")
    suppressed, at_cap = keys.suppressed_partners("bench-user-0"), keys.leads_at_cap("0")

    @app.get("/baseline")
    def baseline():
        pipe = client.pipeline(transaction=False)
        pipe.execute_command("EVAL", check_key, 3, api_keys, rate, last_used, "x", "1", 120, 0)
        pipe.get(profile)
        pipe.hgetall(impressions)
        pipe.hgetall(suppressed)
        pipe.smembers(at_cap)
        results = pipe.execute()
        return jsonify({"ok": True, "profile_bytes": len(results[1] or b"")})

    return app
