"""Every Redis read one layout needs, queued on one pipeline and returned as named facts.

A layout costs one round trip: the check of the caller's API key (one small
script: the key's record, or only whether it still exists when the key is
cached in-process, and its rate counter — counted only for a known key) and,
for a logged-in user, the profile, today's impressions per product, suppressed
partners, cached pre-screen answers and the partners at their daily lead cap.
This module is the only place that knows the order of those reads; everyone
else gets the facts by name.

The key check is queued as ``EVAL`` with the script's text rather than
``EVALSHA``: redis-py would otherwise ask ``SCRIPT EXISTS`` first, a second
round trip, and on a cluster pipeline it cannot load a missing script at all.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import orjson
import redis

from .connection import RedisClient
from .keys import Keys
from .ledger import script_text

RATE_COUNTER_SECONDS = 120


@dataclass(frozen=True, slots=True)
class KeyFacts:
    """What the store says about one API key in this request."""

    record: dict[str, Any] | None
    read: bool  # whether the record was read (false: the caller had it cached)
    rate_count: int
    known: bool = True  # whether the key is in the key records (false: unknown or revoked)


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


def queue_key_reads(pipe: Any, keys: Keys, api_key_hash: str, read_record: bool, now: float) -> None:
    """Queue the key check: its record (when ``read_record``) or its existence, and its one-minute rate counter."""
    window = int(now // 60)
    pipe.execute_command(
        "EVAL",
        script_text("check_key"),
        3,
        keys.api_keys(),
        keys.rate_limit(api_key_hash[:16], window),
        keys.api_keys_last_used(),
        api_key_hash,
        "1" if read_record else "0",
        RATE_COUNTER_SECONDS,
        int(now),
    )


def parse_key_reads(results: Sequence[Any], read_record: bool) -> tuple[KeyFacts, int]:
    """The key facts from the start of ``results``, and how many results they took."""
    known, count, raw = results[0]
    if not int(known):
        return KeyFacts(None, read_record, 0, known=False), 1
    record = orjson.loads(raw) if read_record and raw else None
    return KeyFacts(record, read_record, int(count)), 1


def read_key_facts(client: RedisClient, keys: Keys, api_key_hash: str, read_record: bool) -> KeyFacts:
    """One round trip for a request that only needs its caller's key checked."""
    pipe = client.pipeline(transaction=False)
    queue_key_reads(pipe, keys, api_key_hash, read_record, time.time())
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
    queue_key_reads(pipe, keys, api_key_hash, read_key_record, now)
    if user_id is not None:
        _queue_user_reads(pipe, keys, user_id, day, prescreen_partners)
    results = pipe.execute()
    key, used = parse_key_reads(results, read_key_record)
    if user_id is None:
        return LayoutFacts(key, None)
    return LayoutFacts(key, _user_facts(results[used:], prescreen_partners, now))


def read_user_facts(
    client: RedisClient, keys: Keys, user_id: str, day: str, prescreen_partners: Sequence[str], now: float
) -> UserFacts:
    """What one layout would read about ``user_id``, without the caller's key (one round trip)."""
    pipe = client.pipeline(transaction=False)
    _queue_user_reads(pipe, keys, user_id, day, prescreen_partners)
    return _user_facts(pipe.execute(), prescreen_partners, now)


def _queue_user_reads(pipe: Any, keys: Keys, user_id: str, day: str, prescreen_partners: Sequence[str]) -> None:
    pipe.get(keys.profile(user_id))
    pipe.hgetall(keys.impressions_today(user_id, day))
    pipe.hgetall(keys.suppressed_partners(user_id))
    pipe.smembers(keys.leads_at_cap(day))
    if prescreen_partners:
        # MGET through execute_command: redis-py refuses ``mget`` on a Redis Cluster pipeline,
        # but these keys share the user's hash slot, so the command itself is fine there.
        pipe.execute_command("MGET", *(keys.prescreen(user_id, p) for p in prescreen_partners))


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
