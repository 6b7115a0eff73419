"""Who is calling: API keys with one role each, rate limits per key, user tokens.

Every request checks its key in Redis on the request's one round trip (a small
script that also counts the request, only for a key that exists): a key
revoked or deleted by hand is refused at its next request. The key's record is
cached in-process for ``FRESH_SECONDS`` so that check stays small. A revoked
key is also announced on a pub/sub channel, and every process drops it from its
cache at once (:meth:`Access.forget`), so it is not accepted even during an
outage. While Redis is unreachable, a key verified within the last
``outage_grace_seconds`` is accepted, so layouts keep being served from the
last snapshot; an older one is not.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import redis

from ..store.access import ApiKeyStore, key_hash, key_id_of
from ..store.layout_reads import KeyFacts, read_key_facts
from .errors import ServiceError, Unavailable
from .tokens import InvalidToken, UserTokens

# How long a key's record read from Redis is reused (its existence is checked on every request regardless).
FRESH_SECONDS = 5.0
DEFAULT_OUTAGE_GRACE_SECONDS = 300.0
CACHE_SIZE = 10_000


class Unauthorized(ServiceError):
    status = 401


class Forbidden(ServiceError):
    status = 403


class RateLimited(ServiceError):
    status = 429


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    name: str
    key_id: str


@dataclass(slots=True)
class _Cached:
    principal: Principal
    read_at: float  # when the record was read
    verified_at: float  # when Redis last said the key exists


class Access:
    def __init__(
        self,
        api_keys: ApiKeyStore,
        user_tokens: UserTokens,
        rate_limit_per_minute: int,
        outage_grace_seconds: float = DEFAULT_OUTAGE_GRACE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.api_keys = api_keys
        self.user_tokens = user_tokens
        self.rate_limit_per_minute = rate_limit_per_minute
        self.outage_grace_seconds = outage_grace_seconds
        self.clock = clock
        self._cache: dict[str, _Cached] = {}
        self._revoked: set[str] = set()  # key ids announced revoked: never cached again
        self._lock = threading.Lock()

    # -- API keys -----------------------------------------------------------
    @staticmethod
    def bearer(authorization: str | None) -> str:
        if not authorization or not authorization.startswith("Bearer ") or len(authorization) < 8:
            raise Unauthorized("missing API key", {"Authorization": ["expected 'Bearer <api key>'"]})
        return authorization[7:].strip()

    def key_reads(self, api_key: str) -> tuple[str, Principal | None]:
        """The key's hash and its principal when its record is cached fresh (else the record must be read)."""
        digest = key_hash(api_key)
        return digest, self._cached(digest, fresh=True)

    def finish(self, digest: str, cached: Principal | None, facts: KeyFacts, roles: tuple[str, ...]) -> Principal:
        """Check what the store said of the key (or the cached principal) against the allowed ``roles``."""
        if not facts.known:
            self._forget_digest(digest)
            principal = None
        elif facts.read:
            principal = self._remember(digest, facts.record)
        else:
            principal = cached
            self._verified(digest)
        return self._check(principal, roles, facts.rate_count)

    def degraded(self, api_key: str, roles: tuple[str, ...]) -> Principal:
        """Redis is unreachable: accept a key verified within the outage grace."""
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

    def forget(self, key_id: str) -> int:
        """Drop the revoked key ``key_id`` from this process's cache; how many entries went."""
        with self._lock:
            if len(self._revoked) > CACHE_SIZE:
                self._revoked.clear()
            self._revoked.add(key_id)
            gone = [d for d, c in self._cache.items() if c.principal.key_id == key_id]
            for digest in gone:
                del self._cache[digest]
        return len(gone)

    def on_revoked(self, message: bytes | str) -> None:
        """A message of the revocation channel: the key id to forget."""
        self.forget(message.decode() if isinstance(message, bytes) else str(message))

    def recheck(self, api_key_hash: str, roles: tuple[str, ...]) -> Principal:
        """Verify a key known only by its hash (a signed-in console session) is still valid, for ``roles``."""
        principal = self._cached(api_key_hash, fresh=True)
        if principal is None:
            try:
                record = self.api_keys.lookup(api_key_hash)
            except redis.RedisError:
                principal = self._cached(api_key_hash, fresh=False)
                if principal is None:
                    raise Unavailable("the key store is unreachable; retry shortly") from None
                return self._check(principal, roles, 0)
            principal = self._remember(api_key_hash, record)
        return self._check(principal, roles, 0)

    def _check(self, principal: Principal | None, roles: tuple[str, ...], count: int) -> Principal:
        if principal is None:
            raise Unauthorized("unknown API key", {"Authorization": ["unknown API key"]})
        if principal.role not in roles:
            raise Forbidden(
                f"the {principal.role!r} role may not call this; it needs {' or '.join(roles)}",
                {"Authorization": [f"role {principal.role!r} not allowed"]},
            )
        if count > self.rate_limit_per_minute:
            raise RateLimited(f"more than {self.rate_limit_per_minute} requests this minute for this key")
        return principal

    def _cached(self, digest: str, fresh: bool) -> Principal | None:
        """The cached principal: ``fresh``, its record read within FRESH_SECONDS; else verified within the grace."""
        entry = self._cache.get(digest)
        if entry is None:
            return None
        now = self.clock()
        if fresh:
            return entry.principal if now - entry.read_at <= FRESH_SECONDS else None
        return entry.principal if now - entry.verified_at <= self.outage_grace_seconds else None

    def _verified(self, digest: str) -> None:
        entry = self._cache.get(digest)
        if entry is not None:
            entry.verified_at = self.clock()

    def _forget_digest(self, digest: str) -> None:
        with self._lock:
            self._cache.pop(digest, None)

    def _remember(self, digest: str, record: dict[str, Any] | None) -> Principal | None:
        principal = None
        if record:
            principal = Principal(role=record["role"], name=record.get("name", ""), key_id=key_id_of(digest, record))
        with self._lock:
            if len(self._cache) > CACHE_SIZE:
                self._cache.clear()
            if principal is not None and principal.key_id not in self._revoked:
                now = self.clock()
                self._cache[digest] = _Cached(principal, now, now)
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
