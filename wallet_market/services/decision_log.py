"""The decision log: every layout decision with the context it saw and its propensities, for evaluation.

``record`` is a layout ``on_decision`` hook: it only appends to an in-memory
queue (bounded; the oldest are dropped, and counted, if Redis stays away). A
background thread turns the queue into analysis records
(:func:`wallet_market.domain.evidence.decision_record`: the pseudonymous
context, and per slot the product shown, its exact probability and the slot's
logging distribution) and writes them to the ``decisions`` stream, a batch per
stream entry (field ``d``, a JSON list), so no request waits on it and Redis
pays per batch, not per layout. The user is named only by the keyed pseudonym
of the unit (:mod:`.pseudonyms`), never by id. The ledger worker exports the
stream to Parquet (:mod:`.analysis`), after which it is trimmed.
"""
from __future__ import annotations

import collections
import logging
import threading
from typing import Any, TypeAlias

import orjson
import redis

from .. import metrics
from ..domain.catalogue import Catalogue
from ..domain.evidence import age_thresholds, decision_record
from ..store.connection import RedisClient
from ..store.keys import Keys
from ..store.replies import stream_entries
from .background import Periodic
from .layouts import LayoutResult
from .pseudonyms import Pseudonyms

log = logging.getLogger(__name__)

# Entries (batches of decisions) kept at most: a bound on memory should the exporter stay away for long.
STREAM_MAXLEN = 20_000

# A decision waiting to be written: the layout's result.
_Queued: TypeAlias = LayoutResult


class DecisionLog(Periodic):
    name = "decision-log"

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        pseudonyms: Pseudonyms,
        decline_cooldown_days: int = 90,
        max_queue: int = 100_000,
        batch_size: int = 500,
        interval_seconds: float = 0.1,
    ):
        super().__init__(interval_seconds)
        self.client = client
        self.keys = keys
        self.pseudonyms = pseudonyms
        self.decline_cooldown_days = decline_cooldown_days
        self._thresholds: tuple[Catalogue | None, tuple[int, ...]] = (None, ())
        self.batch_size = batch_size
        self._queue: collections.deque[_Queued] = collections.deque()
        self._max_queue = max_queue
        self._flush_lock = threading.Lock()

    def record(self, result: LayoutResult) -> None:
        """Queue a decision (the on_decision hook): an append, nothing more on the request path."""
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            metrics.DECISION_LOG.labels("dropped").inc()
        self._queue.append(result)

    def row(self, result: LayoutResult) -> dict[str, Any]:
        """The analysis record of one queued layout."""
        catalogue = result.serving.catalogue
        cached, thresholds = self._thresholds
        if cached is not catalogue:
            thresholds = age_thresholds(catalogue)
            self._thresholds = (catalogue, thresholds)
        assignment = result.assignment
        context = result.context
        assert context is not None
        return decision_record(
            decision_id=result.body["decision_id"],
            at=context.now,
            decision=result.decision,
            unit=result.unit or self.pseudonyms.of(result.user_id, result.device_id),
            profile=result.profile,
            state=result.state,
            context=context,
            experiment=(assignment.experiment.experiment_id, assignment.arm) if assignment is not None else None,
            decline_cooldown_days=self.decline_cooldown_days,
            age_thresholds=thresholds,
        )

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
                payload = orjson.dumps([self.row(queued) for queued in batch])
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
                out.extend(reversed(orjson.loads(fields["d"])))
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
