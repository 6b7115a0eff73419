"""The self-lending versus referral comparison, against hand-worked numbers.

The catalogue is tests/unit/finance_catalogue.toml; its header works out the
revenue per impression of every product, which the tests below build on.
"""
import json
import tomllib
from fractions import Fraction
from pathlib import Path

import pytest

from wallet_market.domain.catalogue import Catalogue
from wallet_market.domain.economics import round_half_up
from wallet_market.domain.finance import (
    ROW_FIELDS,
    SEGMENT_FIELDS,
    ScenarioError,
    breakeven_annual_loss,
    compare,
    discount_factor,
    parse_scenario,
    scenario_products,
    self_contribution_at_loss,
)

CATALOGUE_FILE = Path(__file__).with_name("finance_catalogue.toml")

PRIME_A = {"name": "prime_A", "risk_tier": "A", "logged_in": True, "impressions": 1_000_000}
RISKY_D = {"name": "risky_D", "risk_tier": "D", "logged_in": True, "impressions": 400_000}
VISITORS = {"name": "visitors", "logged_in": False, "impressions": 200_000}
DECLINED_D = {"name": "declined_D", "risk_tier": "D", "logged_in": True, "impressions": 100_000, "in_house_declined": True}


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue.from_dict(tomllib.loads(CATALOGUE_FILE.read_text(encoding="utf-8")))


def run(catalogue, *segments, overrides=None, products=None, discount_rate_bps=0):
    data = {"name": "test", "segments": list(segments), "discount_rate_bps": discount_rate_bps}
    if overrides:
        data["overrides"] = overrides
    if products:
        data["products"] = products
    return compare(catalogue, parse_scenario(data, catalogue))


def rows_by_product(comparison, segment):
    return {row.product_id: row.to_dict() for row in comparison.rows_for(segment)}


def test_prime_segment_rows_match_the_hand_worked_funnel_and_revenue(catalogue):
    rows = rows_by_product(run(catalogue, PRIME_A), "prime_A")
    assert rows["inhouse_loan"] == {
        "segment": "prime_A",
        "product_id": "inhouse_loan",
        "owner": "in_house",
        "settlement": "self",
        "impressions": 1_000_000,
        "clicks": 50_000,  # 1,000,000 × 5%
        "applications": 25_000,  # × 50%
        "approvals": 10_000,  # × 40% (tier A)
        "loans": 1_000,  # × 10% draw
        "disbursed_fen": 800_000_000,  # 1,000 × 8,000 RMB
        "platform_revenue_fen": 8_000_000,  # 1% transfer price on 8,000,000 RMB
        "group_contribution_fen": 32_500_000,  # 1,000 loans × 325 RMB
        "rpm_platform_fen": 8_000,  # 8 fen per impression
        "rpm_group_fen": 32_500,  # 32.5 fen per impression
    }
    assert rows["xingyun_loan"] == {
        "segment": "prime_A",
        "product_id": "xingyun_loan",
        "owner": "xingyun",
        "settlement": "cps",
        "impressions": 1_000_000,
        "clicks": 40_000,  # × 4%
        "applications": 20_000,  # × 50%
        "approvals": 5_000,  # × 25%
        "loans": 1_000,  # × 20% draw
        "disbursed_fen": 1_300_000_000,  # 1,000 × 13,000 RMB
        "platform_revenue_fen": 26_000_000,  # 80% new × 13,000,000 RMB × 2.5%
        "group_contribution_fen": 26_000_000,  # a payout is the same in both views
        "rpm_platform_fen": 26_000,
        "rpm_group_fen": 26_000,
    }
    assert rows["haoyue_loan"] == {
        "segment": "prime_A",
        "product_id": "haoyue_loan",
        "owner": "haoyue",
        "settlement": "per_credit_line",
        "impressions": 1_000_000,
        "clicks": 20_000,  # × 2%
        "applications": 8_000,  # × 40%
        "approvals": 2_000,  # × 25%
        "loans": 600,  # × 30% draw
        "disbursed_fen": 300_000_000,  # 600 × 5,000 RMB
        "platform_revenue_fen": 20_000_000,  # 50% new × 2,000 credit lines × 200 RMB
        "group_contribution_fen": 20_000_000,
        "rpm_platform_fen": 20_000,
        "rpm_group_fen": 20_000,
    }
    assert rows["donghai_card"] == {
        "segment": "prime_A",
        "product_id": "donghai_card",
        "owner": "donghai",
        "settlement": "per_card",
        "impressions": 1_000_000,
        "clicks": 10_000,  # × 1%
        "applications": 2_000,  # × 20%
        "approvals": 1_000,  # × 50%
        "loans": 0,
        "disbursed_fen": 0,
        "platform_revenue_fen": 10_000_000,  # 1,000 cards × 100 RMB
        "group_contribution_fen": 10_000_000,
        "rpm_platform_fen": 10_000,
        "rpm_group_fen": 10_000,
    }


