"""The funnel ledger in Redis: the event stream, idempotency marks, postback records and counters.

Every key here shares the ``{ledger}`` hash tag, so ingestion (mark + append)
and application (acknowledge + count) are each one Lua script that runs
unchanged on Redis Cluster.

- Ingestion appends an event to the stream only if its idempotency mark was
  not set before, in the same script: nothing acknowledged is lost, nothing is
  appended twice.
- The worker reads the stream through a consumer group and applies entries
  with a script that acknowledges each entry and increments its counters
  together; an entry another consumer already acknowledged adds nothing.
- An entry that cannot be applied is counted against its attempts and, after
  the last one, moved to the dead-letter stream with its reason (and
  acknowledged) in one script; ``replay_dead_letter`` puts it back once.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Iterator, Mapping, Sequence

import orjson
import redis
from redis.cluster import ClusterPipeline
from redis.typing import EncodableT, FieldT, XReadGroupResponse

from ..domain.catalogue import Catalogue
from ..domain.funnel import LedgerEvent
from .catalogue import CatalogueStore, UnknownVersion
from .connection import RedisClient
from .keys import Keys
from .replies import int_hash, text, text_hash

log = logging.getLogger(__name__)

CONSUMER_GROUP = "ledger"
# Dead letters kept (the stream is trimmed, approximately, beyond this).
DEAD_LETTERS_KEPT = 100_000
# Postback records answer for idempotency and reversals; partners settle within months.
POSTBACK_RECORD_SECONDS = 400 * 86_400


@lru_cache(maxsize=None)
def script_text(name: str) -> str:
    """The text of ``store/scripts/<name>.lua`` (package data)."""
    return resources.files("wallet_market.store").joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")


class LuaScript:
    """A script of ``store/scripts/``, called like redis-py's :class:`~redis.commands.core.Script`.

    Run directly, or queued on a pipeline of a single Redis, it is EVALSHA with a
    load on first use. redis-py refuses EVALSHA on a Redis Cluster pipeline (it
    cannot load a missing script on the node a key maps to), so there the script
    is queued as EVAL with its text; the node is chosen by its keys, which share
    one hash slot.
    """

    def __init__(self, client: RedisClient, name: str):
        self.name = name
        self.script = client.register_script(script_text(name))

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None) -> Any:
        if isinstance(client, ClusterPipeline):
            return client.execute_command("EVAL", self.script.script, len(keys), *keys, *args)
        return self.script(keys=keys, args=args, client=client)


def register(client: RedisClient, name: str) -> LuaScript:
    """The script ``store/scripts/<name>.lua`` bound to ``client``."""
    return LuaScript(client, name)


def encode_event(event: LedgerEvent) -> bytes:
    return orjson.dumps(event.to_dict())


def decode_event(payload: bytes | str) -> LedgerEvent:
    return LedgerEvent.from_dict(orjson.loads(payload))


def readable_event(payload: bytes | str | None) -> LedgerEvent | None:
    """The event of a stored payload; None when there is none, or it is not JSON or not an event."""
    if payload is None:
        return None
    try:
        return decode_event(payload)
    except (KeyError, ValueError, TypeError, orjson.JSONDecodeError):
        return None


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One entry read from the event stream; ``event`` is None when it could not be read."""

    entry_id: str
    event: LedgerEvent | None
    raw: dict[bytes, bytes]

    @property
    def origin_id(self) -> str:
        """The id the event first had in the stream (a replayed dead letter keeps its first one)."""
        origin = self.raw.get(b"o")
        return origin.decode() if origin else self.entry_id


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry set aside by the worker: why, when, after how many attempts, and the entry as it was."""

    dead_letter_id: str
    entry_id: str
    reason: str
    attempts: int
    set_aside_at_ms: int
    fields: dict[str, str]  # the entry's own fields: "e", its event's payload

    @property
    def event(self) -> LedgerEvent | None:
        return readable_event(self.fields.get("e"))


class ApplyRaced(RuntimeError):
    """A reversal was applied between reading the records and applying a batch; read again."""


class Ledger:
    def __init__(self, client: RedisClient, keys: Keys, group: str = CONSUMER_GROUP):
        self.client = client
        self.keys = keys
        self.group = group
        self._ingest_events = register(client, "ingest_events")
        self._ingest_postback = register(client, "ingest_postback")
        self._apply = register(client, "apply_entries")
        self._fail = register(client, "fail_entry")
        self._replay = register(client, "replay_dead_letter")
        self._index_postback = register(client, "index_postback")

    # -- ingestion ---------------------------------------------------------
    def append_app_events(
        self, events: Sequence[tuple[str, LedgerEvent]], mark_seconds: int, pipe=None
    ) -> list[bool] | None:
        """Append ``(idempotency key, event)`` pairs once each; True where appended, False for duplicates.

        With ``pipe`` the script is queued and its flags come with the pipeline's answers.
        """
        if not events:
            return []
        keys = [self.keys.event_stream(), *(self.keys.event_seen(key) for key, _ in events)]
        args = [int(mark_seconds), *(encode_event(event) for _, event in events)]
        answer = self._ingest_events(keys=keys, args=args, client=pipe)
        if pipe is not None:
            return None
        return [bool(flag) for flag in answer]

    def append_postback(self, event: LedgerEvent) -> str:
        """Append a postback once per (partner, event id).

        Returns ``accepted``, ``duplicate``, or for a reversal that cannot stand
        ``already_reversed``, ``reverses_a_reversal`` or ``reversed_before_arrival``.
        """
        keys = [
            self.keys.event_stream(),
            self.keys.postback_record(event.source, event.event_id),
            self.keys.postbacks_of_day(event.source, event.day),
        ]
        if event.reverses:
            keys.append(self.keys.postback_record(event.source, event.reverses))
        args = [encode_event(event), event.type, event.event_id, event.day, POSTBACK_RECORD_SECONDS, event.occurred_at]
        answer = self._ingest_postback(keys=keys, args=args)
        return answer.decode() if isinstance(answer, bytes) else str(answer)

    def postback_record(self, partner_id: str, event_id: str) -> dict[str, str]:
        """A postback's record: its ``entry``, ``type``, and how it was reversed (for reconciliation)."""
        return text_hash(self.client.hgetall(self.keys.postback_record(partner_id, event_id)))

    def postbacks_of_days(self, partner_id: str, days: Sequence[str]) -> list[str]:
        """The event ids of ``partner_id``'s postbacks accepted for ``days`` (YYYYMMDD), day by day as they occurred."""
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.zrange(self.keys.postbacks_of_day(partner_id, day), 0, -1)
        return [text(member) for members in (pipe.execute() if days else []) for member in members]

    def postback_entries(self, partner_id: str, event_ids: Sequence[str]) -> dict[str, bytes]:
        """The accepted payload of each of ``partner_id``'s postbacks ``event_ids`` that has one (one pipeline)."""
        event_ids = list(dict.fromkeys(event_ids))
        if not event_ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for event_id in event_ids:
            pipe.hget(self.keys.postback_record(partner_id, event_id), "entry")
        return {event_id: entry for event_id, entry in zip(event_ids, pipe.execute()) if entry is not None}

    # -- postback records written before the per-day index ---------------
    def postback_index_complete(self) -> bool:
        """Whether every postback record written before the per-day index existed has been added to it."""
        return bool(self.client.exists(self.keys.postback_index_complete()))

    def mark_postback_index_complete(self) -> None:
        self.client.set(self.keys.postback_index_complete(), "1")

    def postback_record_keys(self) -> Iterator[str]:
        """The key of every postback record, lazily (SCAN; on a cluster, over each node)."""
        return (text(key) for key in self.client.scan_iter(match=self.keys.postback_records_pattern(), count=1000))

    def index_postback_records(self, record_keys: Sequence[str]) -> int:
        """Add each record of ``record_keys`` to its partner's day index, as ingestion does; how many were new.

        A record whose entry cannot be read is left out, and logged.
        """
        if not record_keys:
            return 0
        read = self.client.pipeline(transaction=False)
        for key in record_keys:
            read.hget(key, "entry")
        pipe = self.client.pipeline(transaction=False)
        queued = 0
        for key, entry in zip(record_keys, read.execute()):
            if entry is None:
                continue  # expired since the scan
            event = readable_event(entry)
            if event is None:
                log.warning("postback record %s cannot be read; left out of the day index", key)
                continue
            self._index_postback(
                keys=[key, self.keys.postbacks_of_day(event.source, event.day)],
                args=[event.occurred_at, event.event_id, POSTBACK_RECORD_SECONDS],
                client=pipe,
            )
            queued += 1
        return sum(int(added) for added in pipe.execute()) if queued else 0

    # -- consuming ---------------------------------------------------------
    def ensure_group(self) -> None:
        """Create the consumer group (from the stream's start) unless it exists."""
        try:
            self.client.xgroup_create(self.keys.event_stream(), self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_new(self, consumer: str, count: int, block_ms: int | None) -> list[StreamEntry]:
        """Entries never delivered to any consumer of the group."""
        answer = self.client.xreadgroup(
            self.group, consumer, {self.keys.event_stream(): ">"}, count=count, block=block_ms
        )
        return self._entries(_stream_entries(answer))

    def read_own_pending(self, consumer: str, count: int) -> list[StreamEntry]:
        """Entries delivered to ``consumer`` earlier and not yet acknowledged (after a restart)."""
        answer = self.client.xreadgroup(self.group, consumer, {self.keys.event_stream(): "0"}, count=count)
        return self._entries(_stream_entries(answer))

    def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[StreamEntry]:
        """Take over entries another consumer left unacknowledged for ``min_idle_ms`` (XAUTOCLAIM)."""
        found: list[StreamEntry] = []
        cursor = "0-0"
        while len(found) < count:
            answer = self.client.xautoclaim(
                self.keys.event_stream(), self.group, consumer, min_idle_ms, start_id=cursor, count=count - len(found)
            )
            cursor = answer[0].decode() if isinstance(answer[0], bytes) else str(answer[0])
            found.extend(self._entries(answer[1]))
            if cursor == "0-0":
                break
        return found

    @staticmethod
    def _entries(raw: Iterable[Any]) -> list[StreamEntry]:
        out = []
        for entry_id, fields in raw:
            if entry_id is None:
                continue
            if fields is None:  # deleted while pending: nothing left to apply
                out.append(StreamEntry(entry_id.decode(), None, {}))
                continue
            out.append(StreamEntry(entry_id.decode(), readable_event(fields.get(b"e")), fields))
        return out

    def reversal_days(self, records: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """The day a reversal was announced for each ``(partner, event id)``, None where none was."""
        records = list(dict.fromkeys(records))
        if not records:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for partner_id, event_id in records:
            pipe.hget(self.keys.postback_record(partner_id, event_id), "reversal_day")
        return {r: (v.decode() if v is not None else None) for r, v in zip(records, pipe.execute())}

    def apply(self, keys: Sequence[str], entries: Sequence[Mapping[str, Any]]) -> tuple[int, list[tuple[str, str]]]:
        """Run the apply script over a batch: how many entries it applied, and ``(entry id, reason)`` of those that failed.

        ``keys`` are the counter and record keys the entries refer to by index
        (index 3 is ``keys[0]``). An entry that failed wrote nothing and stays
        pending. Raises :class:`ApplyRaced` when a reversal was applied after the
        caller read the records; nothing was applied then.
        """
        answer = self._apply(
            keys=[self.keys.event_stream(), self.keys.apply_failures(), *keys],
            args=[self.group, orjson.dumps(list(entries))],
        )
        status = _text(answer[0])
        if status == "retry":
            raise ApplyRaced(_text(answer[1]))
        failed = [_text(v) or "" for v in (answer[2] if len(answer) > 2 else [])]
        return int(answer[1]), list(zip(failed[0::2], failed[1::2]))

    def fail(self, entry_id: str, reason: str, attempts_allowed: int) -> tuple[str, int]:
        """Count a failed attempt at ``entry_id``; at ``attempts_allowed`` set it aside (and acknowledge it).

        Returns ``("retry", attempts)``, ``("dead", attempts)``, or ``("gone", 0)``
        when the entry is no longer pending.
        """
        answer = self._fail(
            keys=[self.keys.event_stream(), self.keys.apply_failures(), self.keys.dead_letters()],
            args=[self.group, entry_id, reason, int(attempts_allowed), DEAD_LETTERS_KEPT],
        )
        return _text(answer[0]) or "", int(answer[1])

    def dead_letter(self, entry: StreamEntry, reason: str) -> bool:
        """Set aside an entry the worker cannot interpret at all, at once; False when it was no longer pending."""
        return self.fail(entry.entry_id, reason, 1)[0] == "dead"

    def dead_letters(self, count: int = 1000) -> list[DeadLetter]:
        """The dead letters, oldest first (at most ``count``)."""
        out = []
        for raw_id, raw_fields in self.client.xrange(self.keys.dead_letters(), count=count) or ():
            if raw_id is None or raw_fields is None:
                continue
            dead_letter_id = _lenient_text(raw_id)
            # what could not be read may not be UTF-8 either: shown with replacement characters
            fields = {_lenient_text(k): _lenient_text(v) for k, v in raw_fields.items()}
            out.append(
                DeadLetter(
                    dead_letter_id=dead_letter_id,
                    entry_id=fields.get("entry_id", ""),
                    reason=fields.get("reason", ""),
                    attempts=int(fields.get("attempts") or 1),
                    set_aside_at_ms=int(dead_letter_id.split("-")[0]),
                    fields={k: v for k, v in fields.items() if k not in ("entry_id", "reason", "attempts")},
                )
            )
        return out

    def replay_dead_letter(self, dead_letter_id: str) -> str | None:
        """Append a dead letter to the event stream again and remove it, in one step; its new entry id, or None."""
        answer = self._replay(keys=[self.keys.dead_letters(), self.keys.event_stream()], args=[dead_letter_id])
        return _text(answer) if answer else None

    # -- operations --------------------------------------------------------
    def lag(self) -> int:
        """Entries not yet applied: pending in the group plus never delivered."""
        stream = self.keys.event_stream()
        try:
            groups = self.client.xinfo_groups(stream)
        except redis.ResponseError:
            return 0
        group = next((g for g in groups if _text(g.get("name")) == self.group), None)
        if group is None:
            return int(self.client.xlen(stream))
        pending = int(group.get("pending") or 0)
        if group.get("lag") is not None:
            return pending + int(group["lag"])
        last = _text(group.get("last-delivered-id")) or "0-0"
        undelivered = len(self.client.xrange(stream, min=f"({last}", count=10_000) or [])
        return pending + undelivered

    def trim(self, keep_seconds: int, now_ms: int) -> int:
        """Drop entries older than ``keep_seconds`` that every consumer group acknowledged; returns how many went.

        Every group counts — the ledger's and the analysis export's — so no
        entry is trimmed before each of them has it.
        """
        stream = self.keys.event_stream()
        try:
            groups = self.client.xinfo_groups(stream)
        except redis.ResponseError:
            return 0
        if not any(_text(g.get("name")) == self.group for g in groups):
            return 0
        bound = now_ms - keep_seconds * 1000
        for group in groups:
            name = _text(group.get("name")) or ""
            last = _text(group.get("last-delivered-id")) or "0-0"
            bound = min(bound, int(last.split("-")[0]))
            summary = self.client.xpending(stream, name)
            if summary and summary.get("pending"):
                oldest = _text(summary.get("min")) or "0-0"
                bound = min(bound, int(oldest.split("-")[0]))
        if bound <= 0:
            return 0
        return int(self.client.xtrim(stream, minid=f"{bound}-0", approximate=False))

    # -- reading -----------------------------------------------------------
    def counters(self, days: Sequence[str]) -> list[tuple[str, dict[str, int]]]:
        """The counters of each day, in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(self.keys.counters(day))
        return [(day, int_hash(raw)) for day, raw in zip(days, pipe.execute())]

    def learned_counts_by_day(self, days: Sequence[str]) -> list[tuple[str, dict[str, int]]]:
        """Observed funnel counts per product and risk tier of each day (``YYYYMMDD``), in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(self.keys.learned_rates(day))
        return [(day, int_hash(raw)) for day, raw in zip(days, pipe.execute())]

    def learned_counts(self, days: Sequence[str]) -> dict[str, int]:
        """Observed funnel counts per product and risk tier summed over ``days``, without decay."""
        total: dict[str, int] = {}
        for _, counts in self.learned_counts_by_day(days):
            for name, value in counts.items():
                total[name] = total.get(name, 0) + value
        return total


def _stream_entries(answer: XReadGroupResponse) -> list[Any]:
    """The entries of the one stream an XREADGROUP read (the RESP2 reply ``[[stream, entries]]``)."""
    if not answer:
        return []
    if not isinstance(answer, list):
        raise TypeError("XREADGROUP answered in RESP3 form; the store's clients speak RESP2")
    entries: list[Any] = answer[0][1]
    return entries


def _lenient_text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class CatalogueVersions:
    """Published catalogues by version, loaded once each (versions are immutable)."""

    def __init__(self, store: CatalogueStore, max_versions: int = 64):
        self.store = store
        self.max_versions = max_versions
        self._cache: dict[int, Catalogue] = {}
        self._lock = threading.Lock()

    def get(self, version: int) -> Catalogue | None:
        """The catalogue of ``version``, or None if no such version was ever published."""
        with self._lock:
            if version in self._cache:
                return self._cache[version]
        try:
            record = self.store.load_version(version)
            catalogue = Catalogue.from_dict(record["catalogue"], version=int(record["version"]))
        except UnknownVersion:
            return None
        with self._lock:
            if len(self._cache) >= self.max_versions:
                self._cache.pop(next(iter(self._cache)))
            self._cache[version] = catalogue
        return catalogue

