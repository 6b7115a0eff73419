"""User facts in Redis, all under the user's hash tag ``{u:<id>}``.

The layout reads everything it needs about a user — profile, today's
impressions per product, suppressed partners, cached pre-screen answers — by
queueing the reads here on one pipeline.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

import orjson
import redis

from .keys import Keys


class UserStore:
    def __init__(self, client: redis.Redis, keys: Keys):
        self.client = client
        self.keys = keys

    def put_profile(self, user_id: str, profile: dict[str, Any]) -> None:
        """Store the profile (one atomic SET: a profile is never half-written)."""
        self.client.set(self.keys.profile(user_id), orjson.dumps(profile, option=orjson.OPT_SORT_KEYS))

    def get_profile(self, user_id: str) -> dict[str, Any] | None:
        raw = self.client.get(self.keys.profile(user_id))
        return orjson.loads(raw) if raw else None

    def queue_layout_reads(self, pipe, user_id: str, day: str, partner_ids: Iterable[str]) -> int:
        """Queue the reads of one layout on ``pipe``; returns how many results they produce."""
        pipe.get(self.keys.profile(user_id))
        pipe.hgetall(self.keys.impressions_today(user_id, day))
        pipe.hgetall(self.keys.suppressed_partners(user_id))
        partner_ids = list(partner_ids)
        if not partner_ids:
            return 3
        # MGET through execute_command: redis-py refuses ``mget`` on a Redis Cluster pipeline,
        # but these keys share the user's hash slot, so the command itself is fine there.
        pipe.execute_command("MGET", *(self.keys.prescreen(user_id, p) for p in partner_ids))
        return 4

    @staticmethod
    def parse_layout_reads(results: list, partner_ids: Sequence[str], now: float | None = None):
        """Turn the queued reads' results into (profile, impressions_today, suppressed, prescreen).

        ``results`` holds as many results as :meth:`queue_layout_reads` said it queued
        for these ``partner_ids`` (the pre-screen read only when there are partners).
        """
        raw_profile, impressions, suppressed = results[:3]
        prescreen = results[3] if partner_ids else None
        now = time.time() if now is None else now
        profile = orjson.loads(raw_profile) if raw_profile else None
        impressions_today = {k.decode(): int(v) for k, v in (impressions or {}).items()}
        suppressed_partners = frozenset(k.decode() for k, v in (suppressed or {}).items() if float(v) > now)
        answers = {}
        if partner_ids and isinstance(prescreen, list):
            for partner_id, answer in zip(partner_ids, prescreen):
                if answer is not None:
                    answers[partner_id] = answer.decode()
        return profile, impressions_today, suppressed_partners, answers
