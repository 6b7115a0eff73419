"""Reconciliation of a partner's daily settlement with the postbacks our ledger accepted.

What a settlement line means (both sides): one partner event that moves
money, identified by the partner's event id, with the **payout the partner owes
us** for it in fen — the platform view of docs/economics.md, computed exactly as the
ledger books earned revenue (:func:`wallet_market.domain.funnel.earned_revenue_fen`)
under the settlement terms of the rule-set version the impression was served
under, and rounded half-up to the fen once per event:

- ``cps``: on ``disbursed``, the disbursed amount × the CPS rate;
- ``per_credit_line`` and ``per_card``: on ``approved``, the fee;
- ``per_application``: on ``applied``, the fee;
- ``reversed``: the negative of what the event it reverses settled, on the
  reversal's own day (as the ledger books it).

Events that move no money (an ``applied`` of a CPS loan, a ``rejected``) are
not settlement lines on either side. ``per_click`` payouts are earned on app
clicks, which carry no partner event id, so they cannot be matched line by
line and are left out. The line's date is the UTC day of the postback's
``occurred_at``.

Our side is read from the postback records the ledger keeps for every accepted
postback (``keys.postback_record(partner, event_id)``, kept for 400 days): they
hold the event as accepted, so the answer does not depend on how late a
postback arrived or on how far the event stream has been trimmed. Which records
belong to a partner's day comes from the index written with each record
(``keys.postbacks_of_day(partner, day)``), so a reconciliation reads only that
day's records — on one Redis or across a cluster's nodes alike. Records kept
from before the index existed are added to it once per store by the ledger
worker (:meth:`~wallet_market.services.ledger_worker.LedgerWorker.index_old_postbacks`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from ..domain.catalogue import Catalogue, Partner
from ..domain.economics import round_half_up
from ..domain.funnel import POSTBACK_TYPES, REVERSED, LedgerEvent, earned_revenue_fen
from ..domain.reconcile import Reconciliation, SettlementLine, reconcile
from ..store.catalogue import CatalogueStore
from ..store.connection import RedisClient
from ..store.keys import Keys
from ..store.ledger import CatalogueVersions, Ledger, readable_event
from .errors import Invalid, NotFound, Unavailable
from .layouts import LayoutService
from .settlement import SettlementClient

REPORT_COLUMNS = (
    "status",
    "event_id",
    "type",
    "date",
    "their_amount_fen",
    "our_amount_fen",
    "difference_fen",
    "action",
)
ACTIONS = {
    "matched": "",
    "amount_mismatch": "agree the amount with the partner",
    "missing_on_our_side": "billed by the partner, not in our ledger: check the postback log, or dispute the charge",
    "missing_on_their_side": "in our ledger, not billed: claim it from the partner",
}
# A claw-back (negative line) on one side only calls for the opposite move.
NEGATIVE_ACTIONS = {
    "missing_on_our_side": "a claw-back we hold no reversal for: check the postback log before accepting it",
    "missing_on_their_side": "a reversal the partner has not clawed back yet: expect it on a later file",
}


@dataclass(frozen=True)
class ReconciliationSources:
    """Where reconciliation reads our side and pulls theirs."""

    redis: RedisClient
    keys: Keys
    catalogue_store: CatalogueStore
    layouts: LayoutService
    settlement: SettlementClient


def _utc_day(epoch_seconds: int) -> date:
    return datetime.fromtimestamp(int(epoch_seconds), tz=timezone.utc).date()


def _decode_postbacks(partner_id: str, entries: Mapping[str, bytes]) -> dict[str, LedgerEvent]:
    """The postbacks among ``entries`` (event id → accepted payload) that are ``partner_id``'s."""
    found: dict[str, LedgerEvent] = {}
    for event_id, entry in entries.items():
        event = readable_event(entry)
        if event is None or event.source != partner_id or event.type not in POSTBACK_TYPES:
            continue
        found[event_id] = event
    return found


def _postback_events(sources: ReconciliationSources, partner_id: str, days: Iterable[date]) -> dict[str, LedgerEvent]:
    """The postbacks of ``partner_id`` the ledger accepted for ``days``, and the events their reversals undo."""
    ledger = Ledger(sources.redis, sources.keys)
    event_ids = ledger.postbacks_of_days(partner_id, [day.strftime("%Y%m%d") for day in days])
    found = _decode_postbacks(partner_id, ledger.postback_entries(partner_id, event_ids))
    undone = [e.reverses for e in found.values() if e.type == REVERSED and e.reverses and e.reverses not in found]
    found.update(_decode_postbacks(partner_id, ledger.postback_entries(partner_id, undone)))
    return found


def _payout_fen(event: LedgerEvent, versions: CatalogueVersions) -> int | None:
    """What the partner owes us for one (non-reversal) event, in fen; None when it cannot be priced."""
    catalogue: Catalogue | None = versions.get(event.ruleset_version)
    product = catalogue.products.get(event.product_id) if catalogue is not None else None
    if product is None:
        return None
    platform, _group = earned_revenue_fen(product, event.type, event.amount_fen, event.risk_tier)
    return round_half_up(platform)