def test_one_in_house_loan_contributes_the_325_rmb_of_the_design_example(catalogue):
    row = rows_by_product(run(catalogue, PRIME_A), "prime_A")["inhouse_loan"]
    # 8,000 RMB over 12 months at 18% APR, 3% funding, 4% loss, 2% opex, 1.5% capital:
    # 8,000 × 13/24 × 7.5% = 325 RMB = 32,500 fen per loan.
    assert row["group_contribution_fen"] / row["loans"] == 32_500


def test_prime_segment_self_lending_wins_for_the_group_and_the_referral_for_the_platform(catalogue):
    summary = run(catalogue, PRIME_A).segment("prime_A")
    assert summary.best_referral_product_id == "xingyun_loan"
    assert summary.self_product_id == "inhouse_loan"
    assert summary.winner_group_view == "inhouse_loan"  # 325 RMB > 260 RMB per 1,000 impressions
    assert summary.winner_platform_view == "xingyun_loan"  # 260 RMB > 80 RMB transfer price
    assert summary.best_referral_rpm_fen == 26_000
    assert summary.self_rpm_group_fen == 32_500
    assert summary.self_rpm_platform_fen == 8_000
    assert summary.self_margin_over_referral_rpm_fen == 6_500  # 32,500 − 26,000
    assert summary.runner_up_group_view == "xingyun_loan"
    # Contribution per impression per bps of margin: 0.001 × 800,000 × 13/24 / 10,000 = 13/300 fen.
    # 26 fen / (13/300) = 600 bps of margin needed; margin 750 at 4% loss, so loss may rise to 5.5%.
    assert summary.breakeven_annual_loss_bps == 550
    # Contribution is proportional to approval: 40% × 26 / 32.5 = 32%.
    assert summary.breakeven_approval_rate_bps == 3_200


def test_break_even_loss_plugged_back_in_makes_self_lending_equal_the_best_referral(catalogue):
    comparison = run(catalogue, PRIME_A, overrides={"inhouse_loan": {"lending": {"annual_loss_bps": {"A": 550}}}})
    rows = rows_by_product(comparison, "prime_A")
    assert rows["inhouse_loan"]["rpm_group_fen"] == rows["xingyun_loan"]["rpm_group_fen"] == 26_000
    assert rows["inhouse_loan"]["group_contribution_fen"] == rows["xingyun_loan"]["group_contribution_fen"]
    # At an exact tie the referral wins: cash now, no credit risk.
    assert comparison.segment("prime_A").winner_group_view == "xingyun_loan"
    one_bps_less = run(catalogue, PRIME_A, overrides={"inhouse_loan": {"lending": {"annual_loss_bps": {"A": 549}}}})
    assert one_bps_less.segment("prime_A").winner_group_view == "inhouse_loan"


