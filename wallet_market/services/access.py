"""Who is calling: API keys with one role each, rate limits per key, user tokens.

Verified keys are cached in-process for a short while, so the hot layout path
costs no extra Redis round trip; a cached key stays usable (stale) while Redis
is unreachable, so layouts keep being served from the last snapshot.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from ..store.access import ApiKeyStore, key_hash
from ..store.layout_reads import KeyFacts, read_key_facts
from .errors import ServiceError, Unavailable
from .tokens import InvalidToken, UserTokens

FRESH_SECONDS = 30.0
STALE_SECONDS = 3600.0


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class RateLimited(ServiceError):
    """Too many calls in this clock minute; ``retry_after`` is the seconds until the next one."""

    status = 429

    def __init__(self, message: str, errors: dict | None = None, *, retry_after: int):
        super().__init__(message, errors)
        self.retry_after = retry_after


def seconds_to_next_minute(now: float | None = None) -> int:
    """Whole seconds until the next fixed one-minute rate window starts (1–60)."""
    current = time.time() if now is None else now
    return max(1, 60 - int(current) % 60)


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    name: str
    key_id: str


class Access:
    def __init__(self, api_keys: ApiKeyStore, user_tokens: UserTokens, rate_limit_per_minute: int):
        self.api_keys = api_keys
        self.user_tokens = user_tokens
        self.rate_limit_per_minute = rate_limit_per_minute
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    # -- API keys -----------------------------------------------------------
    @staticmethod
    def bearer(authorization: str | None) -> str:
        if not authorization or not authorization.startswith("Bearer ") or len(authorization) < 8:
            raise Unauthorized("missing API key", {"Authorization": ["expected 'Bearer <api key>'"]})
        return authorization[7:].strip()

    def key_reads(self, api_key: str) -> tuple[str, Principal | None]:
        """The key's hash and its principal when cached fresh (else the record must be read)."""
        digest = key_hash(api_key)
        return digest, self._cached(digest, fresh=True)

    def finish(self, digest: str, cached: Principal | None, facts: KeyFacts, roles: tuple[str, ...]) -> Principal:
        """Check what the store said of the key (or the cached principal) against the allowed ``roles``."""
        principal = self._remember(digest, facts.record) if facts.read else cached
        return self._check(principal, roles, facts.rate_count)

    def degraded(self, api_key: str, roles: tuple[str, ...]) -> Principal:
        """Redis is unreachable: accept a key verified within the last hour."""
        principal = self._cached(key_hash(api_key), fresh=False)
        if principal is None:
            raise Unavailable("the key store is unreachable; retry shortly")
        return self._check(principal, roles, 0)

    def authenticate(self, authorization: str | None, roles: tuple[str, ...]) -> Principal:
        """One round trip: verify the bearer key, its role and its rate."""
        api_key = self.bearer(authorization)
        digest, cached = self.key_reads(api_key)
        try:
            facts = read_key_facts(self.api_keys.client, self.api_keys.keys, digest, read_record=cached is None)
        except redis.RedisError:
            return self.degraded(api_key, roles)
        return self.finish(digest, cached, facts, roles)

    def _check(self, principal: Principal | None, roles: tuple[str, ...], count: int) -> Principal:
        if principal is None:
            raise Unauthorized("unknown API key", {"Authorization": ["unknown API key"]})
        if principal.role not in roles:
            raise Forbidden(
                f"the {principal.role!r} role may not call this; it needs {' or '.join(roles)}",
                {"Authorization": [f"role {principal.role!r} not allowed"]},
            )
        if count > self.rate_limit_per_minute:
            raise RateLimited(
                f"more than {self.rate_limit_per_minute} requests this minute for this key",
                {"Authorization": ["rate limit reached"]},
                retry_after=seconds_to_next_minute(),
            )
        return principal

    def _cached(self, digest: str, fresh: bool) -> Principal | None:
        entry = self._cache.get(digest)
        if entry is None:
            return None
        checked_at, principal = entry
        age = time.monotonic() - checked_at
        if age <= (FRESH_SECONDS if fresh else STALE_SECONDS):
            return principal
        return None

    def _remember(self, digest: str, record: dict[str, Any] | None) -> Principal | None:
        principal = None
        if record:
            principal = Principal(role=record["role"], name=record.get("name", ""), key_id=record.get("key_id", digest[:12]))
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            if principal is not None:
                self._cache[digest] = (time.monotonic(), principal)
            else:
                self._cache.pop(digest, None)
        return principal

    # -- users ----------------------------------------------------------------
    def user_id(self, user_token: str | None) -> str | None:
        """The logged-in user named by ``X-User-Token``; none is a visitor, a bad token a 401."""
        if user_token is None or user_token == "":
            return None
        try:
            return self.user_tokens.user_id(user_token)
        except InvalidToken as exc:
            raise Unauthorized(f"user token rejected: {exc.reason}", {"X-User-Token": [exc.reason]}) from None