def ledger_settlement_lines(sources: ReconciliationSources, partner_id: str, day: date) -> list[SettlementLine]:
    """Our settlement lines for ``partner_id`` on ``day`` (UTC): the postbacks our ledger accepted.

    One line per postback that moves money (see the module notes), in the order
    the events occurred. A postback that cannot be priced — its product or
    rule-set version is gone, or it reverses an event that has not arrived —
    is listed with amount 0, so the clerk sees it as a mismatch rather than
    not at all.
    """
    return ledger_settlement_lines_for_days(sources, partner_id, [day])


def ledger_settlement_lines_for_days(sources: ReconciliationSources, partner_id: str, days: Iterable[date]) -> list[SettlementLine]:
    """Our settlement lines for ``partner_id`` on each of ``days``, read in one pass."""
    wanted = set(days)
    events = _postback_events(sources, partner_id, sorted(wanted))
    versions = CatalogueVersions(sources.catalogue_store)
    lines: list[tuple[int, str, SettlementLine]] = []
    for event_id, event in events.items():
        day = _utc_day(event.occurred_at)
        if day not in wanted:
            continue
        if event.type == REVERSED:
            original = events.get(event.reverses)
            if original is None or original.type == REVERSED:
                amount = None
            else:
                paid = _payout_fen(original, versions)
                amount = None if paid is None else -paid
        else:
            amount = _payout_fen(event, versions)
        if amount == 0:
            continue
        lines.append((event.occurred_at, event_id, SettlementLine(event_id, event.type, amount or 0, day)))
    lines.sort(key=lambda item: (item[0], item[1]))
    return [line for _, _, line in lines]


def find_partner(sources: ReconciliationSources, partner_id: str) -> Partner:
    """The partner as served, else as in the draft (a partner being onboarded); :class:`NotFound` otherwise."""
    try:
        served = sources.layouts.serving().catalogue.partners.get(partner_id)
    except Unavailable:  # nothing published yet: look in the draft
        served = None
    if served is not None:
        return served
    _revision, draft = sources.catalogue_store.read_draft()
    entity = draft["partners"].get(partner_id)
    if entity is None:
        raise NotFound(f"partner {partner_id!r} does not exist", {"partner": ["unknown partner"]})
    return Partner.from_dict(entity)


def fetch_settlement(sources: ReconciliationSources, partner_id: str, day: date) -> str:
    """The partner's settlement file for ``day``, pulled from its ``settlement_url`` (``?date=``).

    Through the partner gateway's :class:`~wallet_market.services.settlement.SettlementClient`:
    the request is signed with the partner's secret like every partner call.

    Raises :class:`NotFound` (unknown partner), :class:`Invalid` (no
    ``settlement_url`` or signing secret) or :class:`Unavailable` (the partner
    did not hand the file over), each naming the cause.
    """
    partner = find_partner(sources, partner_id)
    if not partner.settlement_url:
        raise Invalid(f"partner {partner_id!r} has no settlement_url", {"settlement_url": ["not configured"]})
    if not sources.catalogue_store.partner_secret(partner_id):
        raise Invalid(f"partner {partner_id!r} has no signing secret", {"signing_secret": ["not configured"]})
    client = sources.settlement
    return client.fetch(partner_id, day)


def reconcile_partner(
    sources: ReconciliationSources, partner_id: str, theirs: Sequence[SettlementLine], days: Iterable[date]
) -> Reconciliation:
    """Match the partner's settlement lines with ours for ``days``.

    :class:`NotFound` for a partner we do not know; :class:`Invalid` when the
    partner's file repeats an event id.
    """
    find_partner(sources, partner_id)
    ours = ledger_settlement_lines_for_days(sources, partner_id, days)
    try:
        return reconcile(theirs, ours)
    except ValueError as exc:
        raise Invalid(str(exc), {"event_id": [str(exc)]}) from None


def report_rows(rec: Reconciliation) -> list[dict[str, Any]]:
    """Every line of a reconciliation with its status and what a clerk should do about it."""
    rows: list[dict[str, Any]] = []

    def add(status: str, line: SettlementLine, theirs: int | None, ours: int | None) -> None:
        difference = (theirs or 0) - (ours or 0)
        rows.append(
            {
                "status": status,
                "event_id": line.event_id,
                "type": line.type,
                "date": line.date.isoformat(),
                "their_amount_fen": "" if theirs is None else theirs,
                "our_amount_fen": "" if ours is None else ours,
                "difference_fen": difference,
                "action": (NEGATIVE_ACTIONS if line.amount_fen < 0 else ACTIONS).get(status, ACTIONS[status]),
            }
        )

    for line in rec.matched:
        add("matched", line, line.amount_fen, line.amount_fen)
    for mismatch in rec.amount_mismatches:
        add("amount_mismatch", mismatch.theirs, mismatch.theirs.amount_fen, mismatch.ours.amount_fen)
    for line in rec.missing_on_our_side:
        add("missing_on_our_side", line, line.amount_fen, None)
    for line in rec.missing_on_their_side:
        add("missing_on_their_side", line, None, line.amount_fen)
    return rows
