"""User profiles as the internal systems describe them (``PUT/GET /v1/users/<id>``)."""
from __future__ import annotations

import logging
from typing import Any, Callable

import redis

from ..domain.ids import USER_ID_RULE, is_user_id
from ..domain.users import UserProfile
from ..store.data_shares import DataShare, DataShareStore
from ..store.users import UserStore
from .errors import Invalid, NotFound

log = logging.getLogger(__name__)


def checked_user_id(user_id: str) -> str:
    """``user_id`` when it is well formed; :class:`Invalid` (422) naming ``user_id`` otherwise."""
    if not is_user_id(user_id):
        raise Invalid(f"user id {user_id!r} is not well formed", {"user_id": [USER_ID_RULE]})
    return user_id


class UserProfiles:
    def __init__(self, users: UserStore, shares: DataShareStore):
        self.users = users
        self.shares = shares
        # Called with each stored profile (pre-screens asked ahead of the user's next layout); must not raise.
        self.on_put: list[Callable[[UserProfile], None]] = []

    def put(self, profile: UserProfile) -> dict[str, Any]:
        """Store the whole profile (one atomic write); returns what was stored."""
        checked_user_id(profile.user_id)
        stored = profile.to_dict()
        self.users.put_profile(profile.user_id, stored)
        for hook in self.on_put:
            try:
                hook(profile)
            except redis.RedisError as exc:  # the profile is stored; what follows from it can wait
                log.warning("after storing the profile of %s: Redis unavailable: %s", profile.user_id, exc)
        return stored

    def get(self, user_id: str) -> dict[str, Any]:
        stored = self.users.get_profile(checked_user_id(user_id))
        if stored is None:
            raise NotFound(f"user {user_id!r} has no profile")
        return stored

    def data_shares(self, user_id: str, limit: int = 100) -> list[DataShare]:
        """Every send of this user's data to a partner, newest first."""
        return self.shares.list(checked_user_id(user_id), limit=limit)
