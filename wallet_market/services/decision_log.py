"""The decision log: every layout decision with its propensities, for offline policy evaluation.

``record`` is a layout ``on_decision`` hook: it only appends to an in-memory
queue (bounded; the oldest are dropped, and counted, if Redis stays away). A
background thread writes the queue to the ``decisions`` stream, a batch of
decisions per stream entry (field ``d``, a JSON list), so no request waits on
it and Redis pays per batch, not per layout. Each row names the decision,
time, page, rule-set version, user and risk tier, and for every slot the
product shown and the probability with which it was chosen (``propensity_bps``).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, TypeAlias

import orjson
import redis

from .. import metrics
from ..domain.placement import Decision
from ..store.connection import RedisClient
from ..store.keys import Keys
from ..store.replies import stream_entries
from .background import Periodic
from .layouts import LayoutResult

log = logging.getLogger(__name__)

# Entries (batches of decisions) kept; older ones are trimmed, so an exporter reads them off for evaluation.
STREAM_MAXLEN = 20_000


# One decision as a compact row (a busy wallet makes thousands a second):
# [decision_id, at (epoch ms), page, rule-set version, user or null, risk tier or null,
#  personalized (1/0), [[slot, product, propensity_bps], ...]]
RECORD_FIELDS = ("decision_id", "at_ms", "page", "version", "user", "risk_tier", "personalized", "slots")
SLOT_FIELDS = ("slot", "product", "propensity_bps")


# A decision waiting to be written: when, its id, the decision, the user and the user's risk tier.
_Queued: TypeAlias = tuple[float, str, Decision, str | None, str | None]


def decision_row(at: float, decision_id: str, decision: Decision, user_id: str | None, risk_tier: str | None) -> list:
    """The compact decision-log row of one layout (see ``RECORD_FIELDS``)."""
    return [
        decision_id,
        int(at * 1000),
        decision.page_id,
        decision.ruleset_version,
        user_id,
        risk_tier,
        1 if decision.personalized else 0,
        [[s.slot_id, s.product_id, s.propensity_bps] for s in decision.slots],
    ]


def decision_record(row: list) -> dict[str, Any]:
    """A decision-log row as a readable record."""
    record = dict(zip(RECORD_FIELDS, row))
    record["personalized"] = bool(record["personalized"])
    record["slots"] = [dict(zip(SLOT_FIELDS, slot)) for slot in record["slots"]]
    return record


class DecisionLog(Periodic):
    name = "decision-log"

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        max_queue: int = 100_000,
        batch_size: int = 500,
        interval_seconds: float = 0.1,
    ):
        super().__init__(interval_seconds)
        self.client = client
        self.keys = keys
        self.batch_size = batch_size
        self._queue: collections.deque[_Queued] = collections.deque()
        self._max_queue = max_queue
        self._flush_lock = threading.Lock()

    def record(self, result: LayoutResult) -> None:
        """Queue a decision (the on_decision hook): an append, nothing more on the request path."""
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            metrics.DECISION_LOG.labels("dropped").inc()
        profile = result.profile
        self._queue.append((
            time.time(),
            result.body["decision_id"],
            result.decision,
            result.user_id,
            profile.risk_tier if profile is not None else None,
        ))

    def pending(self) -> int:
        return len(self._queue)

    def flush(self) -> int:
        """Write everything queued so far, a batch per stream entry; returns how many decisions were written."""
        written = 0
        with self._flush_lock:
            while self._queue:
                batch: list[_Queued] = []
                while self._queue and len(batch) < self.batch_size:
                    batch.append(self._queue.popleft())
                payload = orjson.dumps([decision_row(*queued) for queued in batch])
                try:
                    self.client.xadd(self.keys.decisions(), {"d": payload}, maxlen=STREAM_MAXLEN, approximate=True)
                except redis.RedisError:
                    self._queue.extendleft(reversed(batch))  # keep them for the next attempt
                    raise
                written += len(batch)
                metrics.DECISION_LOG.labels("written").inc(len(batch))
        return written

    def read(self, count: int = 100) -> list[dict[str, Any]]:
        """The newest ``count`` decision records, newest first."""
        out: list[dict[str, Any]] = []
        last = "+"
        while len(out) < count:
            entries = stream_entries(self.client.xrevrange(self.keys.decisions(), max=last, count=10))
            if not entries:
                break
            for _, fields in entries:
                out.extend(decision_record(row) for row in reversed(orjson.loads(fields["d"])))
            last = "(" + entries[-1][0]
        return out[:count]

    def tick(self) -> int:
        return self.flush()

    def stop(self) -> None:
        """Stop the writer and write what is still queued."""
        super().stop()
        try:
            self.flush()
        except redis.RedisError as exc:
            log.warning("decision log: %d decisions not written at shutdown: %s", len(self._queue), exc)
