"""The analysis log: what one decision records for evaluation, and how a decision is replayed from it.

A logged decision carries the context the policy saw — pseudonymously — and,
per slot, the product shown with the exact probability of showing it and the
slot's whole logging distribution. :func:`decision_record` writes it;
:func:`replay_request` rebuilds the request and user state from it, so a
candidate rule set can be run over the logged decisions by the real placement
code (:func:`~wallet_market.domain.placement.place`).

What the record holds about the user: whether they were logged in, the unit's
keyed pseudonym (never the user id, a device id or the phone hash), risk tier,
age band, region, in-house decision status (and whether a decline was within
the cool-down), personalisation and the partners they share with, pre-screen
outcomes, today's impressions per product, suppressed partners and partners at
their lead cap; of the request: device model, app version, page, time, and the
experiment and arm.

The age is kept as a band, never in years. For the replay to judge each
product's age limits as the logging policy did, the band is narrowed to the
bracket of ages between the catalogue's age limits that contains the user's
age (``age_bracket``, e.g. 22–24 within 18–24 when a product starts at 22): the
replay places the user at the bracket's lower end, which every product of the
logging catalogue treats exactly as the true age. A candidate with a new age
limit inside a bracket is judged at that lower end.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from .catalogue import Catalogue
from .placement import Decision, RequestContext, UserState
from .users import UserProfile

# Lower and upper end (inclusive) of each age band of UserProfile.age_band; under 18 has no band.
BAND_BOUNDS = {"18-24": (18, 24), "25-34": (25, 34), "35-44": (35, 44), "45-54": (45, 54), "55+": (55, 150)}
UNDER_18 = (0, 17)
# The candidate's distribution for a logged slot it leaves empty.
EMPTY = "(empty)"


def age_thresholds(catalogue: Catalogue) -> tuple[int, ...]:
    """Every age at which some product's eligibility changes: each ``age_min`` and ``age_max + 1``."""
    found: set[int] = set()
    for product in catalogue.products.values():
        eligibility = product.eligibility
        if eligibility.age_min is not None:
            found.add(eligibility.age_min)
        if eligibility.age_max is not None:
            found.add(eligibility.age_max + 1)
    return tuple(sorted(found))


def age_bracket(age: int | None, band: str | None, thresholds: Iterable[int]) -> tuple[int, int] | None:
    """The ages within the user's band that every product of the catalogue treats like ``age``."""
    if age is None:
        return None
    low, high = BAND_BOUNDS.get(band, UNDER_18) if band is not None else UNDER_18
    for threshold in thresholds:
        if low < threshold <= age:
            low = threshold
        elif age < threshold <= high:
            high = threshold - 1
    return low, high


def decision_record(
    *,
    decision_id: str,
    at: datetime,
    decision: Decision,
    unit: str | None,
    profile: UserProfile | None,
    state: UserState,
    context: RequestContext,
    experiment: tuple[str, str] | None,
    decline_cooldown_days: int,
    age_thresholds: Iterable[int] = (),
) -> dict[str, Any]:
    """The analysis record of one decision (JSON types only; see the module's docstring)."""
    today = at.date()
    band = profile.age_band if profile is not None else None
    bracket = age_bracket(profile.age, band, age_thresholds) if profile is not None else None
    return {
        "decision_id": decision_id,
        "at_ms": int(at.timestamp() * 1000),
        "day": today.isoformat(),
        "page": decision.page_id,
        "version": decision.ruleset_version,
        "unit": unit,
        "logged_in": profile is not None,
        "personalized": decision.personalized,
        "risk_tier": profile.risk_tier if profile is not None else None,
        "age_band": band,
        "age_bracket": list(bracket) if bracket is not None else None,
        "region": (profile.region if profile is not None else None) or context.region,
        "in_house_decision": profile.in_house_decision if profile is not None else None,
        "declined_recently": bool(profile is not None and profile.declined_in_house_within(today, decline_cooldown_days)),
        "consents": sorted(profile.share_with_partners) if profile is not None else [],
        "prescreen": dict(sorted(state.prescreen.items())),
        "impressions_today": dict(sorted(state.impressions_today.items())),
        "suppressed": sorted(state.suppressed_partners),
        "lead_capped": sorted(state.partners_at_lead_cap),
        "device_model": context.device_model,
        "app_version": context.app_version,
        "experiment_id": experiment[0] if experiment else None,
        "arm": experiment[1] if experiment else None,
        "slots": [
            {
                "slot": s.slot_id,
                "position": s.position,
                "product": s.product_id,
                "probability": s.probability,
                "distribution": s.logging_distribution(),
            }
            for s in decision.slots
        ],
    }


def replay_request(record: Mapping[str, Any], decline_cooldown_days: int) -> tuple[RequestContext, UserState]:
    """The request and user state a logged decision was placed with, as far as the log knows them."""
    at = datetime.fromtimestamp(record["at_ms"] / 1000, tz=timezone.utc)
    profile = None
    if record.get("logged_in"):
        bracket = record.get("age_bracket")
        status = record.get("in_house_decision") or "none"
        decided_at = None
        if status == "declined" and not record.get("declined_recently"):
            decided_at = at.date() - timedelta(days=decline_cooldown_days + 1)
        elif status == "declined":
            decided_at = at.date()
        profile = UserProfile(
            user_id=record.get("unit") or "logged",
            risk_tier=record.get("risk_tier"),
            in_house_decision=status,
            decided_at=decided_at,
            personalized=bool(record.get("personalized", True)),
            share_with_partners=frozenset(record.get("consents") or ()),
            age=int(bracket[0]) if bracket else None,
            region=record.get("region"),
        )
    context = RequestContext(
        page_id=record["page"],
        now=at,
        user=profile,
        device_model=record.get("device_model"),
        app_version=record.get("app_version"),
        region=record.get("region"),
    )
    state = UserState(
        impressions_today=dict(record.get("impressions_today") or {}),
        suppressed_partners=frozenset(record.get("suppressed") or ()),
        prescreen=dict(record.get("prescreen") or {}),
        partners_at_lead_cap=frozenset(record.get("lead_capped") or ()),
    )
    return context, state


def record_day(record: Mapping[str, Any]) -> date:
    return date.fromisoformat(record["day"])
