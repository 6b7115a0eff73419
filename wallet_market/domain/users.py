"""The user profile: the facts internal systems push about a wallet user (docs/api.md).

A profile holds what placement may use: risk tier, the in-house credit decision,
consents, age, region and the SHA-256 of the phone number (never the number).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Mapping

from .catalogue import RISK_TIERS

IN_HOUSE_DECISIONS = ("none", "approved", "declined")
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")


def _parse_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value)
    if "T" in text or " " in text:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    return date.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class UserProfile:
    """A logged-in user's profile; a visitor has none."""

    user_id: str
    risk_tier: str | None = None
    in_house_decision: str = "none"
    decided_at: date | None = None
    personalized: bool = True
    share_with_partners: frozenset[str] = field(default_factory=frozenset)
    age: int | None = None
    region: str | None = None
    phone_sha256: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], user_id: str | None = None) -> "UserProfile":
        """Build a profile from the shape of docs/api.md.

        ``user_id`` names the user when the body does not (``PUT /v1/users/<user_id>``).
        Raises ``ValueError`` naming the field for a value outside the contract.
        """
        uid = user_id if user_id is not None else d.get("user_id")
        if not uid:
            raise ValueError("user_id: required")
        risk_tier = d.get("risk_tier")
        if risk_tier is not None and risk_tier not in RISK_TIERS:
            raise ValueError(f"risk_tier: must be one of {', '.join(RISK_TIERS)}")
        decision = d.get("in_house_decision") or {}
        if isinstance(decision, str):
            decision = {"status": decision}
        status = decision.get("status") or "none"
        if status not in IN_HOUSE_DECISIONS:
            raise ValueError(f"in_house_decision.status: must be one of {', '.join(IN_HOUSE_DECISIONS)}")
        try:
            decided_at = _parse_date(decision.get("decided_at"))
        except ValueError:
            raise ValueError("in_house_decision.decided_at: not an ISO date") from None
        consents = d.get("consents") or {}
        share = consents.get("share_with_partners") or ()
        if isinstance(share, str):
            raise ValueError("consents.share_with_partners: must be a list of partner ids")
        age = d.get("age")
        if age is not None:
            if isinstance(age, bool) or not isinstance(age, int) or not 0 <= age <= 150:
                raise ValueError("age: must be a whole number of years")
        return cls(
            user_id=str(uid),
            risk_tier=risk_tier,
            in_house_decision=status,
            decided_at=decided_at,
            personalized=bool(consents.get("personalized", True)),
            share_with_partners=frozenset(map(str, share)),
            age=age,
            region=d.get("region") or None,
            phone_sha256=d.get("phone_sha256") or None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The profile shape of docs/api.md (partner ids sorted, so the output is stable)."""
        return {
            "user_id": self.user_id,
            "risk_tier": self.risk_tier,
            "in_house_decision": {
                "status": self.in_house_decision,
                "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            },
            "consents": {
                "personalized": self.personalized,
                "share_with_partners": sorted(self.share_with_partners),
            },
            "age": self.age,
            "region": self.region,
            "phone_sha256": self.phone_sha256,
        }

    @property
    def age_band(self) -> str | None:
        """The age band a rule condition tests: "18-24" … "55+", or None when unknown or under 18."""
        age = self.age
        if age is None or age < 18:
            return None
        if age <= 24:
            return "18-24"
        if age <= 34:
            return "25-34"
        if age <= 44:
            return "35-44"
        if age <= 54:
            return "45-54"
        return "55+"

    def consents_to_share_with(self, partner_id: str) -> bool:
        """Guard 5: whether this user allows their data to reach ``partner_id``."""
        return partner_id in self.share_with_partners

    def declined_in_house_within(self, today: date, cooldown_days: int) -> bool:
        """Whether the in-house lender declined this user less than ``cooldown_days`` ago.

        A decline without a date is treated as recent: it is a credit decision,
        and offering the loan again too early is the costlier mistake.
        """
        if self.in_house_decision != "declined":
            return False
        if self.decided_at is None:
            return True
        return (today - self.decided_at).days < cooldown_days