def test_break_even_approval_plugged_back_in_makes_self_lending_equal_the_best_referral(catalogue):
    comparison = run(catalogue, PRIME_A, overrides={"inhouse_loan": {"funnel": {"approval_rate_bps": {"A": 3_200}}}})
    rows = rows_by_product(comparison, "prime_A")
    assert rows["inhouse_loan"]["group_contribution_fen"] == rows["xingyun_loan"]["group_contribution_fen"] == 26_000_000


def test_risky_tier_rows_and_no_break_even_where_self_lending_cannot_win(catalogue):
    comparison = run(catalogue, RISKY_D)
    rows = rows_by_product(comparison, "risky_D")
    assert set(rows) == {"inhouse_loan", "xingyun_loan", "haoyue_loan"}  # the card serves tiers A and B only
    assert rows["inhouse_loan"] == {
        "segment": "risky_D",
        "product_id": "inhouse_loan",
        "owner": "in_house",
        "settlement": "self",
        "impressions": 400_000,
        "clicks": 20_000,
        "applications": 10_000,
        "approvals": 2_000,  # × 20% (tier D)
        "loans": 200,
        "disbursed_fen": 160_000_000,
        "platform_revenue_fen": 1_600_000,  # 1% of 1,600,000 RMB
        # margin 18 − 3 − 10 − 2 − 1.5 = 1.5%: 8,000 × 13/24 × 1.5% = 65 RMB a loan × 200
        "group_contribution_fen": 1_300_000,
        "rpm_platform_fen": 4_000,
        "rpm_group_fen": 3_250,
    }
    assert rows["xingyun_loan"]["platform_revenue_fen"] == 10_400_000  # 400,000 × 26 fen
    summary = comparison.segment("risky_D")
    assert summary.winner_group_view == summary.winner_platform_view == "xingyun_loan"
    assert summary.runner_up_group_view == "haoyue_loan"
    assert summary.winner_margin_rpm_fen == 6_000  # 26,000 − 20,000
    # Per bps of margin: 0.0005 × 800,000 × 13/24 / 10,000 = 13/600 fen; 26 fen needs 1,200 bps,
    # which would take a loss of 1,000 + 150 − 1,200 = −50 bps: none.
    assert summary.breakeven_annual_loss_bps is None
    # 20% × 26 / 3.25 = 160% approval: none.
    assert summary.breakeven_approval_rate_bps is None


def test_a_cheaper_referral_gives_the_risky_tier_a_break_even(catalogue):
    cheaper = {"xingyun_loan": {"settlement": {"cps_rate_bps": 50}}}
    summary = run(catalogue, RISKY_D, overrides=cheaper).segment("risky_D")
    # xingyun now earns 80% × 1,300 fen disbursed × 0.5% = 5.2 fen per impression, haoyue still 20.
    assert summary.best_referral_product_id == "haoyue_loan"
    # 20 fen / (13/600) = 923 1/13 bps of margin: loss 1,000 + 150 − 923.08 = 226.92 → 227 bps.
    assert summary.breakeven_annual_loss_bps == 227
    # 20% × 20 / 3.25 = 123%: none.
    assert summary.breakeven_approval_rate_bps is None


def test_exact_break_even_loss_plugged_back_in_gives_the_referral_revenue(catalogue):
    product = scenario_products(catalogue, parse_scenario({"name": "t", "segments": [RISKY_D]}))["inhouse_loan"]
    exact = breakeven_annual_loss(product, "D", Fraction(20))
    assert exact == Fraction(1150) - Fraction(20) * 600 / 13
    assert self_contribution_at_loss(product, "D", exact) == 20


def test_no_break_even_when_self_lending_makes_no_loans(catalogue):
    summary = run(catalogue, PRIME_A, overrides={"inhouse_loan": {"funnel": {"draw_rate_bps": 0}}}).segment("prime_A")
    assert summary.self_rpm_group_fen == 0
    assert summary.breakeven_annual_loss_bps is None
    assert summary.breakeven_approval_rate_bps is None


