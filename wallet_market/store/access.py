"""API keys in Redis, stored as SHA-256 hashes of the key (never the key itself)."""
from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any, Callable

import orjson

from .connection import RedisClient
from .keys import Keys
from .replies import text, text_set

ROLES = ("app", "pm", "finance", "internal")


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class ApiKeyStore:
    def __init__(self, client: RedisClient, keys: Keys, sign: Callable[[str], str] | None = None):
        self.client = client
        self.keys = keys
        self.sign = sign  # appends the key's tag to ``wm_<role>_<random>``

    def create(self, role: str, name: str = "") -> str:
        """Create and return a new API key with one ``role``; only its hash is kept."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        api_key = f"wm_{role}_{secrets.token_urlsafe(24)}"
        if self.sign is not None:
            api_key = self.sign(api_key)
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

    def list(self) -> list[dict[str, Any]]:
        """Every key's id, name, role, when it was created and last used (never the key or its hash), oldest first."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.api_keys())
        pipe.hgetall(self.keys.api_keys_last_used())
        records, last_used = pipe.execute()
        out = []
        for digest, raw in records.items():
            record = orjson.loads(raw)
            used = last_used.get(digest)
            out.append(
                {
                    "key_id": key_id_of(text(digest), record),
                    "name": record.get("name", ""),
                    "role": record.get("role", ""),
                    "created_at": record.get("created_at"),
                    "last_used_at": int(used) if used is not None else None,
                }
            )
        return sorted(out, key=lambda k: (k["created_at"] or 0, k["key_id"]))

    def revoke(self, key_id: str) -> dict[str, Any] | None:
        """Delete the key ``key_id`` and tell every process to forget it; its listing entry, or None if unknown.

        The deletion and the entry in the set of revoked ids are one transaction
        in the ``{auth}`` slot, so a process that starts or reconnects later
        still learns of it (:meth:`revoked_ids`); the announcement is published
        after it, outside any pipeline (Redis Cluster refuses PUBLISH inside a
        transaction).
        """
        records = self.client.hgetall(self.keys.api_keys())
        parsed = [(digest, orjson.loads(raw)) for digest, raw in records.items()]
        found = [(digest, record) for digest, record in parsed if key_id_of(text(digest), record) == key_id]
        if len(found) != 1:
            return None
        digest, record = found[0]
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.keys.api_keys(), digest)
        pipe.hdel(self.keys.api_keys_last_used(), digest)
        pipe.sadd(self.keys.api_keys_revoked(), key_id)
        deleted, _, _ = pipe.execute()
        if not deleted:
            return None
        self.client.publish(self.keys.api_keys_revoked_channel(), key_id)
        return {"key_id": key_id, "name": record.get("name", ""), "role": record.get("role", "")}

    def revoked_ids(self) -> set[str]:
        """The ids of every key ever revoked."""
        return text_set(self.client.smembers(self.keys.api_keys_revoked()))


def key_id_of(digest: str, record: dict[str, Any]) -> str:
    """The id a key is known by in listings and revocations (the first 12 hex digits of its hash)."""
    return str(record.get("key_id") or digest[:12])
