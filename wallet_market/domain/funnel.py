"""Funnel events and what each one adds to the ledger (docs/economics.md; docs/guards.md, guard 9).

An event is an impression or click reported by the wallet app, or an
application, approval, rejection, disbursal or reversal reported by a partner
(or the in-house lender) in a postback. Each is attributed to the impression
that caused it: the decision, page, slot, product, rule-set version and the
user's risk tier.

The ledger keeps integer counters per day under fields
``"<channel>|<partner>|<product>|<page>|<slot>|<risk tier>|<measure>"``.
Revenue measures are kept in micro-fen (millionths of a fen) so that a CPS
share of an odd amount is not rounded per event; reading rounds the sum half-up
to the fen once. So that no sum can outgrow a 64-bit Redis counter, each
money measure is two fields: ``"…|<measure>"`` keeps less than 10^12 of the
measure's unit (10^12 micro-fen is 10,000 RMB) and ``"…|<measure>_e12"`` the
whole units of 10^12; the worker carries from one to the other
(:func:`ledger_adds`, ``docs/ledger.md``).

Earned revenue follows the settlement model of the product in the rule-set
version the impression was served under:

======================  =====================  ======================================
model                   earned on              platform revenue (group: the same)
======================  =====================  ======================================
``per_click``           click                  fee
``per_application``     applied                fee
``per_credit_line``     approved               fee
``per_card``            approved               fee
``cps``                 disbursed              amount × cps_rate
``self``                disbursed              amount × transfer_price (group: the
                                               loan's contribution, §5)
======================  =====================  ======================================

A reversal takes back exactly what the event it reverses added (its counts and
revenue), once, booked on the day of the reversal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from fractions import Fraction
from functools import lru_cache
from typing import Any, Iterable, Mapping

from .catalogue import BPS, Catalogue, Product
from .economics import expected_revenue_per_impression, loan_contribution, rate, round_half_up, to_micro_fen

IMPRESSION = "impression"
CLICK = "click"
APP_EVENT_TYPES = (IMPRESSION, CLICK)
APPLIED = "applied"
APPROVED = "approved"
REJECTED = "rejected"
DISBURSED = "disbursed"
REVERSED = "reversed"
POSTBACK_TYPES = (APPLIED, APPROVED, REJECTED, DISBURSED, REVERSED)
# Postbacks after which the partner is not shown to the user again for a while.
SUPPRESSING_TYPES = (APPLIED, APPROVED, REJECTED)

MICRO = 1_000_000
NO_TIER = "-"
SEP = "|"

# Counted measures. Revenue is kept in micro-fen and read in fen.
IMPRESSIONS = "impressions"
CLICKS = "clicks"
APPLICATIONS = "applications"
APPROVALS = "approvals"
REJECTIONS = "rejections"
LOANS = "loans"
DISBURSED_FEN = "disbursed_fen"
PLATFORM_REVENUE = "platform_revenue_micro_fen"
GROUP_CONTRIBUTION = "group_contribution_micro_fen"
EXPECTED_PLATFORM = "expected_platform_revenue_micro_fen"
EXPECTED_GROUP = "expected_group_contribution_micro_fen"
REVERSALS = "reversals"
MEASURES = (
    IMPRESSIONS, CLICKS, APPLICATIONS, APPROVALS, REJECTIONS, LOANS, DISBURSED_FEN,
    PLATFORM_REVENUE, GROUP_CONTRIBUTION, EXPECTED_PLATFORM, EXPECTED_GROUP, REVERSALS,
)
_COUNT_OF = {IMPRESSION: IMPRESSIONS, CLICK: CLICKS, APPLIED: APPLICATIONS, APPROVED: APPROVALS,
             REJECTED: REJECTIONS, DISBURSED: LOANS}
# The event on which each settlement model pays.
PAYING_EVENT = {
    "per_click": CLICK,
    "per_application": APPLIED,
    "per_credit_line": APPROVED,
    "per_card": APPROVED,
    "cps": DISBURSED,
    "self": DISBURSED,
}

# The rows of GET /finance/v1/revenue (docs/api.md, earned revenue, plus the model's expectation).
GROUP_BY = ("channel", "partner", "product", "slot", "risk_tier", "day")
ROW_MEASURES = (
    "impressions", "clicks", "applications", "approvals", "loans", "disbursed_fen",
    "platform_revenue_fen", "group_contribution_fen",
    "expected_platform_revenue_fen", "expected_group_contribution_fen",
)
_ROW_SOURCE = {
    "impressions": IMPRESSIONS,
    "clicks": CLICKS,
    "applications": APPLICATIONS,
    "approvals": APPROVALS,
    "loans": LOANS,
    "disbursed_fen": DISBURSED_FEN,
    "platform_revenue_fen": PLATFORM_REVENUE,
    "group_contribution_fen": GROUP_CONTRIBUTION,
    "expected_platform_revenue_fen": EXPECTED_PLATFORM,
    "expected_group_contribution_fen": EXPECTED_GROUP,
}
_MICRO_MEASURES = frozenset({PLATFORM_REVENUE, GROUP_CONTRIBUTION, EXPECTED_PLATFORM, EXPECTED_GROUP})
# Money measures, each kept as a low field and a high field of whole units of HIGH_UNIT
# (of micro-fen for revenue, 10^12 micro-fen = 10,000 RMB; of fen for the amount disbursed).
SPLIT_MEASURES = _MICRO_MEASURES | {DISBURSED_FEN}
HIGH_UNIT = 10**12
HIGH_SUFFIX = "_e12"

# Observed funnel counts per product and risk tier, for learning (wimp: Σ slot position weight, bps).
LEARN_WEIGHTED_IMPRESSIONS = "wimp"
LEARN_IMPRESSIONS = "imp"
LEARN_CLICKS = "clk"
LEARN_APPLICATIONS = "app"
LEARN_APPROVALS = "apv"
LEARN_LOANS = "loan"
_LEARNED_OF = {CLICK: LEARN_CLICKS, APPLIED: LEARN_APPLICATIONS, APPROVED: LEARN_APPROVALS, DISBURSED: LEARN_LOANS}


def app_event_key(decision_id: str, slot_id: str, event_type: str) -> str:
    """The idempotency key of an app event: the same impression or click of a slot counts once."""
    return f"a:{decision_id}:{slot_id}:{event_type}"


def day_of(epoch_seconds: float) -> str:
    """The UTC day (``YYYYMMDD``) of an instant: the day keys layouts and the ledger share."""
    return _day_key(int(epoch_seconds) // 86_400)


@lru_cache(maxsize=64)
def _day_key(days_since_epoch: int) -> str:
    return datetime.fromtimestamp(days_since_epoch * 86_400, tz=timezone.utc).strftime("%Y%m%d")


def days_between(first: date, last: date) -> list[str]:
    """Every day key from ``first`` to ``last`` inclusive."""
    return [(first + timedelta(days=i)).strftime("%Y%m%d") for i in range((last - first).days + 1)]


@dataclass(frozen=True, slots=True)
class LedgerEvent:
    """One accepted funnel event as it travels through the event stream.

    App events and postbacks carry the impression they are attributed to; a
    reversal names only the partner's event it undoes (``reverses``): what it
    takes back is what that event added.
    """

    type: str
    occurred_at: int
    source: str  # "app" or the posting partner's id
    decision_id: str = ""
    page_id: str = ""
    slot_id: str = ""
    position: int = 0
    product_id: str = ""
    ruleset_version: int = 0
    user_id: str | None = None
    risk_tier: str | None = None
    propensity_bps: int = BPS
    event_id: str = ""
    amount_fen: int = 0
    reverses: str = ""
    experiment_id: str = ""  # the experiment the impression took part in, with its arm and unit pseudonym
    arm: str = ""
    unit: str = ""

    @property
    def day(self) -> str:
        return day_of(self.occurred_at)

    def to_dict(self) -> dict[str, Any]:
        """A compact dict (short keys; empty values left out) for the stream entry."""
        body = {
            "k": self.type, "at": self.occurred_at, "src": self.source, "d": self.decision_id, "pg": self.page_id,
            "s": self.slot_id, "i": self.position, "p": self.product_id, "v": self.ruleset_version,
            "u": self.user_id, "t": self.risk_tier, "pr": self.propensity_bps, "e": self.event_id,
            "amt": self.amount_fen, "rev": self.reverses, "x": self.experiment_id, "a": self.arm, "n": self.unit,
        }
        return {k: v for k, v in body.items() if v not in (None, "")}

    @classmethod
    def from_dict(cls, body: Mapping[str, Any]) -> "LedgerEvent":
        return cls(
            type=str(body["k"]),
            occurred_at=int(body["at"]),
            source=str(body.get("src", "app")),
            decision_id=str(body.get("d", "")),
            page_id=str(body.get("pg", "")),
            slot_id=str(body.get("s", "")),
            position=int(body.get("i", 0)),
            product_id=str(body.get("p", "")),
            ruleset_version=int(body.get("v", 0)),
            user_id=body.get("u"),
            risk_tier=body.get("t"),
            propensity_bps=int(body.get("pr", BPS)),
            event_id=str(body.get("e", "")),
            amount_fen=int(body.get("amt", 0)),
            reverses=str(body.get("rev", "")),
            experiment_id=str(body.get("x", "")),
            arm=str(body.get("a", "")),
            unit=str(body.get("n", "")),
        )


@dataclass(frozen=True, slots=True)
class Attribution:
    """Where an event's counts go: the dimensions finance groups by (the day is the counter key's)."""

    channel: str
    partner: str
    product: str
    page: str
    slot: str
    risk_tier: str = NO_TIER

    def field(self, measure: str) -> str:
        return SEP.join((self.channel, self.partner, self.product, self.page, self.slot, self.risk_tier, measure))

    def value(self, group_by: str, day: str) -> str | None:
        """This attribution's value of a ``group_by`` dimension, as the revenue rows show it."""
        if group_by == "day":
            return f"{day[:4]}-{day[4:6]}-{day[6:]}"
        if group_by == "slot":
            return f"{self.page}/{self.slot}"
        if group_by == "risk_tier":
            return None if self.risk_tier == NO_TIER else self.risk_tier
        return getattr(self, group_by)