def test_visitors_compare_only_products_without_login_and_use_the_tier_average(catalogue):
    comparison = run(catalogue, VISITORS)
    rows = rows_by_product(comparison, "visitors")
    assert list(rows) == ["inhouse_loan"]
    # No tier: approval is the mean of A and D, (40% + 20%) / 2 = 30%; loss (4% + 10%) / 2 = 7%.
    # Loans 200,000 × 5% × 50% × 30% × 10% = 150; margin 4.5%: 8,000 × 13/24 × 4.5% = 195 RMB a loan.
    assert rows["inhouse_loan"]["approvals"] == 1_500
    assert rows["inhouse_loan"]["loans"] == 150
    assert rows["inhouse_loan"]["group_contribution_fen"] == 2_925_000
    assert rows["inhouse_loan"]["rpm_group_fen"] == 14_625
    summary = comparison.segment("visitors")
    assert summary.best_referral_product_id is None
    assert summary.winner_group_view == summary.winner_platform_view == "inhouse_loan"
    assert summary.breakeven_annual_loss_bps is None
    assert not [entry for entry in comparison.sensitivity if entry.segment == "visitors"]


def test_declined_users_have_no_in_house_row(catalogue):
    comparison = run(catalogue, DECLINED_D)
    rows = rows_by_product(comparison, "declined_D")
    assert set(rows) == {"xingyun_loan", "haoyue_loan"}
    assert rows["xingyun_loan"]["platform_revenue_fen"] == 2_600_000  # 100,000 × 26 fen
    summary = comparison.segment("declined_D")
    assert summary.self_product_id is None
    assert summary.best_referral_product_id == "xingyun_loan"
    assert summary.breakeven_annual_loss_bps is None
    assert summary.breakeven_approval_rate_bps is None


def test_counts_and_money_round_half_up_once_from_exact_values(catalogue):
    comparison = run(catalogue, {"name": "small", "risk_tier": "A", "logged_in": True, "impressions": 30})
    rows = rows_by_product(comparison, "small")
    # xingyun: 30 × 4% = 1.2 clicks → 1; 0.6 applications → 1; 0.15 approvals → 0; 0.03 loans → 0;
    # disbursed 0.03 × 1,300,000 = 39,000 fen although rounded loans are 0; revenue 30 × 26 = 780 fen.
    assert rows["xingyun_loan"]["clicks"] == 1
    assert rows["xingyun_loan"]["applications"] == 1
    assert rows["xingyun_loan"]["approvals"] == 0
    assert rows["xingyun_loan"]["disbursed_fen"] == 39_000
    assert rows["xingyun_loan"]["platform_revenue_fen"] == 780
    # in-house: 30 × 5% = 1.5 clicks → 2 (half up); 30 × 32.5 = 975 fen contribution.
    assert rows["inhouse_loan"]["clicks"] == 2
    assert rows["inhouse_loan"]["group_contribution_fen"] == 975


