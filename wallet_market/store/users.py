"""User facts in Redis, all under the user's hash tag ``{u:<id>}``.

The layout reads a user's facts on its one pipeline through
:mod:`wallet_market.store.layout_reads`.
"""
from __future__ import annotations

from typing import Any

import orjson

from .connection import RedisClient
from .keys import Keys


class UserStore:
    def __init__(self, client: RedisClient, keys: Keys):
        self.client = client
        self.keys = keys

    def put_profile(self, user_id: str, profile: dict[str, Any]) -> None:
        """Store the profile (one atomic SET: a profile is never half-written)."""
        self.client.set(self.keys.profile(user_id), orjson.dumps(profile, option=orjson.OPT_SORT_KEYS))

    def get_profile(self, user_id: str) -> dict[str, Any] | None:
        raw = self.client.get(self.keys.profile(user_id))
        return orjson.loads(raw) if raw else None
