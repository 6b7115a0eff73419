"""Every formula of DESIGN §5, checked against values computed by hand."""
from fractions import Fraction

from wallet_market.domain.catalogue import Funnel, Lending, Product
from wallet_market.domain.economics import (
    GROUP_VIEW,
    PLATFORM_VIEW,
    approvals_per_impression,
    expected_revenue_per_impression,
    loan_contribution,
    loans_per_impression,
    net_margin_bps,
    round_half_up,
    rpm_fen,
    to_micro_fen,
)

from tests.catalogue_builders import product

FUNNEL = Funnel(ctr_bps=300, apply_rate_bps=2500, approval_rate_bps=3500, draw_rate_bps=5000, avg_loan_fen=800_000)
LENDING = Lending(apr_bps=1800, cost_of_funds_bps=300, annual_loss_bps=250, opex_bps=200, capital_charge_bps=150)


def make(settlement: dict, funnel: dict, **over) -> Product:
    return Product.from_dict(product("x", settlement=settlement, funnel=funnel, **over))


def test_approvals_per_impression_multiplies_ctr_weight_apply_and_approval():
    # C = 3% × 100% × 25% × 35% = 0.2625% = 21/8000
    assert approvals_per_impression(FUNNEL, "A") == Fraction(21, 8000)
    # half the position weight, half the approvals: 21/16000
    assert approvals_per_impression(FUNNEL, "A", position_weight_bps=5000) == Fraction(21, 16000)


def test_loans_per_impression_applies_the_draw_rate():
    # D = C × 50% = 21/8000 / 2 = 21/16000 = 0.0013125
    assert loans_per_impression(FUNNEL, "A") == Fraction(21, 16000)


def test_cps_pays_a_share_of_the_disbursed_amount_for_new_customers():
    # 70% new × 4% ctr × 30% apply × 45% approval × 60% draw × 20,000 RMB × 3%
    # = 0.002268 loans × 2,000,000 fen × 0.03 × 0.7 = 136.08 fen
    p = make(
        {"model": "cps", "cps_rate_bps": 300},
        {"ctr_bps": 400, "apply_rate_bps": 3000, "approval_rate_bps": 4500, "draw_rate_bps": 6000,
         "new_customer_rate_bps": 7000, "avg_loan_fen": 2_000_000},
    )
    revenue = expected_revenue_per_impression(p, "A")
    assert revenue.platform_fen == Fraction(13608, 100)
    assert revenue.group_fen == revenue.platform_fen  # a referral payout is the same in both views


def test_per_credit_line_pays_a_fee_per_approval_of_a_new_customer():
    # 60% new × 3% × 25% × 30% = 0.00135 new approvals × 150 RMB (15,000 fen) = 20.25 fen
    p = make(
        {"model": "per_credit_line", "fee_fen": 15_000},
        {"ctr_bps": 300, "apply_rate_bps": 2500, "approval_rate_bps": 3000, "draw_rate_bps": 4000,
         "new_customer_rate_bps": 6000},
    )
    assert expected_revenue_per_impression(p, "B").platform_fen == Fraction(2025, 100)


def test_per_application_ignores_approval_and_draw():
    # 50% new × 2% ctr × 20% apply × 50 RMB = 0.002 × 5,000 fen = 10 fen
    p = make(
        {"model": "per_application", "fee_fen": 5_000},
        {"ctr_bps": 200, "apply_rate_bps": 2000, "approval_rate_bps": 100, "draw_rate_bps": 100,
         "new_customer_rate_bps": 5000},
    )
    assert expected_revenue_per_impression(p, "A").platform_fen == 10


def test_per_click_pays_every_click_at_the_slot_weight():
    # 2.5% ctr × 60% weight × 1 RMB = 0.015 × 100 fen = 1.5 fen; new-customer rate plays no part
    p = make(
        {"model": "per_click", "fee_fen": 100},
        {"ctr_bps": 250, "apply_rate_bps": 2000, "approval_rate_bps": 3000, "new_customer_rate_bps": 1000},
    )
    assert expected_revenue_per_impression(p, "A", position_weight_bps=6000).platform_fen == Fraction(3, 2)


def test_per_card_pays_a_fee_per_approved_card_of_a_new_customer():
    # 80% new × 2.5% × 20% × 40% × 150 RMB = 0.0016 × 15,000 fen = 24 fen
    p = make(
        {"model": "per_card", "fee_fen": 15_000},
        {"ctr_bps": 250, "apply_rate_bps": 2000, "approval_rate_bps": 4000, "new_customer_rate_bps": 8000},
        kind="credit_card",
    )
    assert expected_revenue_per_impression(p, "A").platform_fen == 24


