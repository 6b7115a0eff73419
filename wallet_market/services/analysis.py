"""The analysis log: decisions and their outcomes exported to Parquet, and read back for evaluation.

:class:`AnalysisExporter` runs in the ledger worker (``wallet-market worker``),
every ``analysis_export_seconds``. It reads the decision stream and the event
stream through their own consumer group and writes, per UTC day, one Parquet
file per batch (layout and guarantees: :mod:`wallet_market.store.analysis`):

- **decisions**, one row per slot of each decision: the pseudonymous context
  the policy saw, the product shown, its exact probability and the slot's
  logging distribution;
- **outcomes**, one row per funnel event (impression, click, applied,
  approved, rejected, disbursed, reversed) with the decision and slot it is
  attributed to, the unit and experiment, and what it earned in both views
  under the rule-set version that served it.

Outcomes keep arriving long after their decision was exported (a loan is
disbursed days after the click), so they are a table of their own, joined to
the decisions at read time on ``(decision_id, slot_id)``; a reversal is a row
naming the event it undoes, and the join leaves the undone event out. Nothing
is rewritten and nothing waits for late outcomes. :func:`logged_decisions` is
that join, in DuckDB, shaped for off-policy evaluation.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable, Mapping

import orjson

from .. import metrics
from ..domain.catalogue import Catalogue
from ..domain.economics import to_micro_fen
from ..domain.funnel import IMPRESSION, REVERSED, LedgerEvent, earned_revenue_fen
from ..store.analysis import AnalysisFiles, ExportStreams
from ..store.connection import RedisClient
from ..store.keys import Keys
from ..store.ledger import CatalogueVersions, readable_event

log = logging.getLogger(__name__)

# Exported decisions stay this long in their stream (the newest are read there for inspection).
DECISION_KEEP_MS = 3_600_000
DECISION_ENTRIES_PER_BATCH = 20  # each entry holds up to 500 decisions
EVENTS_PER_BATCH = 20_000


def decision_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The decision table's rows of one analysis record: one per slot, the context repeated."""
    bracket = record.get("age_bracket") or (None, None)
    common = {
        "decision_id": record["decision_id"],
        "decided_at": datetime.fromtimestamp(record["at_ms"] / 1000, tz=timezone.utc),
        "page": record["page"],
        "version": record["version"],
        "unit": record.get("unit"),
        "logged_in": record.get("logged_in"),
        "personalized": record.get("personalized"),
        "risk_tier": record.get("risk_tier"),
        "age_band": record.get("age_band"),
        "age_low": bracket[0],
        "age_high": bracket[1],
        "region": record.get("region"),
        "in_house_decision": record.get("in_house_decision"),
        "declined_recently": record.get("declined_recently"),
        "consents": record.get("consents") or [],
        "prescreen": record.get("prescreen") or {},
        "impressions_today": record.get("impressions_today") or {},
        "suppressed": record.get("suppressed") or [],
        "lead_capped": record.get("lead_capped") or [],
        "device_model": record.get("device_model"),
        "app_version": record.get("app_version"),
        "experiment_id": record.get("experiment_id"),
        "arm": record.get("arm"),
    }
    return [
        {
            **common,
            "slot_id": s["slot"],
            "position": s["position"],
            "product_id": s["product"],
            "probability": s["probability"],
            "distribution": s["distribution"],
        }
        for s in record["slots"]
    ]


