"""Expected revenue per impression and the self-lending contribution (docs/economics.md).

Inputs are integer fen and integer basis points. Intermediate results are exact
``Fraction`` values so nothing is lost to float rounding; callers round once, at
the edge, with :func:`round_half_up` (to fen) or :func:`to_micro_fen` (the
integer score placement ranks by, in millionths of a fen per impression).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from .catalogue import BPS, Funnel, Lending, Product

GROUP_VIEW = "group"
PLATFORM_VIEW = "platform"
VIEWS = (GROUP_VIEW, PLATFORM_VIEW)
MICRO = 1_000_000


def rate(bps: int) -> Fraction:
    """A basis-point rate as an exact fraction of one."""
    return Fraction(int(bps), BPS)


def round_half_up(value: Fraction | int) -> int:
    """Round to the nearest integer, halves away from zero (money rounding)."""
    value = Fraction(value)
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    return sign * int((magnitude.numerator * 2 + magnitude.denominator) // (2 * magnitude.denominator))


def to_micro_fen(value_fen: Fraction) -> int:
    """Fen per impression as an integer count of millionths of a fen."""
    return round_half_up(value_fen * MICRO)


def approvals_per_impression(funnel: Funnel, risk_tier: str | None, position_weight_bps: int = BPS) -> Fraction:
    """``C = ctr × position_weight × apply_rate × approval_rate``."""
    return (
        rate(funnel.ctr_bps)
        * rate(position_weight_bps)
        * rate(funnel.apply_rate_bps)
        * rate(funnel.approval_for(risk_tier))
    )


def loans_per_impression(funnel: Funnel, risk_tier: str | None, position_weight_bps: int = BPS) -> Fraction:
    """``D = C × draw_rate`` (first drawdowns per impression)."""
    return approvals_per_impression(funnel, risk_tier, position_weight_bps) * rate(funnel.draw_rate_bps)


def balance_years(term_months: int) -> Fraction:
    """Average balance-years of an equal-principal loan over ``term_months``: ``(T+1)/24``."""
    return Fraction(term_months + 1, 24)


def net_margin_bps(lending: Lending, risk_tier: str | None) -> int:
    """``apr − cost_of_funds − annual_loss − opex − capital_charge`` in basis points."""
    return (
        lending.apr_bps
        - lending.cost_of_funds_bps
        - lending.annual_loss_for(risk_tier)
        - lending.opex_bps
        - lending.capital_charge_bps
    )


def loan_contribution(avg_loan_fen: int, term_months: int, lending: Lending, risk_tier: str | None) -> Fraction:
    """Group contribution of one self-lent loan, in fen (exact).

    ``avg_loan × (T+1)/24 × (apr − cost_of_funds − annual_loss − opex − capital_charge)``;
    8,000 RMB over 12 months at a 7.5% net margin gives 325 RMB.
    """
    return avg_loan_fen * balance_years(term_months) * rate(net_margin_bps(lending, risk_tier))


@dataclass(frozen=True, slots=True)
class RevenuePerImpression:
    """Expected revenue of one impression of a product, both views, in fen (exact)."""

    platform_fen: Fraction
    group_fen: Fraction

    def in_view(self, view: str) -> Fraction:
        return self.group_fen if view == GROUP_VIEW else self.platform_fen


def expected_revenue_per_impression(
    product: Product, risk_tier: str | None, position_weight_bps: int = BPS
) -> RevenuePerImpression:
    """Expected revenue per impression for every settlement model, platform and group view.

    A referral payout is revenue in both views. A self-lent loan books only the
    internal transfer price on the platform, and its whole contribution for the group.
    """
    funnel = product.funnel
    settlement = product.settlement
    model = settlement.model
    pw = rate(position_weight_bps)
    new_customer = rate(funnel.new_customer_rate_bps)
    if model == "self":
        loans = loans_per_impression(funnel, risk_tier, position_weight_bps)
        platform = loans * funnel.avg_loan_fen * rate(settlement.transfer_price_bps)
        if product.lending is None:
            group = platform
        else:
            group = loans * loan_contribution(funnel.avg_loan_fen, funnel.term_months, product.lending, risk_tier)
        return RevenuePerImpression(platform, group)
    if model == "cps":
        loans = loans_per_impression(funnel, risk_tier, position_weight_bps)
        value = new_customer * loans * funnel.avg_loan_fen * rate(settlement.cps_rate_bps)
    elif model in ("per_credit_line", "per_card"):
        value = new_customer * approvals_per_impression(funnel, risk_tier, position_weight_bps) * settlement.fee_fen
    elif model == "per_application":
        value = new_customer * rate(funnel.ctr_bps) * pw * rate(funnel.apply_rate_bps) * settlement.fee_fen
    elif model == "per_click":
        value = rate(funnel.ctr_bps) * pw * settlement.fee_fen
    else:
        raise ValueError(f"unknown settlement model {model!r}")
    return RevenuePerImpression(value, value)


def rpm_fen(revenue_per_impression_fen: Fraction) -> int:
    """Revenue per 1,000 impressions, rounded to the fen."""
    return round_half_up(revenue_per_impression_fen * 1000)
