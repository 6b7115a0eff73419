"""App events (``POST /v1/events``): impressions and clicks carrying a layout's impression tokens.

Each event's token is verified (signature, expiry); a forged or expired one is
counted as rejected with its reason. Accepted events are marked and appended to
the event stream in one atomic script per batch, so the same event twice counts
once and nothing answered 202 is lost. A click on a partner product is a lead:
it is counted toward the partner's daily lead cap (and pace) in the same round
trip. Redis unreachable means an error answer (503): the app retries, and the
retry is idempotent.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

from .. import metrics
from ..domain.catalogue import Catalogue
from ..domain.funnel import APP_EVENT_TYPES, CLICK, LedgerEvent, app_event_key, day_of, paced_lead_allowance
from ..store.caps import LeadCaps
from ..store.ledger import CatalogueVersions, Ledger
from .errors import Invalid
from .tokens import Impression, ImpressionTokens, InvalidToken

# The app's clock may run a little ahead of ours.
CLOCK_SKEW_SECONDS = 300
# An impression/click mark outlives its token (after which a replay is refused as expired anyway).
MARK_GRACE_SECONDS = 86_400


@dataclass
class IngestResult:
    """The answer to one batch: how many events were accepted, duplicates, or rejected and why."""

    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "rejected": self.rejected,
            "rejections": self.rejections,
        }


def parse_batch(body: Any, max_batch: int) -> list[dict[str, Any]]:
    """Check a batch's shape; :class:`Invalid` naming the field (``events.3.type``) otherwise.

    Each event becomes ``{"type", "impression_token", "occurred_at"}`` with
    ``occurred_at`` in epoch seconds (an ISO-8601 time or a number of seconds;
    absent means now).
    """
    if not isinstance(body, Mapping):
        raise Invalid("the body must be a JSON object", {"_schema": ["expected {\"events\": [...]}"]})
    unknown = [k for k in body if k != "events"]
    if unknown:
        raise Invalid("unknown fields in the body", {name: ["unknown field"] for name in unknown})
    events = body.get("events")
    if not isinstance(events, list):
        raise Invalid("events must be a list", {"events": ["must be a list of events"]})
    if not events:
        raise Invalid("a batch carries at least one event", {"events": ["must hold at least one event"]})
    if len(events) > max_batch:
        raise Invalid(
            f"at most {max_batch} events per batch", {"events": [f"at most {max_batch} events per batch, got {len(events)}"]}
        )
    out = []
    errors: dict[str, list[str]] = {}
    for i, event in enumerate(events):
        if not isinstance(event, Mapping):
            errors[f"events.{i}"] = ["must be an object"]
            continue
        for name in event:
            if name not in ("type", "impression_token", "occurred_at"):
                errors[f"events.{i}.{name}"] = ["unknown field"]
        kind = event.get("type")
        if kind not in APP_EVENT_TYPES:
            errors[f"events.{i}.type"] = [f"must be one of {', '.join(APP_EVENT_TYPES)}"]
        token = event.get("impression_token")
        if not isinstance(token, str) or not token:
            errors[f"events.{i}.impression_token"] = ["must be the impression token of a layout slot"]
        try:
            occurred_at = parse_time(event.get("occurred_at"))
        except ValueError:
            errors[f"events.{i}.occurred_at"] = ["must be an ISO-8601 time or epoch seconds"]
            occurred_at = None
        out.append({"type": kind, "impression_token": token, "occurred_at": occurred_at})
    if errors:
        raise Invalid("some events are malformed", errors)
    return out


# The latest time an event may name: the end of year 9999 (later is not a time, it is garbage).
MAX_EPOCH_SECONDS = 253_402_300_799.0


def parse_time(value: Any) -> float | None:
    """Epoch seconds from an ISO-8601 time (UTC when no offset is given) or a number; None stays None.

    Raises ``ValueError`` for anything else, and for a time before 1970 or after year 9999.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(value) from None
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        try:
            seconds = parsed.timestamp()
        except OverflowError:
            raise ValueError(value) from None
    else:
        raise ValueError(value)
    if not 0.0 <= seconds <= MAX_EPOCH_SECONDS:  # also refuses NaN
        raise ValueError(value)
    return seconds


def seconds_into_day(now: float) -> float:
    return now % 86_400


