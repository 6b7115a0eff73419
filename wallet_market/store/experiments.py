"""Experiments in Redis: their records beside the catalogue, and per-unit outcome counters.

- The records live in one hash under ``{catalog}`` (``keys.experiments``), so
  shipping an experiment — its status and the served rule-set pointer — is one
  transaction with the catalogue's own keys. Every change is announced on
  ``keys.experiments_channel`` and serving processes reload.
- The outcome counters of an experiment live under its own hash tag
  ``{x:<experiment_id>}``: per arm one hash of ``"<unit>|<measure>" → n`` for
  every randomisation unit (the user's pseudonym), written by the ledger worker
  once per stream entry (a per-day set of applied entry ids makes a replayed
  entry a no-op), so an experiment's results are read without touching the
  ledger and a busy experiment has its own Cluster slot.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import orjson
import redis

from .catalogue import ConcurrentChange, _dumps
from .connection import RedisClient
from .keys import Keys
from .ledger import register

log = logging.getLogger(__name__)

# Applied-entry marks outlive their day a little (an entry is redelivered only while pending).
APPLIED_MARK_SECONDS = 3 * 86_400
# A postback's experiment record answers for its reversal as long as the ledger's own record does.
POSTBACK_RECORD_SECONDS = 400 * 86_400
WRITE_ATTEMPTS = 5


class ExperimentStore:
    """Experiment records (JSON) by id, written in optimistic transactions."""

    def __init__(self, client: RedisClient, keys: Keys):
        self.client = client
        self.keys = keys

    def all(self) -> list[dict[str, Any]]:
        """Every experiment record, by id."""
        raw = self.client.hgetall(self.keys.experiments())
        return [orjson.loads(raw[k]) for k in sorted(raw)]

    def get(self, experiment_id: str) -> dict[str, Any] | None:
        raw = self.client.hget(self.keys.experiments(), experiment_id)
        return orjson.loads(raw) if raw else None

    def create(
        self, record: Mapping[str, Any], check: Callable[[list[dict[str, Any]]], None], *, actor: str
    ) -> dict[str, Any]:
        """Store a new experiment; ``check(existing records)`` raises to refuse it (run inside the transaction)."""
        key = self.keys.experiments()
        for _ in range(WRITE_ATTEMPTS):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(key)
                    existing = [orjson.loads(v) for v in pipe.hvals(key)]
                    check(existing)
                    pipe.multi()
                    pipe.hset(key, record["experiment_id"], _dumps(record))
                    self._audit(pipe, actor, "experiment_create", record["experiment_id"], record)
                    pipe.execute()
                    self._announce(self.keys.experiments_channel(), record["experiment_id"])
                    return dict(record)
                except redis.WatchError:
                    continue
        raise ConcurrentChange("experiments kept changing")

    def update(
        self,
        experiment_id: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        *,
        actor: str,
        action: str,
        serve_version: Callable[[dict[str, Any]], tuple[int, dict[str, int]] | None] | None = None,
    ) -> dict[str, Any] | None:
        """Apply ``change`` to one record in a transaction; None when there is no such experiment.

        With ``serve_version`` the record's change and serving that version
        (the published pointer, a history record and the publish announcement)
        land in the same transaction — shipping an experiment.
        """
        key = self.keys.experiments()
        watched = [key, self.keys.ruleset_current()] if serve_version is not None else [key]
        for _ in range(WRITE_ATTEMPTS):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*watched)
                    raw = pipe.hget(key, experiment_id)
                    if raw is None:
                        pipe.unwatch()
                        return None
                    after = change(orjson.loads(raw))
                    served = serve_version(after) if serve_version is not None else None
                    pipe.multi()
                    pipe.hset(key, experiment_id, _dumps(after))
                    self._audit(pipe, actor, action, experiment_id, after)
                    if served is not None:
                        version, counts = served
                        history = {
                            "version": version,
                            "published_at": time.time(),
                            "published_by": actor,
                            "note": f"ship experiment {experiment_id}",
                            "rollback_of": None,
                            "shipped_experiment": experiment_id,
                            "counts": counts,
                        }
                        pipe.set(self.keys.ruleset_current(), version)
                        pipe.rpush(self.keys.ruleset_history(), _dumps(history))
                    pipe.execute()
                    # Announced after the transaction (a Redis Cluster refuses PUBLISH inside one); every
                    # serving process also polls, so a lost announcement only delays.
                    if served is not None:
                        self._announce(self.keys.published_channel(), str(served[0]))
                    self._announce(self.keys.experiments_channel(), experiment_id)
                    return after
                except redis.WatchError:
                    continue
        raise ConcurrentChange("experiments kept changing")

    def _announce(self, channel: str, message: str) -> None:
        try:
            self.client.publish(channel, message)
        except redis.RedisError as exc:
            log.warning("announcement on %s not sent (serving processes will poll): %s", channel, exc)

    def _audit(self, pipe, actor: str, action: str, experiment_id: str, after: Mapping[str, Any]) -> None:
        fields = {"at": f"{time.time():.3f}", "actor": actor, "action": action, "kind": "experiment",
                  "id": experiment_id, "after": _dumps(after)}
        pipe.xadd(self.keys.audit_log(), fields, maxlen=100_000, approximate=True)


class ExperimentCounters:
    """Per-unit outcome counters of experiments, applied once per event-stream entry."""

    def __init__(self, client: RedisClient, keys: Keys):
        self.client = client
        self.keys = keys
        self._script = register(client, "experiment_units")

    def queue(
        self,
        pipe,
        *,
        experiment_id: str,
        arm: str,
        entry_id: str,
        day: str,
        mode: str,
        increments: Mapping[str, int],
        record: tuple[str, str] | None = None,
    ) -> None:
        """Queue one entry's increments of ``"<unit>|<measure>"`` fields.

        ``mode`` is ``add`` (an app event), ``keep`` (a partner's postback,
        remembered under ``record`` = (partner, event id) for its reversal) or
        ``reverse`` (a reversal of ``record``: what the original added is taken
        back, once; ``increments`` is ignored).
        """
        record_key = self.keys.experiment_postback(experiment_id, *record) if record else self.keys.experiment_units(
            experiment_id, arm
        )
        args: list[Any] = [entry_id, APPLIED_MARK_SECONDS, mode, POSTBACK_RECORD_SECONDS]
        for name, value in increments.items():
            args.extend((name, int(value)))
        self._script(
            keys=[
                self.keys.experiment_applied(experiment_id, day),
                self.keys.experiment_units(experiment_id, arm),
                record_key,
            ],
            args=args,
            client=pipe,
        )

    def units(self, experiment_id: str, arm: str, count: int = 5000) -> Iterator[tuple[str, str, int]]:
        """Every ``(unit, measure, value)`` of one arm (HSCAN, so a large arm is read in pieces)."""
        for name, value in self.client.hscan_iter(self.keys.experiment_units(experiment_id, arm), count=count):
            unit, _, measure = name.decode().rpartition("|")
            yield unit, measure, int(value)

    def delete(self, experiment_id: str, arms: Sequence[str]) -> None:
        self.client.delete(*(self.keys.experiment_units(experiment_id, arm) for arm in arms))
