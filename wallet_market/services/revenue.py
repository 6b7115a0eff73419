"""Earned revenue (``GET /finance/v1/revenue``): the ledger's counters, grouped for finance.

Rows carry the earned figures of DESIGN §7 beside the model's expected figures
for the same impressions, so finance sees how the placement model's forecast
compares with what partners and the in-house lender actually reported.
"""
from __future__ import annotations

from datetime import date
from typing import Any

from ..domain.funnel import GROUP_BY, days_between, revenue_rows
from ..store.ledger import Ledger
from .errors import Invalid

MAX_DAYS = 366


def earned_revenue(ledger: Ledger, first: date, last: date, group_by: str) -> dict[str, Any]:
    """Counters from ``first`` to ``last`` (inclusive, UTC days) summed by ``group_by``."""
    if group_by not in GROUP_BY:
        raise Invalid(f"group_by must be one of {', '.join(GROUP_BY)}", {"group_by": ["unknown grouping"]})
    if last < first:
        raise Invalid("to is before from", {"to": ["must not be before from"]})
    days = days_between(first, last)
    if len(days) > MAX_DAYS:
        raise Invalid(f"at most {MAX_DAYS} days at once", {"to": [f"at most {MAX_DAYS} days after from"]})
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "group_by": group_by,
        "rows": revenue_rows(ledger.counters(days), group_by),
    }


class Revenue:
    """Earned revenue read from one ledger."""

    def __init__(self, ledger: Ledger):
        self.ledger = ledger

    def earned(self, first: date, last: date, group_by: str) -> dict[str, Any]:
        return earned_revenue(self.ledger, first, last, group_by)