class EventIngestion:
    """Verifies, deduplicates and appends app events; counts clicks on partner products as leads."""

    def __init__(
        self,
        ledger: Ledger,
        lead_caps: LeadCaps,
        impression_tokens: ImpressionTokens,
        versions: CatalogueVersions,
        current_catalogue: Callable[[], Catalogue | None],
        max_batch: int,
        clock: Callable[[], float] = time.time,
    ):
        self.ledger = ledger
        self.lead_caps = lead_caps
        self.tokens = impression_tokens
        self.versions = versions
        self.current_catalogue = current_catalogue
        self.max_batch = max_batch
        self.clock = clock
        self.mark_seconds = impression_tokens.ttl_seconds + MARK_GRACE_SECONDS

    def ingest(self, events: Sequence[Mapping[str, Any]]) -> IngestResult:
        """Ingest a parsed batch (see :func:`parse_batch`) in one Redis round trip."""
        now = self.clock()
        result = IngestResult()
        reasons: dict[str, int] = {}
        accepted: list[tuple[str, LedgerEvent]] = []
        clicks: list[tuple[str, str, int]] = []
        current = self.current_catalogue()
        verified: dict[str, Impression | InvalidToken] = {}  # an impression and its click often share a batch
        for i, event in enumerate(events):
            token = event["impression_token"]
            impression = verified.get(token)
            if impression is None:
                try:
                    impression = self.tokens.verify(token, now=now)
                except InvalidToken as exc:
                    impression = exc
                verified[token] = impression
            if isinstance(impression, InvalidToken):
                self._reject(result, reasons, i, impression.reason)
                continue
            occurred_at = event.get("occurred_at")
            if occurred_at is None:
                occurred_at = now
            if occurred_at > now + CLOCK_SKEW_SECONDS:
                self._reject(result, reasons, i, "occurred_in_future")
                continue
            # An event cannot precede the layout that showed it, nor (by much) our clock.
            occurred = int(min(max(occurred_at, impression.issued_at), now))
            ledger_event = LedgerEvent(
                type=event["type"],
                occurred_at=occurred,
                source="app",
                **impression.ledger_fields(),
            )
            key = app_event_key(impression.decision_id, impression.slot_id, event["type"])
            accepted.append((key, ledger_event))
            if event["type"] == CLICK:
                lead = self._lead(key, ledger_event, current, now)
                if lead is not None:
                    clicks.append(lead)

        flags: list[bool] = []
        if accepted or clicks:
            pipe = self.ledger.client.pipeline(transaction=False)
            if clicks:
                self.lead_caps.take(day_of(now), clicks, pipe=pipe)
            if accepted:
                self.ledger.append_app_events(accepted, self.mark_seconds, pipe=pipe)
            answers = pipe.execute()
            if accepted:
                flags = [bool(flag) for flag in answers[-1]]
            if clicks:
                fresh = {key for (key, _), flag in zip(accepted, flags) if flag}
                self._count_leads(clicks, answers[0], fresh)
        result.accepted = sum(flags)
        result.duplicate = len(flags) - result.accepted
        if result.accepted:
            metrics.EVENTS.labels("app", "accepted", "").inc(result.accepted)
        if result.duplicate:
            metrics.EVENTS.labels("app", "duplicate", "").inc(result.duplicate)
        for reason, count in reasons.items():
            metrics.EVENTS.labels("app", "rejected", reason).inc(count)
        return result

    @staticmethod
    def _reject(result: IngestResult, reasons: dict[str, int], index: int, reason: str) -> None:
        result.rejected += 1
        result.rejections.append({"index": index, "reason": reason})
        reasons[reason] = reasons.get(reason, 0) + 1

    def _lead(
        self, key: str, event: LedgerEvent, current: Catalogue | None, now: float
    ) -> tuple[str, str, int] | None:
        """``(click key, partner, leads allowed now)`` for a click on a partner whose leads are capped."""
        served: Catalogue | None
        if current is not None and current.version == event.ruleset_version:
            served = current  # owners are the same in the serving copy; no need to load the version
        else:
            served = self.versions.get(event.ruleset_version)
        if served is None:
            return None
        product = served.products.get(event.product_id)
        if product is None or product.partner_id is None:
            return None
        # The cap in force now (a cap change applies at once), not the one the layout was served under.
        partners = (current or served).partners
        partner = partners.get(product.partner_id)
        if partner is None or partner.daily_lead_cap is None:
            return None
        return key, partner.partner_id, paced_lead_allowance(partner.daily_lead_cap, seconds_into_day(now))

    @staticmethod
    def _count_leads(clicks: Sequence[tuple[str, str, int]], flags: Sequence[Any], fresh: set[str]) -> None:
        for (key, partner_id, _), flag in zip(clicks, flags):
            if key not in fresh:
                continue  # a retried click: its lead was counted (or refused) the first time
            metrics.LEADS.labels(partner_id, "counted" if int(flag) else "over_cap").inc()
