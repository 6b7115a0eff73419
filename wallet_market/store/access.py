"""API keys in Redis, stored as SHA-256 hashes of the key (never the key itself)."""
from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

import orjson

from .connection import RedisClient
from .keys import Keys

ROLES = ("app", "pm", "finance", "internal")


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class ApiKeyStore:
    def __init__(self, client: RedisClient, keys: Keys):
        self.client = client
        self.keys = keys

    def create(self, role: str, name: str = "") -> str:
        """Create and return a new API key with one ``role``; only its hash is kept."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        api_key = f"wm_{role}_{secrets.token_urlsafe(24)}"
        record = {"role": role, "name": name or role, "created_at": int(time.time()), "key_id": key_hash(api_key)[:12]}
        self.client.hset(self.keys.api_keys(), key_hash(api_key), orjson.dumps(record))
        return api_key

    def lookup(self, api_key_hash: str, pipe=None) -> dict[str, Any] | None:
        """The key's record, or ``None``; with ``pipe``, queue the read and return nothing."""
        if pipe is not None:
            pipe.hget(self.keys.api_keys(), api_key_hash)
            return None
        raw = self.client.hget(self.keys.api_keys(), api_key_hash)
        return orjson.loads(raw) if raw else None

    def count(self) -> int:
        return int(self.client.hlen(self.keys.api_keys()))

    def count_rate(self, key_id: str, window: int, pipe) -> None:
        """Queue the request counter of ``key_id`` for the fixed one-minute ``window``."""
        counter = self.keys.rate_limit(key_id, window)
        pipe.incr(counter)
        pipe.expire(counter, 120)
