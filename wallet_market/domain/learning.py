"""Learned funnel rates: the catalogue's priors updated by what the ledger observed (docs/economics.md).

Each rate is a Beta-smoothed estimate: ``(successes + prior × n₀) / (trials + n₀)``
where the prior is the catalogue's rate and ``n₀`` its weight in pseudo-trials.
The catalogue prior is worth ``prior_strength`` pseudo-impressions in a slot of
weight 1; down the funnel that is ``prior_strength × ctr`` pseudo-clicks for the
apply rate, ``× apply_rate`` pseudo-applications for the approval rate and
``× approval_rate`` pseudo-approvals for the draw rate, so the prior is one
consistent body of evidence, not a separate guess at every stage.

Clicks are normalised by slot position: the click-through rate of the catalogue
is the best slot's, so its trials are the impressions weighted by their slot's
position weight. The approval rate is learned per risk tier (the catalogue may
hold it per tier); click-through, apply and draw rates pool every tier.

Old evidence fades: the ledger keeps the observed counts per day, and a day's
counts weigh ``0.5 ** (age_days / half_life_days)`` — today's in full, those a
half-life ago half — so a product whose funnel changes is relearned within a
few half-lives rather than averaged with its whole history. Days older than
:func:`learning_window_days` weigh under 0.4% and are not read.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, timedelta
from fractions import Fraction
from typing import Iterable, Mapping

from .catalogue import BPS, RISK_TIERS, Catalogue, Funnel
from .economics import round_half_up
from .funnel import (
    LEARN_APPLICATIONS,
    LEARN_APPROVALS,
    LEARN_CLICKS,
    LEARN_IMPRESSIONS,
    LEARN_LOANS,
    LEARN_WEIGHTED_IMPRESSIONS,
    SEP,
)


# The longest window of days read, whatever the half-life (and the window without decay).
MAX_WINDOW_DAYS = 365
# Days read per half-life: after 8 half-lives a day weighs 1/256 of today.
WINDOW_HALF_LIVES = 8

Count = int | Fraction


@dataclass(frozen=True, slots=True)
class ObservedFunnel:
    """Funnel counts observed for one product (and risk tier); decayed counts are fractions."""

    weighted_impressions_bps: Count = 0  # Σ position weight of the impressions' slots
    impressions: Count = 0
    clicks: Count = 0
    applications: Count = 0
    approvals: Count = 0
    loans: Count = 0

    def __add__(self, other: "ObservedFunnel") -> "ObservedFunnel":
        return ObservedFunnel(
            self.weighted_impressions_bps + other.weighted_impressions_bps,
            self.impressions + other.impressions,
            self.clicks + other.clicks,
            self.applications + other.applications,
            self.approvals + other.approvals,
            self.loans + other.loans,
        )

    @property
    def is_empty(self) -> bool:
        return not (self.impressions or self.clicks or self.applications or self.approvals or self.loans)


_FIELD_OF = {
    LEARN_WEIGHTED_IMPRESSIONS: "weighted_impressions_bps",
    LEARN_IMPRESSIONS: "impressions",
    LEARN_CLICKS: "clicks",
    LEARN_APPLICATIONS: "applications",
    LEARN_APPROVALS: "approvals",
    LEARN_LOANS: "loans",
}


def learning_window_days(half_life_days: int) -> int:
    """How many days of counts are read: ``8 × half-life`` (at most 365); 365 without decay (0)."""
    if half_life_days <= 0:
        return MAX_WINDOW_DAYS
    return min(MAX_WINDOW_DAYS, WINDOW_HALF_LIVES * half_life_days)


def learning_days(today: date, half_life_days: int) -> list[date]:
    """The days whose counts are read, today first."""
    return [today - timedelta(days=age) for age in range(learning_window_days(half_life_days))]


def decay_weight(age_days: int, half_life_days: int) -> Fraction:
    """``0.5 ** (age_days / half_life_days)`` as an exact fraction (1 without decay, i.e. half-life 0)."""
    if half_life_days <= 0 or age_days <= 0:
        return Fraction(1)
    if age_days % half_life_days == 0:
        return Fraction(1, 2 ** (age_days // half_life_days))
    return Fraction(0.5 ** (age_days / half_life_days))


def decayed_counts(
    counts_by_day: Iterable[tuple[date, Mapping[str, int]]], today: date, half_life_days: int
) -> dict[str, Fraction]:
    """Per-day counts ``field → n`` summed with each day's decay weight (days after ``today`` weigh 1)."""
    out: dict[str, Fraction] = {}
    for day, counts in counts_by_day:
        weight = decay_weight((today - day).days, half_life_days)
        for name, count in counts.items():
            out[name] = out.get(name, Fraction(0)) + weight * int(count)
    return {name: value for name, value in out.items() if value}


