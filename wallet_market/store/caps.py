"""Frequency caps, suppression and partner lead caps in Redis.

- A user's impressions per product and day and the partners suppressed for the
  user live under the user's hash tag ``{u:<id>}``; the ledger worker writes
  them once per stream entry (a per-day set of applied entry ids makes a
  replayed entry a no-op). The layout reads them in its one pipeline.
- Partner lead counters live beside the at-cap set under ``{partners}``, so
  counting a lead and deciding whether the partner is at its cap (or ahead of
  its pace) is one atomic script, whatever the number of concurrent requests.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Mapping, Sequence

import orjson
import redis

from ..domain.users import UserProfile
from .connection import RedisClient
from .keys import Keys
from .ledger import register
from .replies import int_hash, text_set

# Day-scoped keys outlive their day a little, for late events and reading yesterday.
DAY_KEY_SECONDS = 3 * 86_400


class UserFacts:
    """Per-user frequency caps and partner suppression, applied idempotently."""

    def __init__(self, client: RedisClient, keys: Keys):
        self.client = client
        self.keys = keys
        self._script = register(client, "user_effects")

    def queue(
        self,
        pipe,
        *,
        entry_id: str,
        user_id: str,
        day: str,
        impressed_product: str | None,
        suppress_partner: str | None,
        suppressed_until: int,
        now: int,
    ) -> None:
        """Queue one stream entry's effect on a user (no-op if that entry was applied before)."""
        self._script(
            keys=[
                self.keys.user_events_applied(user_id, day),
                self.keys.impressions_today(user_id, day),
                self.keys.suppressed_partners(user_id),
            ],
            args=[entry_id, impressed_product or "", suppress_partner or "", int(suppressed_until), DAY_KEY_SECONDS, int(now)],
            client=pipe,
        )

    def record_in_house_decline(self, user_id: str, decided_on: date) -> bool:
        """Mark the user declined by the in-house lender on ``decided_on`` (DESIGN §4 cool-down).

        A newer decision already on the profile wins; a user with no profile
        gets the safest one (no personalisation, no consent to share) carrying
        the decline. Returns True when the profile changed. Optimistic
        transaction on the profile, so a concurrent profile write is not lost.
        """
        key = self.keys.profile(user_id)
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw:
                        profile = UserProfile.from_dict(orjson.loads(raw), user_id=user_id)
                    else:
                        profile = UserProfile(user_id=user_id, personalized=False)
                    if profile.decided_at is not None and profile.decided_at > decided_on:
                        pipe.unwatch()
                        return False
                    if profile.in_house_decision == "declined" and profile.decided_at == decided_on:
                        pipe.unwatch()
                        return False
                    updated = replace(profile, in_house_decision="declined", decided_at=decided_on)
                    pipe.multi()
                    pipe.set(key, orjson.dumps(updated.to_dict(), option=orjson.OPT_SORT_KEYS))
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def impressions(self, user_id: str, day: str) -> dict[str, int]:
        return int_hash(self.client.hgetall(self.keys.impressions_today(user_id, day)))

    def suppressed(self, user_id: str) -> dict[str, int]:
        return int_hash(self.client.hgetall(self.keys.suppressed_partners(user_id)))


class LeadCaps:
    """Partners' daily lead counters and the set of partners at their cap or ahead of their pace."""

    def __init__(self, client: RedisClient, keys: Keys):
        self.client = client
        self.keys = keys
        self._take = register(client, "take_leads")
        self._pace = register(client, "pace_leads")

    def take(self, day: str, clicks: Sequence[tuple[str, str, int]], pipe=None):
        """Count ``(click key, partner, leads allowed by now)`` clicks as leads, atomically.

        Returns one flag per click (True: counted; False: the partner was at
        its cap or pace). A click seen before gets its first answer again. With
        ``pipe`` the script is queued and its answer comes with the pipeline's.
        """
        args: list = [DAY_KEY_SECONDS]
        for mark, partner_id, allowed in clicks:
            args.extend((mark, partner_id, int(allowed)))
        keys = [self.keys.leads_today(day), self.keys.lead_marks(day), self.keys.leads_at_cap(day)]
        answer = self._take(keys=keys, args=args, client=pipe)
        if pipe is not None:
            return None
        return [bool(int(flag)) for flag in answer]

    def pace(self, day: str, allowed_by_partner: Mapping[str, int | None]) -> set[str]:
        """Re-decide the at-cap set for the time of day; ``None`` allowance means no cap. Returns the set."""
        if not allowed_by_partner:
            return self.at_cap(day)
        args: list = [DAY_KEY_SECONDS]
        for partner_id, allowed in allowed_by_partner.items():
            args.extend((partner_id, -1 if allowed is None else int(allowed)))
        members = self._pace(keys=[self.keys.leads_today(day), self.keys.leads_at_cap(day)], args=args)
        return text_set(members)

    def leads(self, day: str) -> dict[str, int]:
        """Leads counted per partner on ``day``."""
        return int_hash(self.client.hgetall(self.keys.leads_today(day)))

    def at_cap(self, day: str) -> set[str]:
        return text_set(self.client.smembers(self.keys.leads_at_cap(day)))
