"""Every Redis read one layout needs, queued on one pipeline and returned as named facts.

A layout costs one round trip: the caller's API key record (unless the key is
cached in-process), the key's rate counter and, for a logged-in user, the
profile, today's impressions per product, suppressed partners, cached
pre-screen answers and the partners at their daily lead cap. This module is the
only place that knows the order of those reads; everyone else gets the facts by
name.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import orjson
import redis

from .connection import RedisClient
from .keys import Keys


@dataclass(frozen=True, slots=True)
class KeyFacts:
    """What the store says about one API key in this request."""

    record: dict[str, Any] | None
    read: bool  # whether the record was read (false: the caller had it cached)
    rate_count: int


@dataclass(frozen=True, slots=True)
class UserFacts:
    """What the store says about one logged-in user today."""

    profile: dict[str, Any] | None
    impressions_today: dict[str, int] = field(default_factory=dict)
    suppressed_partners: frozenset[str] = frozenset()
    prescreen: dict[str, str] = field(default_factory=dict)
    partners_at_lead_cap: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class LayoutFacts:
    key: KeyFacts
    user: UserFacts | None


def queue_key_reads(pipe: Any, keys: Keys, api_key_hash: str, read_record: bool, window: int) -> None:
    """Queue the key's record (when ``read_record``) and its one-minute rate counter."""
    if read_record:
        pipe.hget(keys.api_keys(), api_key_hash)
    counter = keys.rate_limit(api_key_hash[:16], window)
    pipe.incr(counter)
    pipe.expire(counter, 120)


def parse_key_reads(results: Sequence[Any], read_record: bool) -> tuple[KeyFacts, int]:
    """The key facts from the start of ``results``, and how many results they took."""
    if read_record:
        raw, count = results[0], results[1]
        return KeyFacts(orjson.loads(raw) if raw else None, True, int(count)), 3
    return KeyFacts(None, False, int(results[0])), 2


def read_key_facts(client: RedisClient, keys: Keys, api_key_hash: str, read_record: bool) -> KeyFacts:
    """One round trip for a request that only needs its caller's key checked."""
    pipe = client.pipeline(transaction=False)
    queue_key_reads(pipe, keys, api_key_hash, read_record, int(time.time() // 60))
    return parse_key_reads(pipe.execute(), read_record)[0]


def read_layout_facts(
    client: RedisClient,
    keys: Keys,
    *,
    api_key_hash: str,
    read_key_record: bool,
    user_id: str | None,
    day: str,
    prescreen_partners: Sequence[str],
    now: float,
) -> LayoutFacts:
    """Read everything one layout needs in one round trip; raises ``redis.RedisError`` when unreachable."""
    pipe = client.pipeline(transaction=False)
    queue_key_reads(pipe, keys, api_key_hash, read_key_record, int(now // 60))
    if user_id is not None:
        pipe.get(keys.profile(user_id))
        pipe.hgetall(keys.impressions_today(user_id, day))
        pipe.hgetall(keys.suppressed_partners(user_id))
        pipe.smembers(keys.leads_at_cap(day))
        if prescreen_partners:
            pipe.mget([keys.prescreen(user_id, p) for p in prescreen_partners])
    results = pipe.execute()
    key, used = parse_key_reads(results, read_key_record)
    if user_id is None:
        return LayoutFacts(key, None)
    return LayoutFacts(key, _user_facts(results[used:], prescreen_partners, now))


def _user_facts(results: Sequence[Any], prescreen_partners: Sequence[str], now: float) -> UserFacts:
    raw_profile, impressions, suppressed, at_cap = results[:4]
    answers: dict[str, str] = {}
    if prescreen_partners:
        for partner_id, answer in zip(prescreen_partners, results[4]):
            if answer is not None:
                answers[partner_id] = answer.decode()
    return UserFacts(
        profile=orjson.loads(raw_profile) if raw_profile else None,
        impressions_today={k.decode(): int(v) for k, v in (impressions or {}).items()},
        suppressed_partners=frozenset(k.decode() for k, v in (suppressed or {}).items() if float(v) > now),
        prescreen=answers,
        partners_at_lead_cap=frozenset(p.decode() for p in at_cap or ()),
    )
