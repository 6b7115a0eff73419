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

A key also carries a tag, an HMAC of its role and random part under the
service secret (``wm_<role>_<random>_<tag>``; see :class:`KeyTags`). While
Redis is unreachable a process can check a tag offline: an ``app`` key whose
tag verifies gets its layouts (degraded: no personal data, no rate count) even
if this process never saw it; nothing else is accepted on a tag alone, and a
key shaped like a tagged one whose tag does not verify is refused. With Redis
up the store decides, as for keys made before tags existed.

A tag outlives its key, so the ids of revoked keys are kept in Redis for good
(:meth:`ApiKeyStore.revoked_ids`). A process reads that set when it starts, each
time its subscriber (re)connects and on its slow poll (:meth:`Access.load_revoked`),
besides hearing each revocation as it happens; a revocation it missed while
starting or disconnected is learnt there. A process that has never read the set
(it started while Redis was away) accepts no key on its tag alone: it answers
503 for such keys, as it cannot tell a revoked one from a live one.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import redis

from ..store.access import ROLES, ApiKeyStore, key_hash, key_id_of
from ..store.layout_reads import KeyFacts, read_key_facts
from .errors import ServiceError, Unavailable
from .tokens import InvalidToken, UserTokens

# How long a key's record read from Redis is reused (its existence is checked on every request regardless).
FRESH_SECONDS = 5.0
DEFAULT_OUTAGE_GRACE_SECONDS = 300.0
CACHE_SIZE = 10_000
TAG_CONTEXT = b"wallet_market api key tag v1"
TAG_HEX_CHARS = 32
TAGGED_KEY = re.compile(
    r"^(wm_(" + "|".join(ROLES) + r")_[A-Za-z0-9_-]{32})_([0-9a-f]{" + str(TAG_HEX_CHARS) + r"})$"
)


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


class KeyTags:
    """Tags on API keys: the first 128 bits of an HMAC-SHA256 of ``wm_<role>_<random>``.

    The HMAC key is derived from the service secret for this use alone, so a
    tag is no signature of anything else the secret signs.
    """

    def __init__(self, secret: str):
        self._key = hmac.new(secret.encode(), TAG_CONTEXT, hashlib.sha256).digest()

    def _tag(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:TAG_HEX_CHARS]

    def sign(self, body: str) -> str:
        """``body`` (``wm_<role>_<random>``) with its tag appended."""
        return f"{body}_{self._tag(body)}"

    def verify(self, api_key: str) -> tuple[bool, str | None]:
        """(whether ``api_key`` is shaped like a tagged key, its role when the tag verifies)."""
        match = TAGGED_KEY.match(api_key)
        if match is None:
            return False, None
        body, role, tag = match.groups()
        return True, role if hmac.compare_digest(tag, self._tag(body)) else None


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
        key_tags: KeyTags | None = None,
    ):
        self.api_keys = api_keys
        self.user_tokens = user_tokens
        self.rate_limit_per_minute = rate_limit_per_minute  # 0: no limit
        self.key_tags = key_tags
        self.outage_grace_seconds = outage_grace_seconds
        self.clock = clock
        self._cache: dict[str, _Cached] = {}
        self._revoked: set[str] = set()  # ids of revoked keys: never cached again, never accepted on a tag
        self._revoked_loaded = False  # whether this process has read the stored set of revoked ids
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

    def degraded(self, api_key: str, roles: tuple[str, ...], offline_roles: tuple[str, ...] = ()) -> Principal:
        """Redis is unreachable: accept a key verified within the outage grace, or one of
        ``offline_roles`` whose tag verifies (and that this process did not hear revoked);
        refuse a key whose tag is forged."""
        digest = key_hash(api_key)
        principal = self._cached(digest, fresh=False)
        if principal is None:
            tagged, role = self.key_tags.verify(api_key) if self.key_tags is not None else (False, None)
            if tagged and role is None:
                raise Unauthorized("unknown API key", {"Authorization": ["unknown API key"]})
            key_id = digest[:12]
            if role is not None and key_id in self._revoked:
                raise Unauthorized("revoked API key", {"Authorization": ["revoked API key"]})
            if role is None or not self._revoked_loaded or (role in roles and role not in offline_roles):
                raise Unavailable("the key store is unreachable; retry shortly")
            principal = Principal(role=role, name="", key_id=key_id)
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

    def forget(self, key_ids: set[str]) -> int:
        """Mark the keys ``key_ids`` revoked and drop them from this process's cache; how many entries went."""
        with self._lock:
            new = key_ids - self._revoked  # a known id is in no cache entry: _remember never caches it
            if not new:
                return 0
            self._revoked |= new
            gone = [d for d, c in self._cache.items() if c.principal.key_id in new]
            for digest in gone:
                del self._cache[digest]
        return len(gone)

    def load_revoked(self) -> bool:
        """Read the stored ids of revoked keys and forget each; False (nothing changed) while Redis is unreachable."""
        try:
            key_ids = self.api_keys.revoked_ids()
        except redis.RedisError:
            return False
        self.forget(key_ids)
        self._revoked_loaded = True
        return True

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
        if self.rate_limit_per_minute and count > self.rate_limit_per_minute:
            raise RateLimited(
                f"more than {self.rate_limit_per_minute} requests this minute for this key",
                {"Authorization": ["rate limit reached"]},
                retry_after=seconds_to_next_minute(),
            )
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
