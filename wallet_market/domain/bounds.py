"""The largest (and smallest) value every money, rate and count field may take.

One table, used by the write-time guards (:mod:`wallet_market.domain.guards`),
the catalogue's marshmallow schemas and the postback schema, so that a typo —
a loan of 10^15 fen, a fee of a million RMB — is refused with the field named
before it can reach the ledger. The bounds are wide for a real lending product
and narrow enough that no counter of the ledger can overflow (the arithmetic is
in ``docs/ledger.md``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

FEN_PER_RMB = 100

# Money, in fen.
MAX_LOAN_FEN = 100_000_000  # 1,000,000 RMB: a credit limit, an average loan, one disbursal
MAX_FEE_FEN = 1_000_000  # 10,000 RMB: one fee per click, application, approved line or card
MAX_FLOOR_RPM_FEN = 100_000_000  # 1,000,000 RMB per 1,000 impressions: a rule's revenue floor
# Rates, in basis points (10,000 = 100%). APRs are further held to the cap by guard 1.
MAX_RATE_BPS = 10_000
MAX_FACTOR_BPS = 1_000_000  # a boost multiplies a score by at most 100
# Terms.
MAX_TERM_DAYS = 10_950  # 30 years
MAX_TERM_MONTHS = 360
# Counts.
MAX_DAILY_CAP = 1_000_000_000  # leads, approvals or impressions a day
MAX_SLOT_COUNT = 50  # slots on a page, slots a partner may be capped to
MAX_RULE_PRIORITY = 1_000_000
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS = 10, 10_000


@dataclass(frozen=True, slots=True)
class Bound:
    """An inclusive integer range and the unit it is written in."""

    low: int
    high: int
    unit: str

    def holds(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high

    def message(self, name: str) -> str:
        text = f"{name} must be an integer from {self.low:,} to {self.high:,}"
        if self.unit == "fen":
            return f"{text} fen ({self.low // FEN_PER_RMB:,}–{self.high // FEN_PER_RMB:,} RMB)"
        return f"{text} {self.unit}".rstrip()


LOAN_FEN = Bound(0, MAX_LOAN_FEN, "fen")
FEE_FEN = Bound(0, MAX_FEE_FEN, "fen")
FLOOR_RPM_FEN = Bound(0, MAX_FLOOR_RPM_FEN, "fen")
RATE_BPS = Bound(0, MAX_RATE_BPS, "bps")
FACTOR_BPS = Bound(0, MAX_FACTOR_BPS, "bps")
TERM_DAYS = Bound(0, MAX_TERM_DAYS, "days")
TERM_MONTHS = Bound(0, MAX_TERM_MONTHS, "months")
DAILY_CAP = Bound(0, MAX_DAILY_CAP, "a day")
SLOT_COUNT = Bound(0, MAX_SLOT_COUNT, "slots")
RULE_PRIORITY = Bound(0, MAX_RULE_PRIORITY, "")
TIMEOUT_MS = Bound(MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, "ms")

# Every bounded field of each entity, by its JSON path within the entity. A
# value given per risk tier ({"A": 4000, "default": 3000}) is bounded tier by tier;
# an optional field left empty (None) is not checked.
PRODUCT_FIELDS: Mapping[str, Bound] = {
    "limit_min_fen": LOAN_FEN,
    "limit_max_fen": LOAN_FEN,
    "apr_min_bps": RATE_BPS,
    "apr_max_bps": RATE_BPS,
    "term_min_days": TERM_DAYS,
    "term_max_days": TERM_DAYS,
    "daily_impression_cap": DAILY_CAP,
    "settlement.fee_fen": FEE_FEN,
    "settlement.cps_rate_bps": RATE_BPS,
    "settlement.transfer_price_bps": RATE_BPS,
    "funnel.ctr_bps": RATE_BPS,
    "funnel.apply_rate_bps": RATE_BPS,
    "funnel.approval_rate_bps": RATE_BPS,
    "funnel.draw_rate_bps": RATE_BPS,
    "funnel.new_customer_rate_bps": RATE_BPS,
    "funnel.avg_loan_fen": LOAN_FEN,
    "funnel.term_months": TERM_MONTHS,
    "lending.apr_bps": RATE_BPS,
    "lending.cost_of_funds_bps": RATE_BPS,
    "lending.annual_loss_bps": RATE_BPS,
    "lending.opex_bps": RATE_BPS,
    "lending.capital_charge_bps": RATE_BPS,
}
PARTNER_FIELDS: Mapping[str, Bound] = {
    "timeout_ms": TIMEOUT_MS,
    "daily_lead_cap": DAILY_CAP,
    "daily_approval_cap": DAILY_CAP,
}
SLOT_FIELDS: Mapping[str, Bound] = {"position_weight_bps": RATE_BPS}
RULE_FIELDS: Mapping[str, Bound] = {
    "priority": RULE_PRIORITY,
    "factor_bps": FACTOR_BPS,
    "floor_rpm_fen": FLOOR_RPM_FEN,
    "max_slots": SLOT_COUNT,
}
# A partner's postback: the amount of one disbursal.
POSTBACK_AMOUNT_FEN = LOAN_FEN


def out_of_bounds(entity: Mapping[str, Any], table: Mapping[str, Bound]) -> list[tuple[str, str]]:
    """``(path, message)`` for every field of ``entity`` (a plain dict) outside its bound, in table order."""
    out: list[tuple[str, str]] = []
    for path, bound in table.items():
        value: Any = entity
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is None:
            continue
        name = path.rsplit(".", 1)[-1]
        if isinstance(value, Mapping):
            for tier, tiered in value.items():
                if not bound.holds(tiered):
                    out.append((f"{path}.{tier}", bound.message(f"{name}.{tier}")))
        elif not bound.holds(value):
            out.append((path, bound.message(name)))
    return out
