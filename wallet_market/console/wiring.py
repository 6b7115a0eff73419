"""The one place the console reaches the service's parts.

Every page asks :func:`console_services` for what it needs; nothing else in
the console knows how the application composes its services.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from flask import current_app, g

from ..domain.reconcile import Reconciliation, SettlementLine
from ..services.access import Access
from ..services.catalogue_admin import CatalogueAdmin
from ..services.experiments import ExperimentAdmin
from ..settings import Settings

if TYPE_CHECKING:
    from ..composition import Components


@dataclass(frozen=True)
class ConsoleServices:
    settings: Settings
    access: Access
    admin: CatalogueAdmin
    # the served rule set (in-process snapshot): ``serving().catalogue``, ``serving().version``
    serving: Callable[[], Any]
    # what a described user would see, with every candidate's outcome
    preview: Callable[[Mapping[str, Any]], dict[str, Any]]
    # the funnel ledger (its day counters), for earned revenue
    ledger: Any
    # the data-share log of a user: ``data_shares(user_id, limit)``
    data_shares: Callable[..., list]
    reconcile: Callable[[str, Sequence[SettlementLine], Sequence[date]], Reconciliation]
    fetch_settlement: Callable[[str, date], str]
    # experiments: create, list, stop, ship and their results
    experiments: ExperimentAdmin
    # off-policy evaluation: ``evaluate(candidate, first, last, view)``
    evaluate: Callable[[str, date | None, date | None, str], dict[str, Any]]


def console_services(app=None) -> ConsoleServices:
    """The services of this process (of ``app``, else of the current app, looked up once per request)."""
    found = None if app is not None else g.get("_console_services")
    if found is None:
        from ..services.reconciliation import fetch_settlement, reconcile_partner

        comps: Components = (app or current_app).extensions["wallet_market"]
        sources = comps.reconciliation
        found = ConsoleServices(
            settings=comps.settings,
            access=comps.access,
            admin=comps.admin,
            serving=comps.layouts.serving,
            preview=comps.preview.preview,
            ledger=comps.revenue.ledger,
            data_shares=comps.profiles.data_shares,
            reconcile=lambda partner_id, theirs, days: reconcile_partner(sources, partner_id, theirs, days),
            fetch_settlement=lambda partner_id, day: fetch_settlement(sources, partner_id, day),
            experiments=comps.experiments,
            evaluate=comps.evaluation.evaluate,
        )
        if app is None:
            g._console_services = found
    return found
