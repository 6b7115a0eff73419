"""The ledger worker (``wallet-market worker``): the event stream becomes counters.

At-least-once delivery through a consumer group, idempotent application:

1. a batch is read (entries left pending by a dead consumer are reclaimed with
   XAUTOCLAIM first);
2. each entry's effect on its user — impressions toward frequency caps,
   suppression of a partner after an application, approval or rejection, an
   in-house decline — is applied once per entry id, and so is its effect on the
   per-unit counters of the experiment its impression took part in;
3. the batch's counters (by channel, partner, product, slot, risk tier and
   day), learned funnel counts and postback records are incremented by one
   script that acknowledges each entry in the same step, so an entry counts
   exactly once however often it is delivered.

A worker killed anywhere in between leaves its entries pending; whoever claims
them next repeats steps 2 and 3, and both are no-ops for what was done. The
worker also re-decides, every few seconds, which partners are ahead of their
lead pace, reports the stream lag and trims applied entries.

An entry that cannot be applied never holds up the others: what it wrote is
taken back, it stays pending and is delivered again (reclaimed once idle); after
``attempts`` deliveries it is moved to the dead-letter stream with its reason
and acknowledged. An entry that cannot be read or interpreted at all is set
aside at once. ``wallet-market ledger dead-letters --replay`` puts dead letters
back on the stream after the cause is fixed.
"""
from __future__ import annotations

import enum
import itertools
import logging
import os
import socket
import threading
import time
from datetime import date, datetime, timezone
from typing import Any, Callable, Final, Iterator, Literal, Sequence

import orjson
import redis

from .. import metrics
from ..domain import bounds
from ..domain.catalogue import IN_HOUSE, Catalogue
from ..domain.learning import learning_window_days
from ..domain.funnel import (
    APP_EVENT_TYPES,
    APPROVALS,
    CLICKS,
    GROUP_CONTRIBUTION,
    IMPRESSIONS,
    LOANS,
    PLATFORM_REVENUE,
    SEP,
    IMPRESSION,
    REJECTED,
    REVERSED,
    SUPPRESSING_TYPES,
    LedgerEvent,
    counter_deltas,
    day_of,
    learning_deltas,
    ledger_adds,
    paced_lead_allowance,
    reversal_deltas,
    suppressed_until,
)
from ..store.caps import LeadCaps, UserFacts
from ..store.catalogue import CatalogueStore
from ..store.experiments import ExperimentCounters
from ..store.connection import RedisClient
from ..store.keys import Keys
from ..store.ledger import ApplyRaced, CatalogueVersions, Ledger, StreamEntry
from ..quiet_logs import RepeatLimiter

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 5.0
# Postback records added to the per-day index per housekeeping round, until every old one is in it.
POSTBACK_INDEX_BATCH = 2_000
TRIM_SECONDS = 60.0
# Applied entries stay in the stream a day, for inspection and replay.
STREAM_KEEP_SECONDS = 86_400
PLAN_CACHE_SIZE = 50_000
# Deliveries of an entry that fails to apply before it is set aside in the dead-letter stream.
APPLY_ATTEMPTS = 3

# What an experiment counts per unit (the measures of the ledger's counters it keeps).
EXPERIMENT_MEASURES = frozenset({IMPRESSIONS, CLICKS, APPROVALS, LOANS, PLATFORM_REVENUE, GROUP_CONTRIBUTION})


class _Default(enum.Enum):
    """The default of :meth:`LedgerWorker.step`'s ``block_ms``: the worker's own setting."""

    CONFIGURED = enum.auto()


_CONFIGURED: Final = _Default.CONFIGURED


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class _KeyIndex:
    """The keys a batch's script refers to, numbered as the script sees them (KEYS[3] is the first)."""

    FIRST = 3

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        found = self._index.get(key)
        if found is None:
            self.keys.append(key)
            found = self._index[key] = len(self.keys) + self.FIRST - 1
        return found


