"""Settlement pulls: a partner's daily settlement file, for reconciliation.

``GET <settlement_url>?date=YYYY-MM-DD``, signed like every partner call (the
signed body of a GET is empty), through the partner client. The text is
handed back as it came; :func:`wallet_market.domain.reconcile.parse_settlement_csv`
reads it.

A daily file is not a pre-screen: it gets a longer deadline than the partner's
``timeout_ms`` and does not go through the pre-screen circuit breaker, so a
partner whose pre-screen service is struggling can still be reconciled.
"""
from __future__ import annotations

from datetime import date
from typing import Callable

from ..domain.catalogue import Partner
from ..partners.client import PartnerClient
from .errors import Invalid, NotFound, Unavailable

PURPOSE = "settlement"
SETTLEMENT_TIMEOUT_SECONDS = 30.0
SETTLEMENT_MAX_BYTES = 50 * 1024 * 1024


class SettlementClient:
    def __init__(
        self,
        client: PartnerClient,
        partners: Callable[[str], Partner | None],
        *,
        timeout_seconds: float = SETTLEMENT_TIMEOUT_SECONDS,
        max_bytes: int = SETTLEMENT_MAX_BYTES,
    ):
        self.client = client
        self.partners = partners
        self.timeout_seconds = timeout_seconds
        self.max_bytes = max_bytes

    def fetch(self, partner_id: str, day: date) -> str:
        """The settlement file (CSV text) of ``partner_id`` for ``day``.

        :class:`NotFound` for an unknown partner, :class:`Invalid` when it has no
        ``settlement_url``, :class:`Unavailable` naming the outcome when the
        partner does not hand the file over.
        """
        partner = self.partners(partner_id)
        if partner is None:
            raise NotFound(f"partner {partner_id!r} does not exist", {"partner_id": ["unknown partner"]})
        if not partner.settlement_url:
            raise Invalid(
                f"partner {partner_id!r} has no settlement_url", {"settlement_url": ["not configured"]}
            )
        result = self.client.call(
            partner,
            PURPOSE,
            "GET",
            partner.settlement_url,
            params={"date": day.isoformat()},
            read=lambda response: response.text(),
            timeout_seconds=max(partner.timeout_ms / 1000, self.timeout_seconds),
            max_bytes=self.max_bytes,
            use_breaker=False,
        )
        if not result.ok or result.value is None:
            raise Unavailable(
                f"the settlement file of {partner_id!r} for {day.isoformat()} could not be fetched: "
                f"{result.outcome} ({result.detail})",
                {"partner": [result.outcome]},
            )
        return result.value
