"""Earned revenue (``GET /finance/v1/revenue``): the ledger's counters, grouped for finance.

Rows carry the earned figures of DESIGN §7 beside the model's expected figures
for the same impressions, so finance sees how the placement model's forecast
compares with what partners and the in-house lender actually reported.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from ..domain.funnel import GROUP_BY, days_between, revenue_rows
from ..store.ledger import Ledger
from .errors import Invalid

MAX_DAYS = 366
DEFAULT_DAYS = 7


def default_range(first: date | None, last: date | None, today: date) -> tuple[date, date, str | None]:
    """The days to read when ``from`` or ``to`` is left out, and a note saying what was assumed.

    Neither: the last 7 UTC days, today included. Only ``to``: the 7 days
    ending then. Only ``from``: from then to today.
    """
    if first is not None and last is not None:
        return first, last, None
    if first is None and last is None:
        start, end = today - timedelta(days=DEFAULT_DAYS - 1), today
        said = f"from and to not given: the last {DEFAULT_DAYS} days (UTC)"
    elif first is None:
        assert last is not None
        start, end = last - timedelta(days=DEFAULT_DAYS - 1), last
        said = f"from not given: the {DEFAULT_DAYS} days (UTC) ending on to"
    else:
        start, end = first, max(first, today)
        said = "to not given: up to today (UTC)"
    return start, end, f"{said}, {start.isoformat()} to {end.isoformat()}"


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

    def earned(
        self, first: date | None, last: date | None, group_by: str, today: date | None = None
    ) -> dict[str, Any]:
        """Earned revenue over ``first``–``last``; either left out is filled in and the answer says how."""
        first, last, note = default_range(first, last, today or datetime.now(timezone.utc).date())
        answer = earned_revenue(self.ledger, first, last, group_by)
        return {**answer, "note": note} if note else answer