class LedgerWorker:
    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        *,
        consumer: str | None = None,
        suppression_cooldown_days: int = 30,
        learning_half_life_days: int = 30,
        batch_size: int = 500,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        attempts: int = APPLY_ATTEMPTS,
        clock: Callable[[], float] = time.time,
    ):
        self.client = client
        self.keys = keys
        self.consumer = consumer or default_consumer_name()
        self.suppression_cooldown_days = suppression_cooldown_days
        self.learning_half_life_days = learning_half_life_days
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.attempts = attempts
        self.clock = clock
        self.ledger = Ledger(client, keys)
        self.user_facts = UserFacts(client, keys)
        self.lead_caps = LeadCaps(client, keys)
        self.experiment_counters = ExperimentCounters(client, keys)
        self.catalogue_store = CatalogueStore(client, keys)
        self.versions = CatalogueVersions(self.catalogue_store)
        # Exports the analysis log every ``export_seconds`` (set by the composition root), beside the counters.
        self.exporter: Any = None
        self.export_seconds = 5.0
        self._next_export = 0.0
        self._next_claim = 0.0
        self._next_housekeeping = 0.0
        self._next_trim = 0.0
        self._plans: dict[tuple, tuple[dict[str, int], dict[str, int]]] = {}
        self._quiet = RepeatLimiter(log)
        self._postbacks_indexed = False
        self._record_scan: Iterator[str] | None = None

    # -- the loop ------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Apply entries until ``stop`` is set; the batch in hand is finished first."""
        log.info("ledger worker %s started", self.consumer)
        started = False
        while not stop.is_set():
            try:
                if not started:
                    self.ledger.ensure_group()
                    self.drain_own_pending()
                    started = True
                self.step()
            except redis.RedisError as exc:
                self._quiet.warning("ledger worker: Redis unavailable (%s); retrying", exc)
                # A batch read before the outage may be pending still: apply it first when back.
                started = False
                stop.wait(1.0)
            except Exception:  # the batch stays pending and is retried; the worker must not die of it
                self._quiet.exception("ledger worker: batch failed; retrying")
                stop.wait(1.0)
        log.info("ledger worker %s stopped", self.consumer)

    def drain_own_pending(self) -> int:
        """Apply what this consumer name was given before a restart and never acknowledged."""
        total = 0
        while True:
            entries = self.ledger.read_own_pending(self.consumer, self.batch_size)
            if not entries:
                return total
            total += self.process(entries)
            if len(entries) < self.batch_size:
                return total

    def step(self, block_ms: int | None | Literal[_Default.CONFIGURED] = _CONFIGURED) -> int:
        """One round: reclaim stale entries (now and then), apply a batch of new ones, housekeeping.

        ``block_ms`` bounds the wait for new entries (None: do not wait); by
        default the worker's own setting.
        """
        applied = 0
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + max(self.claim_idle_ms / 1000 / 2, 0.05)
            claimed = self.ledger.claim_stale(self.consumer, self.claim_idle_ms, self.batch_size)
            if claimed:
                applied += self.process(claimed)
        entries = self.ledger.read_new(
            self.consumer, self.batch_size, self.block_ms if block_ms is _CONFIGURED else block_ms
        )
        if entries:
            applied += self.process(entries)
        if time.monotonic() >= self._next_housekeeping:
            self._next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
            self.housekeeping()
        if self.exporter is not None and time.monotonic() >= self._next_export:
            self._next_export = time.monotonic() + self.export_seconds
            self.export()
        return applied

    def export(self) -> tuple[int, int]:
        """Export the analysis log now; a failure (a full disk) is logged and retried, never stops the ledger."""
        try:
            return self.exporter.export()
        except redis.RedisError:
            raise
        except Exception:
            log.exception("analysis export failed; retrying later")
            metrics.ANALYSIS_EXPORT.labels("failed").inc()
            return 0, 0

    def run_until_idle(self, timeout_seconds: float = 30.0) -> int:
        """Apply everything in the stream (reclaiming what others left), then return how many were applied."""
        self.ledger.ensure_group()
        total = self.drain_own_pending()
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            self._next_claim = 0.0
            applied = self.step(block_ms=None)
            total += applied
            if applied == 0:
                if self.ledger.lag() == 0:
                    break
                time.sleep(0.01)  # entries held by another consumer: wait until they may be claimed
        return total

    # -- one batch -----------------------------------------------------------
    def process(self, entries: Sequence[StreamEntry]) -> int:
        """Apply a batch: user effects first, then counters with acknowledgement. Returns entries applied.

        An entry that fails is left pending with one more failed attempt
        counted (set aside after the last); the rest of the batch is applied.
        """
        started = time.perf_counter()
        readable: list[tuple[StreamEntry, LedgerEvent]] = []
        for entry in entries:
            if entry.event is None:
                if entry.raw:
                    self._set_aside(entry, "unreadable")
                else:  # deleted while pending: acknowledge so it stops coming back
                    self.client.xack(self.keys.event_stream(), self.ledger.group, entry.entry_id)
                continue
            problem = self._uninterpretable(entry.event)
            if problem is not None:
                self._set_aside(entry, problem)
                continue
            readable.append((entry, entry.event))
        if not readable:
            return 0
        failed = self.apply_user_effects([(entry.origin_id, event) for entry, event in readable])
        ready = [(entry.entry_id, event) for entry, event in readable if entry.origin_id not in failed]
        self.apply_experiment_effects(ready)
        applied, failures = self.apply_counters(ready)
        for entry, _ in readable:
            if entry.origin_id in failed:
                failures.append((entry.entry_id, failed[entry.origin_id]))
        for entry_id, reason in failures:
            self._failed(entry_id, reason)
        metrics.WORKER_APPLIED.inc(applied)
        metrics.WORKER_BATCH_SECONDS.observe(time.perf_counter() - started)
        return applied

    def _set_aside(self, entry: StreamEntry, reason: str) -> None:
        """An entry no retry can help: into the dead-letter stream now."""
        if self.ledger.dead_letter(entry, reason):
            metrics.WORKER_DEAD_LETTERS.inc()
            metrics.WORKER_APPLY_FAILURES.labels("set_aside").inc()
            self._quiet.error("ledger worker: entry %s set aside: %s", entry.entry_id, reason)

    def _failed(self, entry_id: str, reason: str) -> None:
        """Count a failed attempt; the entry is delivered again, or set aside after the last attempt."""
        outcome, attempts = self.ledger.fail(entry_id, reason, self.attempts)
        if outcome == "retry":
            metrics.WORKER_APPLY_FAILURES.labels("retried").inc()
            self._quiet.warning(
                "ledger worker: entry %s failed (attempt %d of %d), kept for a retry: %s",
                entry_id, attempts, self.attempts, reason,
            )
        elif outcome == "dead":
            metrics.WORKER_DEAD_LETTERS.inc()
            metrics.WORKER_APPLY_FAILURES.labels("set_aside").inc()
            self._quiet.error(
                "ledger worker: entry %s set aside after %d attempts: %s", entry_id, attempts, reason
            )

    def _uninterpretable(self, event: LedgerEvent) -> str | None:
        """Why an event cannot be applied (so it is set aside rather than retried forever), or None."""
        if not bounds.POSTBACK_AMOUNT_FEN.holds(event.amount_fen):
            return f"amount_fen {event.amount_fen} is outside 0–{bounds.MAX_LOAN_FEN} fen"
        if event.type == REVERSED:
            return None if event.reverses and event.source != "app" else "a reversal without the event it reverses"
        try:
            self._plan(event)
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def _plan(self, event: LedgerEvent) -> tuple[dict[str, int], dict[str, int]]:
        """The counter and learning increments of a (non-reversal) event.

        Impressions and clicks of the same product, slot, tier and version add
        the same, so theirs are remembered (the exact economics are not cheap).
        """
        key = None
        if event.type in APP_EVENT_TYPES:
            key = (event.type, event.ruleset_version, event.product_id, event.page_id, event.slot_id, event.risk_tier)
            planned = self._plans.get(key)
            if planned is not None:
                return planned
        catalogue = self._catalogue(event)
        planned = (counter_deltas(event, catalogue), learning_deltas(event, catalogue))
        if key is not None:
            if len(self._plans) >= PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[key] = planned
        return planned

    def _catalogue(self, event: LedgerEvent) -> Catalogue | None:
        return self.versions.get(event.ruleset_version) if event.ruleset_version else None

    def apply_user_effects(self, events: Sequence[tuple[str, LedgerEvent]]) -> dict[str, str]:
        """Step 2: frequency caps, suppression and in-house declines of ``(entry id, event)``s, once per entry.

        Returns why, for each entry whose effects Redis refused (a key of the
        wrong type, say); the others are applied. Effects are idempotent per
        entry id, so an entry retried later repeats nothing.
        """
        now = int(self.clock())
        pipe = self.client.pipeline(transaction=False)
        queued: list[str] = []
        declines: list[tuple[str, str, date]] = []
        for entry_id, event in events:
            if not event.user_id or event.type == REVERSED:
                continue
            impressed = event.product_id if event.type == IMPRESSION else None
            suppress = None
            if event.type in SUPPRESSING_TYPES:
                catalogue = self._catalogue(event)
                product = catalogue.products.get(event.product_id) if catalogue is not None else None
                owner = product.owner if product is not None else event.source
                if owner == IN_HOUSE:
                    if event.type == REJECTED:
                        declines.append((entry_id, event.user_id, _date_of(event.occurred_at)))
                else:
                    suppress = owner
            if impressed is None and suppress is None:
                continue
            self.user_facts.queue(
                pipe,
                entry_id=entry_id,
                user_id=event.user_id,
                day=event.day,
                impressed_product=impressed,
                suppress_partner=suppress,
                suppressed_until=suppressed_until(event, self.suppression_cooldown_days),
                now=now,
            )
            queued.append(entry_id)
        failed: dict[str, str] = {}
        if queued:
            for entry_id, answer in zip(queued, pipe.execute(raise_on_error=False)):
                if isinstance(answer, redis.ResponseError):
                    failed[entry_id] = f"user effects: {answer}"
        for entry_id, user_id, decided_on in declines:
            try:
                self.user_facts.record_in_house_decline(user_id, decided_on)
            except (redis.ResponseError, ValueError, TypeError, KeyError) as exc:
                failed[entry_id] = f"in-house decline: {exc}"
        return failed

    def apply_experiment_effects(self, events: Sequence[tuple[str, LedgerEvent]]) -> None:
        """Step 2, experiments: each event's impressions, clicks, approvals, loans and revenue on its unit, once.

        A partner's postback is remembered in its experiment (and the ledger's
        record of it names the experiment and arm), so its reversal — which
        carries no impression — takes back exactly what it added.
        """
        taking_part: dict[tuple[str, str], str] = {}  # (partner, event id) → "experiment|arm", this batch
        reversed_of = [(e.source, e.reverses) for _, e in events if e.type == REVERSED]
        known: dict[tuple[str, str], str] = {}
        if reversed_of:
            read = self.client.pipeline(transaction=False)
            for partner_id, event_id in reversed_of:
                read.hget(self.keys.postback_record(partner_id, event_id), "x")
            known = {k: v.decode() for k, v in zip(reversed_of, read.execute()) if v is not None}
        pipe = self.client.pipeline(transaction=False)
        queued = 0
        for entry_id, event in events:
            if event.type == REVERSED:
                original = (event.source, event.reverses)
                where = taking_part.get(original) or known.get(original)
                if where is None:
                    continue
                experiment_id, _, arm = where.partition(SEP)
                self.experiment_counters.queue(
                    pipe, experiment_id=experiment_id, arm=arm, entry_id=entry_id, day=event.day, mode="reverse",
                    increments={}, record=original,
                )
                queued += 1
                continue
            if not event.experiment_id or not event.unit or not event.arm:
                continue
            deltas, _ = self._plan(event)
            increments: dict[str, int] = {}
            for name, value in deltas.items():
                measure = name.rpartition(SEP)[2]
                if measure in EXPERIMENT_MEASURES:
                    field = f"{event.unit}{SEP}{measure}"
                    increments[field] = increments.get(field, 0) + value
            if not increments:
                continue
            record = None
            if event.source != "app":
                record = (event.source, event.event_id)
                where = f"{event.experiment_id}{SEP}{event.arm}"
                taking_part[record] = where
                pipe.hset(self.keys.postback_record(*record), "x", where)
            self.experiment_counters.queue(
                pipe, experiment_id=event.experiment_id, arm=event.arm, entry_id=entry_id, day=event.day,
                mode="add" if record is None else "keep", increments=increments, record=record,
            )
            queued += 1
        if queued:
            pipe.execute()

    def apply_counters(self, events: Sequence[tuple[str, LedgerEvent]]) -> tuple[int, list[tuple[str, str]]]:
        """Step 3: counters, learned counts and postback records, acknowledging each entry applied.

        Returns how many were applied and ``(entry id, reason)`` for each that failed.
        """
        if not events:
            return 0, []
        try:
            return self._apply_counters(events)
        except redis.ResponseError:
            if len(events) == 1:
                raise
        # The batch's script itself failed: apply entry by entry, so one entry's fault stays its own.
        applied, failures = 0, []
        for one in events:
            try:
                done, failed = self._apply_counters([one])
            except redis.ResponseError as exc:
                done, failed = 0, [(one[0], f"apply: {exc}")]
            applied += done
            failures.extend(failed)
        return applied, failures

    def _apply_counters(self, events: Sequence[tuple[str, LedgerEvent]]) -> tuple[int, list[tuple[str, str]]]:
        for attempt in range(5):
            keys, ops = self._ledger_ops(events)
            try:
                return self.ledger.apply(keys, ops)
            except ApplyRaced:
                if attempt == 4:
                    raise
        return 0, []

    def _ledger_ops(self, events: Sequence[tuple[str, LedgerEvent]]) -> tuple[list[str], list[dict[str, Any]]]:
        index = _KeyIndex()
        originals = [(e.source, e.event_id) for _, e in events if e.source != "app" and e.type != REVERSED]
        reversal_days = self.ledger.reversal_days(originals)
        ops: list[dict[str, Any]] = []
        for entry_id, event in events:
            op: dict[str, Any] = {"id": entry_id, "add": []}
            if event.type == REVERSED:
                op["reverse"] = [
                    index(self.keys.postback_record(event.source, event.reverses)),
                    index(self.keys.counters(event.day)),
                ]
                ops.append(op)
                continue
            deltas, learning = self._plan(event)
            counters = index(self.keys.counters(event.day))
            op["add"] = [_add_op(counters, add) for add in ledger_adds(deltas)]
            if learning:
                learned_index = index(self.keys.learned_rates(event.day))
                op["add"].extend([learned_index, name, str(value)] for name, value in learning.items())
            if event.source != "app":
                op["keep"] = index(self.keys.postback_record(event.source, event.event_id))
                undo = [_add_op(None, add) for add in ledger_adds(reversal_deltas(deltas))]
                op["undo"] = orjson.dumps(undo).decode()
                reversal_day = reversal_days.get((event.source, event.event_id))
                if reversal_day:
                    op["rev_day"] = reversal_day
                    op["rev_key"] = index(self.keys.counters(reversal_day))
            ops.append(op)
        return index.keys, ops

    # -- housekeeping --------------------------------------------------------
    def housekeeping(self) -> None:
        """Re-pace partner lead caps, report the stream lag, trim applied entries now and then."""
        try:
            self.refresh_pacing()
        except (KeyError, ValueError, TypeError):  # a catalogue this worker cannot read must not stop the ledger
            self._quiet.exception("lead pacing refresh failed")
        metrics.STREAM_LAG.set(self.ledger.lag())
        self.expire_learned_counts()
        self.index_old_postbacks()
        if time.monotonic() >= self._next_trim:
            self._next_trim = time.monotonic() + TRIM_SECONDS
            self.ledger.trim(STREAM_KEEP_SECONDS, int(self.clock() * 1000))

    def index_old_postbacks(self, batch: int = POSTBACK_INDEX_BATCH) -> bool:
        """Add postback records written before the per-day index existed to it, ``batch`` per call; True when done.

        Reconciliation reads a partner's day from that index, so a record it
        does not name would look missing on our side. Adding is idempotent, so
        several workers may do it at once; the first to finish the pass marks
        the store done, and no worker scans it again.
        """
        if self._postbacks_indexed:
            return True
        if self._record_scan is None:
            if self.ledger.postback_index_complete():
                self._postbacks_indexed = True
                return True
            self._record_scan = self.ledger.postback_record_keys()
        try:
            chunk = list(itertools.islice(self._record_scan, batch))
            added = self.ledger.index_postback_records(chunk)
        except Exception:
            self._record_scan = None  # a broken scan starts over next time, never counts as finished
            raise
        if added:
            log.info("added %d earlier postback records to the per-day index", added)
        if len(chunk) < batch:
            self.ledger.mark_postback_index_complete()
            self._postbacks_indexed = True
            self._record_scan = None
        return self._postbacks_indexed

    def expire_learned_counts(self) -> None:
        """Give the recent days' learned counts an expiry: kept as long as the learning window reads them."""
        now = self.clock()
        keep = (learning_window_days(self.learning_half_life_days) + 2) * 86_400
        pipe = self.client.pipeline(transaction=False)
        for age in range(3):
            pipe.expire(self.keys.learned_rates(day_of(now - age * 86_400)), keep)
        pipe.execute()

    def refresh_pacing(self, now: float | None = None) -> set[str]:
        """Decide, for the time of day, which partners are at their lead cap or ahead of their pace."""
        now = self.clock() if now is None else now
        version = self.catalogue_store.current_version()
        catalogue = self.versions.get(version) if version else None
        if catalogue is None:
            return set()
        elapsed = now % 86_400
        allowed = {
            pid: (None if p.daily_lead_cap is None else paced_lead_allowance(p.daily_lead_cap, elapsed))
            for pid, p in catalogue.partners.items()
        }
        return self.lead_caps.pace(day_of(now), allowed)


def _add_op(key_index: int | None, add: tuple[str, int, str | None, int]) -> list[Any]:
    """One increment as the apply script reads it: ``[key index,] field, "n"[, high field, "h"]``."""
    name, value, high, high_value = add
    op: list[Any] = [] if key_index is None else [key_index]
    op.extend([name, str(value)])
    if high is not None:
        op.extend([high, str(high_value)])
    return op


def _date_of(epoch_seconds: int) -> date:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).date()
