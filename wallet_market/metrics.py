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
from prometheus_client import multiprocess, values

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_metrics: dict[str, object] = {}


def _build() -> dict[str, object]:
    """Create the metrics, once per process, on first use.

    Created lazily (not at import) so that ``serve`` can switch prometheus-client
    to multiprocess mode before any metric exists, whatever was imported first.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR") and not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()
    _metrics["REQUEST_LATENCY"] = Histogram(
        "wallet_market_request_seconds",
        "HTTP request latency by endpoint and status",
        ["endpoint", "method", "status"],
        buckets=LATENCY_BUCKETS,
    )
    _metrics["DECISIONS"] = Counter(
        "wallet_market_decisions_total",
        "Products placed, by page, slot and product",
        ["page", "slot", "product"],
    )
    _metrics["DEGRADED_LAYOUTS"] = Counter(
        "wallet_market_degraded_layouts_total",
        "Layouts served from the last snapshot because Redis was unreachable",
    )
    _metrics["RULESET_VERSION"] = Gauge(
        "wallet_market_ruleset_version",
        "Rule-set version served by this process",
        multiprocess_mode="max",
    )
    _metrics["EVENTS"] = Counter(
        "wallet_market_events_total",
        "Funnel events received, by source and outcome (accepted, duplicate, rejected)",
        ["source", "outcome", "reason"],
    )
    _metrics["STREAM_LAG"] = Gauge(
        "wallet_market_stream_lag_entries",
        "Event stream entries not yet turned into counters",
        multiprocess_mode="max",
    )
    _metrics["WORKER_APPLIED"] = Counter(
        "wallet_market_worker_events_applied_total",
        "Events the ledger worker turned into counters",
    )
    _metrics["PARTNER_LATENCY"] = Histogram(
        "wallet_market_partner_request_seconds",
        "Outbound partner request latency by partner, purpose and outcome",
        ["partner", "purpose", "outcome"],
        buckets=LATENCY_BUCKETS,
    )
    _metrics["PARTNER_BREAKER_OPEN"] = Gauge(
        "wallet_market_partner_breaker_open",
        "1 while a partner's circuit breaker is open",
        ["partner"],
        multiprocess_mode="max",
    )
    # -- partner gateway -------------------------------------------------------------
    _metrics["PARTNER_REQUESTS"] = Counter(
        "wallet_market_partner_requests_total",
        "Outbound partner calls by partner, purpose and outcome "
        "(ok, timeout, unreachable, http_error, bad_answer, breaker_open, no_secret, busy)",
        ["partner", "purpose", "outcome"],
    )
    _metrics["PRESCREEN_ANSWERS"] = Counter(
        "wallet_market_prescreen_answers_total",
        "Pre-screen answers by partner: new, existing, ineligible or failed",
        ["partner", "answer"],
    )
    _metrics["PRESCREENS_STARTED"] = Counter(
        "wallet_market_prescreens_started_total",
        "Pre-screens started in the background, by what prompted them: a profile update or a layout that lacked an answer",
        ["trigger"],
    )
    _metrics["DATA_SHARES"] = Counter(
        "wallet_market_data_shares_total",
        "Sends of user data to partners (each one recorded in the data-share log), by partner and purpose",
        ["partner", "purpose"],
    )
    _metrics["JOINT_LOGIN_EXCHANGES"] = Counter(
        "wallet_market_joint_login_exchanges_total",
        "Joint-login token exchanges by partner and outcome",
        ["partner", "outcome"],
    )


    # -- funnel tracking -------------------------------------------------------------
    _metrics["LEADS"] = Counter(
        "wallet_market_leads_total",
        "Clicks on partner products by partner: counted toward the daily lead cap, or over its cap or pace",
        ["partner", "outcome"],
    )
    _metrics["WORKER_BATCH_SECONDS"] = Histogram(
        "wallet_market_worker_batch_seconds",
        "Time the ledger worker takes to apply one batch of stream entries",
        buckets=LATENCY_BUCKETS,
    )
    _metrics["WORKER_DEAD_LETTERS"] = Counter(
        "wallet_market_worker_dead_letters_total",
        "Stream entries the ledger worker set aside in the dead-letter stream (unreadable, or failing every attempt)",
    )
    _metrics["WORKER_APPLY_FAILURES"] = Counter(
        "wallet_market_worker_apply_failures_total",
        "Failed attempts to apply a stream entry: retried (delivered again later) or set_aside (dead letter)",
        ["outcome"],
    )
    _metrics["DECISION_LOG"] = Counter(
        "wallet_market_decision_log_total",
        "Decisions written to the decision log, or dropped because its queue was full",
        ["outcome"],
    )
    _metrics["ANALYSIS_EXPORT"] = Counter(
        "wallet_market_analysis_export_total",
        "Rows the worker exported to the analysis log (decisions: slots; outcomes: events), and failed exports",
        ["table"],
    )
    _metrics["LEARNING_REFRESHES"] = Counter(
        "wallet_market_learning_refreshes_total",
        "Refreshes of the learned funnel rates that changed the serving snapshot",
    )
    return _metrics


def __getattr__(name: str):
    if name.isupper() and name != "LATENCY_BUCKETS":
        metrics = _metrics or _build()
        if name in metrics:
            return metrics[name]
    raise AttributeError(name)


_children: dict[tuple, object] = {}


def _child(metric: str, labels: tuple[str, ...]):
    """The labelled child of ``metric``, looked up once per process (the hot path skips ``labels()``)."""
    key = (metric, *labels)
    child = _children.get(key)
    if child is None:
        child = _children.setdefault(key, __getattr__(metric).labels(*labels))
    return child


def count_decision(page: str, slot: str, product: str) -> None:
    """Count one product placed in one slot."""
    _child("DECISIONS", (page, slot, product)).inc()


def observe_request(endpoint: str, method: str, status: str, seconds: float) -> None:
    """Record one HTTP request's latency."""
    _child("REQUEST_LATENCY", (endpoint, method, status)).observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The metrics text of the whole server (all workers when under gunicorn)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