def self_product(**lending_over) -> Product:
    lending = {"apr_bps": 1800, "cost_of_funds_bps": 300, "annual_loss_bps": 250, "opex_bps": 200,
               "capital_charge_bps": 150, **lending_over}
    return make(
        {"model": "self", "transfer_price_bps": 100},
        {"ctr_bps": 300, "apply_rate_bps": 2500, "approval_rate_bps": 3500, "draw_rate_bps": 5000,
         "avg_loan_fen": 800_000, "term_months": 12},
        owner="in_house",
        lending=lending,
    )


def test_self_lending_platform_view_books_the_transfer_price():
    # D = 0.0013125 loans × 8,000 RMB × 1% transfer price = 0.0013125 × 800,000 × 0.01 = 10.5 fen
    revenue = expected_revenue_per_impression(self_product(), "A")
    assert revenue.in_view(PLATFORM_VIEW) == Fraction(21, 2)


def test_self_lending_group_view_books_the_loan_contribution():
    # contribution = 8,000 RMB × 13/24 × (18 − 3 − 2.5 − 2 − 1.5)% = 800,000 × 13/24 × 0.09 = 39,000 fen
    # × 0.0013125 loans per impression = 51.1875 fen
    revenue = expected_revenue_per_impression(self_product(), "A")
    assert revenue.in_view(GROUP_VIEW) == Fraction(511875, 10000)
    assert to_micro_fen(revenue.group_fen) == 51_187_500


def test_the_325_rmb_example_of_the_design():
    # 8,000 RMB over 12 months at 18% APR, 3% funding, 4% loss, 2% opex, 1.5% capital:
    # 8,000 × 13/24 × 7.5% = 325 RMB = 32,500 fen
    lending = Lending(apr_bps=1800, cost_of_funds_bps=300, annual_loss_bps=400, opex_bps=200, capital_charge_bps=150)
    assert net_margin_bps(lending, "B") == 750
    assert loan_contribution(800_000, 12, lending, "B") == 32_500


def test_approval_rate_by_risk_tier():
    funnel = Funnel(ctr_bps=1000, apply_rate_bps=5000, approval_rate_bps={"A": 4000, "D": 1000}, draw_rate_bps=10000)
    # A: 10% × 50% × 40% = 2%; D: 10% × 50% × 10% = 0.5%
    assert approvals_per_impression(funnel, "A") == Fraction(2, 100)
    assert approvals_per_impression(funnel, "D") == Fraction(5, 1000)
    # unknown tier (a visitor): the mean of the tiers, (40% + 10%) / 2 = 25% → 1.25%
    assert approvals_per_impression(funnel, None) == Fraction(125, 10000)
    with_default = Funnel(ctr_bps=1000, apply_rate_bps=5000, approval_rate_bps={"A": 4000, "default": 2000},
                          draw_rate_bps=10000)
    # a "default" entry wins over the mean: 10% × 50% × 20% = 1%
    assert approvals_per_impression(with_default, "C") == Fraction(1, 100)


def test_annual_loss_by_risk_tier_changes_the_contribution():
    p = self_product(annual_loss_bps={"A": 250, "D": 800})
    # D: net margin 18 − 3 − 8 − 2 − 1.5 = 3.5%; 800,000 × 13/24 × 0.035 = 45,500/3 fen per loan
    assert loan_contribution(800_000, 12, p.lending, "D") == Fraction(45500, 3)
    # × 0.0013125 loans = 19.90625 fen, against 51.1875 fen for tier A
    assert expected_revenue_per_impression(p, "D").group_fen == Fraction(45500, 3) * Fraction(21, 16000)
    assert to_micro_fen(expected_revenue_per_impression(p, "D").group_fen) == 19_906_250


def test_a_loss_making_tier_has_a_negative_group_contribution():
    # loss 14%: net margin 18 − 3 − 14 − 2 − 1.5 = −2.5% → 800,000 × 13/24 × −0.025 = −10,833.33 fen
    p = self_product(annual_loss_bps=1400)
    assert loan_contribution(800_000, 12, p.lending, "D") == Fraction(-32500, 3)
    assert expected_revenue_per_impression(p, "D").group_fen < 0
    # the platform still books its transfer price
    assert expected_revenue_per_impression(p, "D").platform_fen == Fraction(21, 2)


def test_round_half_up_rounds_halves_away_from_zero():
    assert round_half_up(Fraction(5, 2)) == 3
    assert round_half_up(Fraction(-5, 2)) == -3
    assert round_half_up(Fraction(1, 2)) == 1
    assert round_half_up(Fraction(-3, 2)) == -2
    assert round_half_up(Fraction(24999, 10000)) == 2
    assert round_half_up(Fraction(-24999, 10000)) == -2
    assert round_half_up(7) == 7


def test_micro_fen_and_rpm_rounding():
    assert to_micro_fen(Fraction(1, 3)) == 333_333  # 0.3333… fen
    assert to_micro_fen(Fraction(1, 2_000_000)) == 1  # half a micro-fen rounds up
    # 51.1875 fen per impression → 51,187.5 fen per thousand → 51,188
    assert rpm_fen(Fraction(511875, 10000)) == 51_188