class AnalysisExporter:
    """Decision and event streams → Parquet files, acknowledged only once written."""

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        files: AnalysisFiles,
        versions: CatalogueVersions,
        consumer: str,
        clock: Callable[[], float] = time.time,
    ):
        self.files = files
        self.versions = versions
        self.clock = clock
        self.decision_stream = ExportStreams(client, keys.decisions(), consumer)
        self.event_stream = ExportStreams(client, keys.event_stream(), consumer)
        self._revenue: dict[tuple, tuple[int, int]] = {}

    def ensure_groups(self) -> None:
        self.decision_stream.ensure_group()
        self.event_stream.ensure_group()

    def export(self, max_batches: int = 100) -> tuple[int, int]:
        """Export what the streams hold now; returns (decision slots, events) written."""
        self.ensure_groups()
        slots = _drain(self.export_decisions, max_batches)
        events = _drain(self.export_outcomes, max_batches)
        self.decision_stream.trim_exported(DECISION_KEEP_MS, int(self.clock() * 1000))
        return slots, events

    def export_decisions(self) -> int:
        entries = self.decision_stream.read(DECISION_ENTRIES_PER_BATCH)
        if not entries:
            return 0
        by_day: dict[str, list[dict[str, Any]]] = {}
        for _, fields in entries:
            try:
                records = orjson.loads(fields["d"])
            except (KeyError, orjson.JSONDecodeError):
                log.error("analysis export: an unreadable decision-log entry was skipped")
                continue
            for record in records:
                by_day.setdefault(record["day"], []).extend(decision_rows(record))
        return self._write("decisions", self.decision_stream, entries, by_day)

    def export_outcomes(self) -> int:
        entries = self.event_stream.read(EVENTS_PER_BATCH)
        if not entries:
            return 0
        by_day: dict[str, list[dict[str, Any]]] = {}
        for entry_id, fields in entries:
            event = readable_event(fields.get("e"))
            if event is None:
                continue  # the ledger sets such an entry aside; there is no outcome to export
            by_day.setdefault(_iso_day(event.occurred_at), []).append(self.outcome_row(entry_id, event))
        return self._write("outcomes", self.event_stream, entries, by_day)

    def _write(
        self,
        table: str,
        stream: ExportStreams,
        entries: list[tuple[str, dict[str, str]]],
        by_day: dict[str, list[dict[str, Any]]],
    ) -> int:
        """Write one batch's rows of ``table`` (a file per day, named after the batch's first entry),
        then acknowledge the batch's entries; returns the rows written."""
        name = entries[0][0]
        for day, rows in sorted(by_day.items()):
            self.files.write(table, day, name, rows)
        stream.ack([entry_id for entry_id, _ in entries])
        written = sum(len(rows) for rows in by_day.values())
        metrics.ANALYSIS_EXPORT.labels(table).inc(written)
        return written

    def outcome_row(self, entry_id: str, event: LedgerEvent) -> dict[str, Any]:
        platform, group = self._earned(event)
        return {
            "entry_id": entry_id,
            "event_type": event.type,
            "occurred_at": datetime.fromtimestamp(event.occurred_at, tz=timezone.utc),
            "source": event.source,
            "event_id": event.event_id or None,
            "reverses": event.reverses or None,
            "decision_id": event.decision_id or None,
            "slot_id": event.slot_id or None,
            "product_id": event.product_id or None,
            "version": event.ruleset_version or None,
            "amount_fen": event.amount_fen,
            "platform_revenue_micro_fen": platform,
            "group_contribution_micro_fen": group,
            "experiment_id": event.experiment_id or None,
            "arm": event.arm or None,
            "unit": event.unit or None,
        }

    def _earned(self, event: LedgerEvent) -> tuple[int, int]:
        """What the event earned (micro-fen, platform and group) under the version that served its impression."""
        if event.type in (IMPRESSION, REVERSED) or not event.ruleset_version:
            return 0, 0
        key = (event.ruleset_version, event.product_id, event.type, event.risk_tier, event.amount_fen)
        found = self._revenue.get(key)
        if found is None:
            catalogue: Catalogue | None = self.versions.get(event.ruleset_version)
            product = catalogue.products.get(event.product_id) if catalogue is not None else None
            if product is None:
                return 0, 0
            platform, group = earned_revenue_fen(product, event.type, event.amount_fen, event.risk_tier)
            found = (to_micro_fen(platform), to_micro_fen(group))
            if len(self._revenue) > 50_000:
                self._revenue.clear()
            self._revenue[key] = found
        return found


def _drain(export_batch: Callable[[], int], max_batches: int) -> int:
    """Run ``export_batch`` until it writes nothing (at most ``max_batches`` times); the rows written."""
    total = 0
    for _ in range(max_batches):
        written = export_batch()
        total += written
        if not written:
            break
    return total


def _iso_day(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, tz=timezone.utc).date().isoformat()


# -- reading for evaluation ------------------------------------------------------------

