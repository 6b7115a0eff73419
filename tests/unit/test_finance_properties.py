"""Properties of the comparison that must hold for any economics a scenario may set."""
import tomllib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from wallet_market.domain.catalogue import BPS, RISK_TIERS, Catalogue
from wallet_market.domain.finance import (
    breakeven_annual_loss,
    breakeven_approval_rate,
    compare,
    parse_scenario,
    revenue_per_impression,
    scenario_products,
    self_contribution_at_loss,
)

CATALOGUE = Catalogue.from_dict(
    tomllib.loads(Path(__file__).with_name("finance_catalogue.toml").read_text(encoding="utf-8"))
)

rates = st.integers(min_value=0, max_value=BPS)
tiers = st.sampled_from(RISK_TIERS)
funnels = st.fixed_dictionaries(
    {
        "ctr_bps": rates,
        "apply_rate_bps": rates,
        "approval_rate_bps": rates,
        "draw_rate_bps": rates,
        "avg_loan_fen": st.integers(min_value=0, max_value=50_000_000),
    }
)


def scenario(segments, overrides=None, discount_rate_bps=0):
    return parse_scenario(
        {"name": "property", "segments": segments, "overrides": overrides or {}, "discount_rate_bps": discount_rate_bps},
        CATALOGUE,
    )


def segment(tier, impressions=1_000_000, logged_in=True):
    return {"name": "s", "risk_tier": tier, "logged_in": logged_in, "impressions": impressions}


def row(comparison, product_id):
    return next(r for r in comparison.rows if r.product_id == product_id)


@settings(max_examples=150, deadline=None)
@given(tier=tiers, losses=st.lists(st.integers(0, BPS), min_size=2, max_size=2), discount=rates)
def test_a_higher_loss_rate_never_raises_self_lendings_contribution(tier, losses, discount):
    lower, higher = sorted(losses)
    at = {}
    for loss in (lower, higher):
        overrides = {"inhouse_loan": {"lending": {"annual_loss_bps": {tier: loss}}}}
        at[loss] = row(compare(CATALOGUE, scenario([segment(tier)], overrides, discount)), "inhouse_loan")
    assert at[higher].group_contribution_fen <= at[lower].group_contribution_fen
    assert at[higher].rpm_group_fen <= at[lower].rpm_group_fen
    # The platform books only the transfer price, which no loss touches.
    assert at[higher].platform_revenue_fen == at[lower].platform_revenue_fen


@settings(max_examples=150, deadline=None)
@given(tier=tiers, cps_rates=st.lists(rates, min_size=2, max_size=2), funnel=funnels)
def test_a_higher_cps_rate_never_lowers_a_cps_products_revenue(tier, cps_rates, funnel):
    lower, higher = sorted(cps_rates)
    revenue = {}
    for cps in (lower, higher):
        overrides = {"xingyun_loan": {"settlement": {"cps_rate_bps": cps}, "funnel": funnel}}
        revenue[cps] = row(compare(CATALOGUE, scenario([segment(tier)], overrides)), "xingyun_loan")
    assert revenue[higher].platform_revenue_fen >= revenue[lower].platform_revenue_fen
    assert revenue[higher].rpm_platform_fen >= revenue[lower].rpm_platform_fen
    assert revenue[higher].group_contribution_fen >= revenue[lower].group_contribution_fen


@settings(max_examples=100, deadline=None)
@given(
    tier=st.one_of(st.none(), tiers),
    logged_in=st.booleans(),
    funnel=funnels,
    loss=rates,
    fee=st.integers(0, 1_000_000),
    discount=rates,
)
def test_a_product_with_zero_impressions_earns_zero(tier, logged_in, funnel, loss, fee, discount):
    overrides = {
        "inhouse_loan": {"funnel": funnel, "lending": {"annual_loss_bps": loss}},
        "haoyue_loan": {"funnel": funnel, "settlement": {"fee_fen": fee}},
        "xingyun_loan": {"funnel": funnel},
    }
    comparison = compare(CATALOGUE, scenario([segment(tier, 0, logged_in)], overrides, discount))
    assert comparison.rows
    for zero_row in comparison.rows:
        assert zero_row.impressions == 0
        assert (zero_row.clicks, zero_row.applications, zero_row.approvals, zero_row.loans) == (0, 0, 0, 0)
        assert zero_row.disbursed_fen == 0
        assert zero_row.platform_revenue_fen == 0
        assert zero_row.group_contribution_fen == 0


@settings(max_examples=150, deadline=None)
@given(tier=tiers, funnel=funnels, cps=rates, discount=rates)
def test_break_even_points_plugged_back_in_equal_the_best_referral(tier, funnel, cps, discount):
    products = scenario_products(
        CATALOGUE,
        scenario([segment(tier)], {"inhouse_loan": {"funnel": funnel}, "xingyun_loan": {"settlement": {"cps_rate_bps": cps}}}),
    )
    self_lent = products["inhouse_loan"]
    referral_fen = max(revenue_per_impression(p, tier).group_fen for pid, p in products.items() if pid != "inhouse_loan")
    loss = breakeven_annual_loss(self_lent, tier, referral_fen, discount)
    if loss is not None:
        assert 0 <= loss <= BPS
        assert self_contribution_at_loss(self_lent, tier, loss, discount) == referral_fen
    approval = breakeven_approval_rate(self_lent, tier, referral_fen, discount)
    if approval is not None:
        assert 0 < approval <= BPS
        at_full = revenue_per_impression(
            scenario_products(
                CATALOGUE,
                scenario([segment(tier)], {"inhouse_loan": {"funnel": {**funnel, "approval_rate_bps": BPS}}}),
            )["inhouse_loan"],
            tier,
            discount,
        ).group_fen
        assert at_full * approval / BPS == referral_fen


@settings(max_examples=100, deadline=None)
@given(tier=tiers, funnel=funnels)
def test_the_group_view_winner_earns_at_least_as_much_as_every_other_product(tier, funnel):
    comparison = compare(CATALOGUE, scenario([segment(tier)], {"inhouse_loan": {"funnel": funnel}}))
    summary = comparison.segments[0]
    best = max(r.group_contribution_fen for r in comparison.rows)
    assert row(comparison, summary.winner_group_view).group_contribution_fen == best
    best_platform = max(r.platform_revenue_fen for r in comparison.rows)
    assert row(comparison, summary.winner_platform_view).platform_revenue_fen == best_platform
    assert summary.winner_margin_rpm_fen >= 0
