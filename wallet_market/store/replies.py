"""Reading Redis replies as text and numbers.

The store's clients are built without ``decode_responses``, so replies come as
bytes; redis-py types them as ``bytes | str`` to cover either setting. These
helpers turn a reply into ``str`` once, for both cases.
"""
from __future__ import annotations

from typing import Iterable, Mapping

Reply = bytes | str


def text(raw: Reply) -> str:
    """A reply as text."""
    return raw.decode() if isinstance(raw, bytes) else raw


def text_or_none(raw: Reply | None) -> str | None:
    """A reply that may be missing (``None``) as text."""
    return None if raw is None else text(raw)


def text_hash(raw: Mapping[Reply, Reply]) -> dict[str, str]:
    """A hash (HGETALL, stream entry fields) with text fields and values."""
    return {text(k): text(v) for k, v in raw.items()}


def int_hash(raw: Mapping[Reply, Reply]) -> dict[str, int]:
    """A hash of counters: text fields, integer values."""
    return {text(k): int(v) for k, v in raw.items()}


def text_set(raw: Iterable[Reply]) -> set[str]:
    """Set members (SMEMBERS, a script's array) as text."""
    return {text(m) for m in raw}


def stream_entries(
    raw: Iterable[tuple[Reply | None, Mapping[Reply, Reply] | None]] | None,
) -> list[tuple[str, dict[str, str]]]:
    """A stream range (XRANGE, XREVRANGE) as ``(entry id, fields)`` in text.

    redis-py types an entry's id and fields as optional (a pending entry that
    was deleted has none); such an entry has nothing to read and is left out.
    """
    return [
        (text(entry_id), text_hash(fields))
        for entry_id, fields in raw or ()
        if entry_id is not None and fields is not None
    ]