def parse_counter_field(name: str) -> tuple[Attribution, str]:
    """Split a counter field into its attribution and measure."""
    channel, partner, product, page, slot, tier, measure = name.split(SEP)
    return Attribution(channel, partner, product, page, slot, tier), measure


def attribute(event: LedgerEvent, catalogue: Catalogue | None) -> Attribution:
    """The attribution of an event under the catalogue of the version it was served under."""
    product = catalogue.products.get(event.product_id) if catalogue is not None else None
    channel = product.settlement.model if product is not None else "unknown"
    partner = product.owner if product is not None else "unknown"
    return Attribution(
        channel=channel,
        partner=partner,
        product=event.product_id,
        page=event.page_id,
        slot=event.slot_id,
        risk_tier=event.risk_tier or NO_TIER,
    )


def position_weight_bps(catalogue: Catalogue | None, page_id: str, slot_id: str) -> int:
    """The position weight of a slot in a served version (the best slot's, 10000, when unknown)."""
    page = catalogue.pages.get(page_id) if catalogue is not None else None
    if page is not None:
        for slot in page.slots:
            if slot.slot_id == slot_id:
                return slot.position_weight_bps
    return BPS


def earned_revenue_fen(product: Product, event_type: str, amount_fen: int, risk_tier: str | None) -> tuple[Fraction, Fraction]:
    """What one event earns, ``(platform, group)`` in fen (exact); zero unless the product pays on it."""
    settlement = product.settlement
    if PAYING_EVENT.get(settlement.model) != event_type:
        return Fraction(0), Fraction(0)
    model = settlement.model
    if model in ("per_click", "per_application", "per_credit_line", "per_card"):
        return Fraction(settlement.fee_fen), Fraction(settlement.fee_fen)
    if model == "cps":
        value = amount_fen * rate(settlement.cps_rate_bps)
        return value, value
    # self-lending: the platform books the transfer price, the group the loan's contribution
    platform = amount_fen * rate(settlement.transfer_price_bps)
    if product.lending is None:
        return platform, platform
    group = loan_contribution(amount_fen, product.funnel.term_months, product.lending, risk_tier)
    return platform, group


