"""The analysis log's adapters: the streams it is exported from, and the Parquet files it is exported to.

:class:`ExportStreams` reads the decision stream and the event stream through
their own consumer group (``analysis``), beside the ledger's: an entry is
acknowledged only after the file holding it is on disk, so a crash re-exports
it rather than losing it (readers drop the duplicates, see below), and the
ledger's trim keeps every entry until this group has it too.

:class:`AnalysisFiles` writes and reads the files, under ``analysis_dir``::

    decisions/day=YYYY-MM-DD/part-<first entry id>.parquet   one row per slot of each decision
    outcomes/day=YYYY-MM-DD/part-<first entry id>.parquet    one row per funnel event

Files are written to a temporary name and renamed, so a reader never sees half
a file. The same batch exported twice (a crash before the acknowledgement)
lands under the same name; should it not, readers keep one row per
``(decision_id, slot_id)`` and per event-stream ``entry_id``. DuckDB reads the
files in process with Hive partitioning; any engine that reads Parquet with
Hive-style partitions (Spark, Trino, ClickHouse) reads the same directory.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, cast

import pyarrow as pa
import pyarrow.parquet as pq
import redis

from .connection import RedisClient
from .replies import text

GROUP = "analysis"

DECISION_SCHEMA = pa.schema([
    ("decision_id", pa.string()),
    ("decided_at", pa.timestamp("ms", tz="UTC")),
    ("page", pa.string()),
    ("version", pa.int64()),
    ("unit", pa.string()),
    ("logged_in", pa.bool_()),
    ("personalized", pa.bool_()),
    ("risk_tier", pa.string()),
    ("age_band", pa.string()),
    ("age_low", pa.int32()),
    ("age_high", pa.int32()),
    ("region", pa.string()),
    ("in_house_decision", pa.string()),
    ("declined_recently", pa.bool_()),
    ("consents", pa.list_(pa.string())),
    ("prescreen", pa.map_(pa.string(), pa.string())),
    ("impressions_today", pa.map_(pa.string(), pa.int64())),
    ("suppressed", pa.list_(pa.string())),
    ("lead_capped", pa.list_(pa.string())),
    ("device_model", pa.string()),
    ("app_version", pa.string()),
    ("experiment_id", pa.string()),
    ("arm", pa.string()),
    ("slot_id", pa.string()),
    ("position", pa.int32()),
    ("product_id", pa.string()),
    ("probability", pa.float64()),
    ("distribution", pa.map_(pa.string(), pa.float64())),
])

OUTCOME_SCHEMA = pa.schema([
    ("entry_id", pa.string()),
    ("event_type", pa.string()),
    ("occurred_at", pa.timestamp("s", tz="UTC")),
    ("source", pa.string()),
    ("event_id", pa.string()),
    ("reverses", pa.string()),
    ("decision_id", pa.string()),
    ("slot_id", pa.string()),
    ("product_id", pa.string()),
    ("version", pa.int64()),
    ("amount_fen", pa.int64()),
    ("platform_revenue_micro_fen", pa.int64()),
    ("group_contribution_micro_fen", pa.int64()),
    ("experiment_id", pa.string()),
    ("arm", pa.string()),
    ("unit", pa.string()),
])

TABLES = {"decisions": DECISION_SCHEMA, "outcomes": OUTCOME_SCHEMA}


class ExportStreams:
    """One stream read through the analysis consumer group: this consumer's pending first, then new entries."""

    def __init__(self, client: RedisClient, stream: str, consumer: str, claim_idle_ms: int = 60_000):
        self.client = client
        self.stream = stream
        self.consumer = consumer
        self.claim_idle_ms = claim_idle_ms

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int) -> list[tuple[str, dict[str, str]]]:
        """Up to ``count`` entries to export: left pending by this consumer or (stale) by another, else new."""
        own = self._read("0", count)
        if own:
            return own
        claimed = self.client.xautoclaim(self.stream, GROUP, self.consumer, self.claim_idle_ms, start_id="0-0",
                                         count=count)
        entries = [(text(i), _fields(f)) for i, f in claimed[1] if i is not None and f is not None]
        if entries:
            return entries
        return self._read(">", count)

    def _read(self, start: str, count: int) -> list[tuple[str, dict[str, str]]]:
        answer = self.client.xreadgroup(GROUP, self.consumer, {self.stream: start}, count=count)
        if not answer:
            return []
        out = []
        for entry_id, fields in cast(Any, answer)[0][1]:
            if entry_id is None:
                continue
            if fields is None:  # trimmed while pending: acknowledge so it stops coming back
                self.ack([text(entry_id)])
                continue
            out.append((text(entry_id), _fields(fields)))
        return out

    def ack(self, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            self.client.xack(self.stream, GROUP, *entry_ids)

    def trim_exported(self, keep_ms: int, now_ms: int) -> int:
        """Drop entries this group acknowledged that are older than ``keep_ms`` (the decision stream's trim)."""
        try:
            groups = self.client.xinfo_groups(self.stream)
        except redis.ResponseError:
            return 0
        group = next((g for g in groups if text(g.get("name") or b"") == GROUP), None)
        if group is None:
            return 0
        bound = now_ms - keep_ms
        last = text(group.get("last-delivered-id") or b"0-0")
        bound = min(bound, int(last.split("-")[0]))
        summary = self.client.xpending(self.stream, GROUP)
        if summary and summary.get("pending"):
            bound = min(bound, int(text(summary.get("min") or b"0-0").split("-")[0]))
        if bound <= 0:
            return 0
        return int(self.client.xtrim(self.stream, minid=f"{bound}-0", approximate=True))


def _fields(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in raw.items()}


class AnalysisFiles:
    """The Parquet files of the analysis log under one directory."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def write(self, table: str, day: str, name: str, rows: Iterable[Mapping[str, Any]]) -> Path:
        """Write ``rows`` as ``<table>/day=<day>/part-<name>.parquet`` atomically; returns the path."""
        schema = TABLES[table]
        directory = self.root / table / f"day={day}"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"part-{name}.parquet"
        arrow = pa.Table.from_pylist(list(rows), schema=schema)
        fd, scratch = tempfile.mkstemp(prefix=".part-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                pq.write_table(arrow, handle, compression="zstd")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(scratch, path)
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise
        return path

    def glob(self, table: str) -> str:
        return str(self.root / table / "day=*" / "*.parquet")

    def has(self, table: str) -> bool:
        return any((self.root / table).glob("day=*/*.parquet"))

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run ``sql`` in an in-process DuckDB over the files; ``{decisions}`` and ``{outcomes}`` name the tables.

        A table with no file yet reads as empty (with its columns).
        """
        import duckdb

        connection = duckdb.connect()
        try:
            names = {}
            for table, schema in TABLES.items():
                if self.has(table):
                    source = f"read_parquet('{self.glob(table)}', hive_partitioning = true, union_by_name = true)"
                else:
                    empty = pa.Table.from_pylist([], schema=schema.append(pa.field("day", pa.date32())))
                    connection.register(f"empty_{table}", empty)
                    source = f"empty_{table}"
                names[table] = f"(SELECT * FROM {source})"
            cursor = connection.execute(sql.format(**names), list(parameters))
            columns = [c[0] for c in cursor.description]
            return [dict(zip(columns, row)) for row in cursor.fetchall()]
        finally:
            connection.close()
