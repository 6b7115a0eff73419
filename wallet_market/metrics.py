"""Prometheus metrics of the service (prometheus-client).

Under gunicorn every worker writes its samples to ``PROMETHEUS_MULTIPROC_DIR``
(set by ``wallet-market serve``) and ``/metrics`` aggregates them, so a scrape
sees the whole server, not one worker.
"""
from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUEST_LATENCY = Histogram(
    "wallet_market_request_seconds",
    "HTTP request latency by endpoint and status",
    ["endpoint", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
DECISIONS = Counter(
    "wallet_market_decisions_total",
    "Products placed, by page, slot and product",
    ["page", "slot", "product"],
)
DEGRADED_LAYOUTS = Counter(
    "wallet_market_degraded_layouts_total",
    "Layouts served from the last snapshot because Redis was unreachable",
)
RULESET_VERSION = Gauge(
    "wallet_market_ruleset_version",
    "Rule-set version served by this process",
    multiprocess_mode="max",
)
EVENTS = Counter(
    "wallet_market_events_total",
    "Funnel events received, by source and outcome (accepted, duplicate, rejected)",
    ["source", "outcome", "reason"],
)
STREAM_LAG = Gauge(
    "wallet_market_stream_lag_entries",
    "Event stream entries not yet turned into counters",
    multiprocess_mode="max",
)
WORKER_APPLIED = Counter(
    "wallet_market_worker_events_applied_total",
    "Events the ledger worker turned into counters",
)
PARTNER_LATENCY = Histogram(
    "wallet_market_partner_request_seconds",
    "Outbound partner request latency by partner, purpose and outcome",
    ["partner", "purpose", "outcome"],
    buckets=LATENCY_BUCKETS,
)
PARTNER_BREAKER_OPEN = Gauge(
    "wallet_market_partner_breaker_open",
    "1 while a partner's circuit breaker is open",
    ["partner"],
    multiprocess_mode="max",
)


def exposition() -> tuple[bytes, str]:
    """The metrics text of the whole server (all workers when under gunicorn)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
