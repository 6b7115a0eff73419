"""The pre-screen protocol (撞库): what we send a partner and how its answer is read.

The request carries ``request_id``, ``product_id`` and ``phone_sha256`` only;
the answer is ``{"eligible": bool, "existing_customer": bool}``. The layout's
use of it (who is asked, caching, the data-share log) is
:mod:`wallet_market.services.prescreen`.
"""
from __future__ import annotations

from dataclasses import dataclass

from .client import BadAnswer, PartnerResponse

NEW = "new"
EXISTING = "existing"
INELIGIBLE = "ineligible"  # the partner would decline the user: not worth the slot
FAILED = "failed"
PURPOSE = "prescreen"
# The user data a pre-screen carries; request_id and product_id are ours.
PRESCREEN_FIELDS = ("phone_sha256",)


@dataclass(frozen=True, slots=True)
class PrescreenAnswer:
    """A partner's answer: ``{"eligible": bool, "existing_customer": bool}``."""

    eligible: bool
    existing_customer: bool

    @property
    def verdict(self) -> str:
        """``existing`` (no referral payout), ``ineligible`` or ``new``."""
        if self.existing_customer:
            return EXISTING
        return NEW if self.eligible else INELIGIBLE


def read_prescreen_answer(response: PartnerResponse) -> PrescreenAnswer:
    """Read a pre-screen answer strictly; anything else is a :class:`BadAnswer`."""
    body = response.json()
    if not isinstance(body, dict):
        raise BadAnswer("the answer is not a JSON object")
    eligible, existing = body.get("eligible"), body.get("existing_customer")
    if not isinstance(eligible, bool) or not isinstance(existing, bool):
        raise BadAnswer('expected {"eligible": bool, "existing_customer": bool}')
    return PrescreenAnswer(eligible=eligible, existing_customer=existing)