def event_measures(event: LedgerEvent, catalogue: Catalogue | None) -> dict[str, int]:
    """The counter increments of one event (not a reversal), by measure."""
    out: dict[str, int] = {}
    count = _COUNT_OF.get(event.type)
    if count is None:
        return out
    out[count] = 1
    product = catalogue.products.get(event.product_id) if catalogue is not None else None
    if event.type == DISBURSED:
        out[DISBURSED_FEN] = event.amount_fen
    if product is None:
        return out
    if event.type == IMPRESSION:
        expected = expected_revenue_per_impression(
            product, event.risk_tier, position_weight_bps(catalogue, event.page_id, event.slot_id)
        )
        _add(out, EXPECTED_PLATFORM, to_micro_fen(expected.platform_fen))
        _add(out, EXPECTED_GROUP, to_micro_fen(expected.group_fen))
        return out
    platform, group = earned_revenue_fen(product, event.type, event.amount_fen, event.risk_tier)
    _add(out, PLATFORM_REVENUE, to_micro_fen(platform))
    _add(out, GROUP_CONTRIBUTION, to_micro_fen(group))
    return out


def _add(out: dict[str, int], measure: str, value: int) -> None:
    if value:
        out[measure] = out.get(measure, 0) + value


def counter_deltas(event: LedgerEvent, catalogue: Catalogue | None) -> dict[str, int]:
    """The counter fields (without the day) one event increments, and by how much."""
    where = attribute(event, catalogue)
    return {where.field(measure): value for measure, value in event_measures(event, catalogue).items()}