def parse_observed(raw: Mapping[str, Count]) -> dict[str, dict[str, ObservedFunnel]]:
    """Observed counts ``"<product>|<tier>|<measure>" → n`` as product → risk tier → counts."""
    values: dict[tuple[str, str], dict[str, Count]] = {}
    for name, count in raw.items():
        parts = name.rsplit(SEP, 2)
        if len(parts) != 3 or parts[2] not in _FIELD_OF:
            continue
        product, tier, measure = parts
        values.setdefault((product, tier), {})[_FIELD_OF[measure]] = count if isinstance(count, Fraction) else int(count)
    out: dict[str, dict[str, ObservedFunnel]] = {}
    for (product, tier), fields in values.items():
        out.setdefault(product, {})[tier] = ObservedFunnel(**fields)
    return out


def beta_smoothed_bps(successes: Fraction | int, trials: Fraction | int, prior_bps: int, prior_trials: Fraction | int) -> int:
    """``(successes + prior × prior_trials) / (trials + prior_trials)`` in basis points, rounded half-up.

    With no evidence and no prior weight the prior stands; the answer is kept
    within 0–10000 (postbacks may outnumber the clicks they are attributed to).
    """
    total = Fraction(trials) + Fraction(prior_trials)
    if total <= 0:
        return prior_bps
    estimate = (Fraction(successes) + Fraction(prior_bps, BPS) * Fraction(prior_trials)) / total
    return min(BPS, max(0, round_half_up(estimate * BPS)))


def learned_funnel(funnel: Funnel, observed: Mapping[str, ObservedFunnel], prior_strength: int) -> Funnel:
    """``funnel`` with its rates replaced by Beta-smoothed estimates from ``observed`` (tier → counts)."""
    pooled = ObservedFunnel()
    for counts in observed.values():
        pooled = pooled + counts
    if pooled.is_empty:
        return funnel
    strength = Fraction(prior_strength)
    ctr = Fraction(funnel.ctr_bps, BPS)
    apply_rate = Fraction(funnel.apply_rate_bps, BPS)
    pseudo_clicks = strength * ctr
    pseudo_applications = pseudo_clicks * apply_rate

    ctr_bps = beta_smoothed_bps(pooled.clicks, Fraction(pooled.weighted_impressions_bps, BPS), funnel.ctr_bps, strength)
    apply_bps = beta_smoothed_bps(pooled.applications, pooled.clicks, funnel.apply_rate_bps, pseudo_clicks)
    approval: dict[str, int] = {}
    for tier in RISK_TIERS:
        counts = observed.get(tier, ObservedFunnel())
        approval[tier] = beta_smoothed_bps(
            counts.approvals, counts.applications, funnel.approval_for(tier), pseudo_applications
        )
    default_prior = funnel.approval_for(None)
    approval["default"] = beta_smoothed_bps(pooled.approvals, pooled.applications, default_prior, pseudo_applications)
    pseudo_approvals = pseudo_applications * Fraction(default_prior, BPS)
    draw_bps = beta_smoothed_bps(pooled.loans, pooled.approvals, funnel.draw_rate_bps, pseudo_approvals)
    return replace(
        funnel,
        ctr_bps=ctr_bps,
        apply_rate_bps=apply_bps,
        approval_rate_bps=approval,
        draw_rate_bps=draw_bps,
    )


def apply_learning(
    catalogue: Catalogue, observed: Mapping[str, Mapping[str, ObservedFunnel]], prior_strength: int
) -> Catalogue:
    """The catalogue with every observed product's funnel rates learned; others keep their priors."""
    products = dict(catalogue.products)
    changed = False
    for product_id, by_tier in observed.items():
        product = products.get(product_id)
        if product is None:
            continue
        funnel = learned_funnel(product.funnel, by_tier, prior_strength)
        if funnel is not product.funnel:
            products[product_id] = replace(product, funnel=funnel)
            changed = True
    if not changed:
        return catalogue
    return replace(catalogue, products=products)

