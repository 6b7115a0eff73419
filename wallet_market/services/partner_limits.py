"""The rate limit of partners' signed calls: postbacks and joint-login exchanges.

Counted per partner per clock minute in Redis (shared by every worker), after
the signature checks out — a forged ``X-Partner-Id`` cannot use up a real
partner's allowance. Over the limit the call is a 429 with ``Retry-After``.
"""
from __future__ import annotations

import time
from typing import Callable

from ..store.rates import PartnerCallCounter
from .access import RateLimited, seconds_to_next_minute


class PartnerRateLimit:
    def __init__(self, counter: PartnerCallCounter, per_minute: int, clock: Callable[[], float] = time.time):
        self.counter = counter
        self.per_minute = per_minute
        self.clock = clock

    def check(self, partner_id: str) -> None:
        """Count one call of ``partner_id``; :class:`RateLimited` when it is over this minute's allowance."""
        now = self.clock()
        calls = self.counter.count(partner_id, int(now // 60))
        if calls > self.per_minute:
            raise RateLimited(
                f"more than {self.per_minute} signed calls this minute from partner {partner_id!r}",
                {"X-Partner-Id": ["rate limit reached"]},
                retry_after=seconds_to_next_minute(now),
            )