def reversal_deltas(original: Mapping[str, int]) -> dict[str, int]:
    """What a reversal applies: the negation of what the original added, and one reversal counted."""
    out = {name: -value for name, value in original.items()}
    if original:
        first = next(iter(original))
        where, _ = parse_counter_field(first)
        out[where.field(REVERSALS)] = 1
    return out


def split_micro(value: int) -> tuple[int, int]:
    """``(high, low)`` with ``value = high × HIGH_UNIT + low``, both of ``value``'s sign and ``|low| < HIGH_UNIT``."""
    high = abs(value) // HIGH_UNIT
    high = high if value >= 0 else -high
    return high, value - high * HIGH_UNIT


def ledger_adds(deltas: Mapping[str, int]) -> list[tuple[str, int, str | None, int]]:
    """The increments that apply ``deltas`` to a day's counters: ``(field, n, high field, high n)``.

    A money measure's delta is split into its high and low parts (the worker
    carries whole units of the low field into the high one); a count has no
    high field.
    """
    out: list[tuple[str, int, str | None, int]] = []
    for name, value in deltas.items():
        if name.rsplit(SEP, 1)[-1] in SPLIT_MEASURES:
            high, low = split_micro(value)
            out.append((name, low, name + HIGH_SUFFIX, high))
        else:
            out.append((name, value, None, 0))
    return out


def learning_deltas(event: LedgerEvent, catalogue: Catalogue | None) -> dict[str, int]:
    """Observed funnel counts per product and risk tier that one event adds (for learned rates)."""
    tier = event.risk_tier or NO_TIER
    prefix = f"{event.product_id}{SEP}{tier}{SEP}"
    if event.type == IMPRESSION:
        return {
            prefix + LEARN_IMPRESSIONS: 1,
            prefix + LEARN_WEIGHTED_IMPRESSIONS: position_weight_bps(catalogue, event.page_id, event.slot_id),
        }
    name = _LEARNED_OF.get(event.type)
    return {prefix + name: 1} if name else {}


# -- reading ------------------------------------------------------------------------


@dataclass
class RevenueRow:
    """One row of the earned-revenue answer while it is being summed (micro-fen kept exact)."""

    key: str | None
    sums: dict[str, int] = field(default_factory=dict)

    def to_dict(self, group_by: str) -> dict[str, Any]:
        row: dict[str, Any] = {group_by: self.key}
        for name in ROW_MEASURES:
            raw = self.sums.get(_ROW_SOURCE[name], 0)
            row[name] = round_half_up(Fraction(raw, MICRO)) if _ROW_SOURCE[name] in _MICRO_MEASURES else raw
        return row


def revenue_rows(counters_by_day: Iterable[tuple[str, Mapping[str, int]]], group_by: str) -> list[dict[str, Any]]:
    """Sum day counters into the rows of docs/api.md grouped by ``group_by``; money rounded half-up once, on read."""
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}")
    rows: dict[str | None, RevenueRow] = {}
    for day, counters in counters_by_day:
        for name, value in counters.items():
            where, measure = parse_counter_field(name)
            amount = int(value)
            if measure.endswith(HIGH_SUFFIX) and measure[: -len(HIGH_SUFFIX)] in SPLIT_MEASURES:
                measure, amount = measure[: -len(HIGH_SUFFIX)], amount * HIGH_UNIT
            key = where.value(group_by, day)
            row = rows.get(key)
            if row is None:
                row = rows[key] = RevenueRow(key)
            row.sums[measure] = row.sums.get(measure, 0) + amount
    ordered = sorted(rows.values(), key=lambda r: (r.key is None, r.key or ""))
    return [row.to_dict(group_by) for row in ordered]


# -- caps ----------------------------------------------------------------------------

SECONDS_PER_DAY = 86_400
# Leads a partner may take ahead of the day's straight line, as a share of its cap.
PACING_BURST_BPS = 200


def paced_lead_allowance(daily_cap: int, seconds_into_day: float, burst_bps: int = PACING_BURST_BPS) -> int:
    """Leads a partner may have received by this time of day: its cap spread over the day plus a burst.

    ``cap × elapsed share of the day + max(1, cap × burst)``, never above the
    cap, so a partner with a 50,000-lead cap and a 2% burst has 1,000 leads at
    midnight, 13,500 at 6 am and is not exhausted by 9 am.
    """
    if daily_cap <= 0:
        return 0
    elapsed = min(max(seconds_into_day, 0.0), SECONDS_PER_DAY)
    burst = max(1, daily_cap * burst_bps // BPS)
    return min(daily_cap, int(daily_cap * elapsed // SECONDS_PER_DAY) + burst)


def suppressed_until(event: LedgerEvent, cooldown_days: int) -> int:
    """Epoch second until which an applied/approved/rejected user does not see that partner again."""
    return event.occurred_at + cooldown_days * SECONDS_PER_DAY