# The decisions of the window joined with what each slot earned; duplicates of a re-export dropped, and an
# event a reversal undid left out.
LOGGED_DECISIONS_SQL = """
WITH d AS (
    SELECT * FROM {decisions}
    WHERE day >= ? AND day <= ?
    QUALIFY row_number() OVER (PARTITION BY decision_id, slot_id ORDER BY decided_at) = 1
),
o AS (
    SELECT * FROM {outcomes}
    QUALIFY row_number() OVER (PARTITION BY entry_id ORDER BY occurred_at) = 1
),
undone AS (
    SELECT DISTINCT source, reverses AS event_id FROM o WHERE event_type = 'reversed'
),
earned AS (
    SELECT o.decision_id, o.slot_id,
           sum(o.platform_revenue_micro_fen) AS platform_micro_fen,
           sum(o.group_contribution_micro_fen) AS group_micro_fen
    FROM o
    LEFT JOIN undone u ON u.source = o.source AND u.event_id = o.event_id
    WHERE o.event_type <> 'reversed' AND u.event_id IS NULL AND o.decision_id IS NOT NULL
    GROUP BY o.decision_id, o.slot_id
)
SELECT d.*, coalesce(e.platform_micro_fen, 0) AS platform_micro_fen, coalesce(e.group_micro_fen, 0) AS group_micro_fen
FROM d LEFT JOIN earned e ON e.decision_id = d.decision_id AND e.slot_id = d.slot_id
ORDER BY d.decided_at, d.decision_id, d.position
"""


@dataclass(frozen=True, slots=True)
class LoggedSlotRow:
    slot_id: str
    position: int
    product_id: str
    probability: float
    distribution: Mapping[str, float]
    platform_micro_fen: int
    group_micro_fen: int


@dataclass(frozen=True, slots=True)
class LoggedDecisionRow:
    """One logged decision as the evaluation reads it: the analysis record's context and its slots' rewards."""

    record: Mapping[str, Any]
    slots: tuple[LoggedSlotRow, ...]


def _mapping(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping) and not {"key", "value"} <= set(value):
        return dict(value)
    keys, values = value.get("key", []), value.get("value", [])  # older engines hand maps as two lists
    return dict(zip(keys, values))


def logged_decisions(files: AnalysisFiles, first: date | None, last: date | None) -> list[LoggedDecisionRow]:
    """The decisions logged from ``first`` to ``last`` (UTC days, inclusive; None: unbounded), with rewards."""
    rows = files.query(LOGGED_DECISIONS_SQL, [first or date(1970, 1, 1), last or date(9999, 12, 31)])
    out: list[LoggedDecisionRow] = []
    current: dict[str, Any] | None = None
    slots: list[LoggedSlotRow] = []
    for row in rows:
        if current is None or row["decision_id"] != current["decision_id"]:
            if current is not None:
                out.append(LoggedDecisionRow(current, tuple(slots)))
            at: datetime = row["decided_at"]
            current = {
                "decision_id": row["decision_id"],
                "at_ms": int(at.timestamp() * 1000),
                "day": row["day"].isoformat() if isinstance(row["day"], date) else str(row["day"]),
                "page": row["page"],
                "version": row["version"],
                "unit": row["unit"],
                "logged_in": row["logged_in"],
                "personalized": row["personalized"],
                "risk_tier": row["risk_tier"],
                "age_band": row["age_band"],
                "age_bracket": [row["age_low"], row["age_high"]] if row["age_low"] is not None else None,
                "region": row["region"],
                "in_house_decision": row["in_house_decision"],
                "declined_recently": row["declined_recently"],
                "consents": list(row["consents"] or ()),
                "prescreen": _mapping(row["prescreen"]),
                "impressions_today": _mapping(row["impressions_today"]),
                "suppressed": list(row["suppressed"] or ()),
                "lead_capped": list(row["lead_capped"] or ()),
                "device_model": row["device_model"],
                "app_version": row["app_version"],
                "experiment_id": row["experiment_id"],
                "arm": row["arm"],
            }
            slots = []
        slots.append(
            LoggedSlotRow(
                slot_id=row["slot_id"],
                position=row["position"],
                product_id=row["product_id"],
                probability=row["probability"],
                distribution=_mapping(row["distribution"]),
                platform_micro_fen=int(row["platform_micro_fen"]),
                group_micro_fen=int(row["group_micro_fen"]),
            )
        )
    if current is not None:
        out.append(LoggedDecisionRow(current, tuple(slots)))
    return out