def test_sensitivity_of_the_winner_margin_to_each_parameter(catalogue):
    comparison = run(catalogue, PRIME_A)
    entries = {(e.product_id, e.parameter): e for e in comparison.sensitivity if e.segment == "prime_A"}
    assert {(e.product_id, e.role) for e in entries.values()} == {
        ("inhouse_loan", "winner"),
        ("xingyun_loan", "runner_up"),
    }
    assert {p for (pid, p) in entries if pid == "inhouse_loan"} == {
        "ctr", "apply_rate", "approval_rate", "draw_rate", "avg_loan",
        "apr", "cost_of_funds", "annual_loss", "opex", "capital_charge",
    }  # fmt: skip
    assert {p for (pid, p) in entries if pid == "xingyun_loan"} == {
        "ctr", "apply_rate", "approval_rate", "draw_rate", "avg_loan", "new_customer_rate", "cps_rate",
    }  # fmt: skip

    loss = entries[("inhouse_loan", "annual_loss")]
    # Loss 4% ± 20% = 3.2% / 4.8%: margin 8.3% / 6.7% × 13/300 fen = 35.967 / 29.033 fen,
    # minus xingyun's 26 fen: 9.967 / 3.033 fen per impression.
    assert (loss.base_value, loss.low_value, loss.high_value) == (400, 320, 480)
    assert (loss.margin_low_rpm_fen, loss.margin_base_rpm_fen, loss.margin_high_rpm_fen) == (9_967, 6_500, 3_033)
    assert not loss.flips

    apr = entries[("inhouse_loan", "apr")]
    # APR 14.4%: margin 3.9% → 16.9 fen, xingyun wins by 9.1 fen; APR 21.6%: margin 11.1% → 48.1 fen.
    assert (apr.margin_low_rpm_fen, apr.margin_high_rpm_fen) == (-9_100, 22_100)
    assert (apr.winner_low, apr.winner_high) == ("xingyun_loan", "inhouse_loan")
    assert apr.flips

    approval = entries[("inhouse_loan", "approval_rate")]
    # 40% − 20% = 32%, exactly the break-even approval: a tie, which the referral takes.
    assert approval.margin_low_rpm_fen == 0
    assert approval.winner_low == "xingyun_loan"
    assert approval.margin_high_rpm_fen == 13_000  # 39 − 26 fen

    cps = entries[("xingyun_loan", "cps_rate")]
    # xingyun at 2% earns 20.8 fen, beating haoyue's 20: margin 32.5 − 20.8 = 11.7 fen.
    # At 3% it earns 31.2 fen: margin 1.3 fen, the in-house loan still wins.
    assert (cps.low_value, cps.high_value) == (200, 300)
    assert (cps.margin_low_rpm_fen, cps.margin_high_rpm_fen) == (11_700, 1_300)
    assert not cps.flips


def test_discounting_spreads_the_contribution_over_the_term_and_leaves_payouts_alone(catalogue):
    comparison = run(catalogue, PRIME_A, discount_rate_bps=1_200)
    rows = rows_by_product(comparison, "prime_A")
    # Twelve equal monthly parts discounted at 1% a month: the annuity factor (1 − 1.01^−12) / (0.01 × 12).
    monthly = Fraction(101, 100)
    annuity = (1 - monthly**-12) / (Fraction(1, 100) * 12)
    assert discount_factor(12, 1_200) == annuity
    assert rows["inhouse_loan"]["group_contribution_fen"] == round_half_up(32_500_000 * annuity)
    assert 30_480_000 < rows["inhouse_loan"]["group_contribution_fen"] < 30_490_000  # ≈ 0.93792 × 325,000 RMB
    assert rows["inhouse_loan"]["platform_revenue_fen"] == 8_000_000
    assert rows["xingyun_loan"]["group_contribution_fen"] == 26_000_000
    # Break-even margin grows by the factor: 600 / 0.93792 = 639.7 bps, so loss up to 750 + 400 − 639.7 = 510.3.
    assert comparison.segment("prime_A").breakeven_annual_loss_bps == 510


def test_a_scenario_may_restrict_and_order_the_products(catalogue):
    comparison = run(catalogue, PRIME_A, products=["xingyun_loan", "inhouse_loan"])
    assert [row.product_id for row in comparison.rows] == ["xingyun_loan", "inhouse_loan"]
    with pytest.raises(ScenarioError) as error:
        run(catalogue, PRIME_A, products=["xingyun_loan", "nanfeng_card"])
    assert error.value.errors == {"products[1]": ["unknown product nanfeng_card"]}


def test_the_answer_carries_the_contract_fields_as_json(catalogue):
    answer = json.loads(json.dumps(run(catalogue, PRIME_A, RISKY_D).to_dict()))
    assert all(list(row)[: len(ROW_FIELDS)] == list(ROW_FIELDS) for row in answer["rows"])
    assert all(set(SEGMENT_FIELDS) <= set(segment) for segment in answer["segments"])
    risky = next(s for s in answer["segments"] if s["segment"] == "risky_D")
    assert risky["breakeven_annual_loss_bps"] is None
    assert answer["scenario"] == "test"
    assert answer["sensitivity"][0]["segment"] == "prime_A"
