"""Fixed one-minute request counters (the partners' signed calls)."""
from __future__ import annotations

from .connection import RedisClient
from .keys import Keys

# A counter outlives its minute a little, so a slow clock still finds it.
COUNTER_TTL_SECONDS = 120


class PartnerCallCounter:
    def __init__(self, client: RedisClient, keys: Keys):
        self.client = client
        self.keys = keys

    def count(self, partner_id: str, window: int) -> int:
        """Count one call of ``partner_id`` in minute ``window``; returns the calls so far in it (one round trip)."""
        counter = self.keys.partner_rate(partner_id, window)
        pipe = self.client.pipeline(transaction=False)
        pipe.incr(counter)
        pipe.expire(counter, COUNTER_TTL_SECONDS)
        calls, _ = pipe.execute()
        return int(calls)
