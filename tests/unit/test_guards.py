"""The compliance guards of DESIGN §6: refused when written, never placed (even when pinned)."""
from datetime import timedelta

from wallet_market.domain.catalogue import Partner, Product
from wallet_market.domain.guards import (
    Violation,
    catalogue_violations,
    partner_placeable,
    product_violations,
)
from wallet_market.domain.placement import PlacementPolicy

from tests.catalogue_builders import (
    TODAY,
    catalogue,
    layout,
    page,
    partner,
    product,
    slot,
    slots_of,
    user,
)


def guards_of(violations: list[Violation]) -> set[tuple[str, str]]:
    return {(v.field, v.guard) for v in violations}


def pinned_top(bad: dict, **cat_over):
    """A page whose top slot pins ``bad`` and whose second slot is free; a good product competes."""
    return catalogue(
        [bad, product("good", owner="p1", fee_fen=100)],
        pages=[page("home", [slot("top", 10000), slot("second", 5000)])],
        rules=[{"rule_id": "pin_bad", "action": "pin", "product_id": bad["product_id"], "slot_id": "top"}],
        **cat_over,
    )


def test_a_valid_product_has_no_violations():
    assert product_violations(Product.from_dict(product("ok")), 2400) == []


# -- guard 1 -------------------------------------------------------------------


def test_guard_1_apr_above_cap_is_rejected():
    over = Product.from_dict(product("x", apr_max_bps=3600))
    assert ("apr_max_bps", "apr_cap") in guards_of(product_violations(over, 2400))
    # exactly at the cap is fine
    assert product_violations(Product.from_dict(product("x", apr_max_bps=2400)), 2400) == []
    # a deployment may configure a lower cap...
    assert ("apr_max_bps", "apr_cap") in guards_of(product_violations(Product.from_dict(product("x")), 1800))
    # ...but never a cap above 24%
    assert ("apr_max_bps", "apr_cap") in guards_of(
        product_violations(Product.from_dict(product("x", apr_max_bps=3000)), 3600)
    )
    cat = catalogue([product("x", apr_max_bps=3600)])
    assert ("products[x].apr_max_bps", "apr_cap") in guards_of(catalogue_violations(cat, 2400))


def test_guard_1_in_house_lending_apr_above_cap_is_rejected():
    self_lent = product(
        "inhouse", owner="in_house",
        settlement={"model": "self", "transfer_price_bps": 100},
        lending={"apr_bps": 2600, "cost_of_funds_bps": 300, "annual_loss_bps": 400, "opex_bps": 200,
                 "capital_charge_bps": 150},
    )
    assert ("lending.apr_bps", "apr_cap") in guards_of(product_violations(Product.from_dict(self_lent), 2400))


def test_guard_1_apr_above_cap_is_not_placed_even_when_pinned():
    decision = layout(pinned_top(product("usurious", fee_fen=9999, apr_max_bps=3600)), user())
    assert "usurious" not in slots_of(decision).values()
    assert slots_of(decision)["top"] == "good"
    explanation = decision.explanation_for("usurious")
    assert explanation.outcome == "filtered"
    assert explanation.filtered_by == "guard:apr_cap"
    assert any("pin rule pin_bad ignored" in note for note in explanation.notes)


def test_guard_1_a_lower_configured_cap_filters_at_placement():
    cat = catalogue([product("a", fee_fen=500, apr_max_bps=2400), product("b", fee_fen=100, apr_max_bps=1500)])
    decision = layout(cat, user(), policy=PlacementPolicy(apr_cap_bps=1800))
    assert slots_of(decision) == {"top": "b"}
    assert decision.explanation_for("a").filtered_by == "guard:apr_cap"


# -- guard 2 -------------------------------------------------------------------


def test_guard_2_short_term_loan_is_rejected():
    for days in (7, 14, 60):
        short = Product.from_dict(product("x", term_min_days=days, term_max_days=90))
        assert ("term_min_days", "short_term_loan") in guards_of(product_violations(short, 2400)), days
    assert product_violations(Product.from_dict(product("x", term_min_days=61)), 2400) == []
    # the ban is on loans; a card's instalment term is not a loan term
    card = Product.from_dict(product("c", kind="credit_card", term_min_days=30))
    assert product_violations(card, 2400) == []


def test_guard_2_short_term_loan_is_not_placed_even_when_pinned():
    decision = layout(pinned_top(product("loan714", fee_fen=9999, term_min_days=7, term_max_days=14)), user())
    assert "loan714" not in slots_of(decision).values()
    assert decision.explanation_for("loan714").filtered_by == "guard:short_term_loan"


# -- guard 3 -------------------------------------------------------------------


def test_guard_3_partner_off_whitelist_paused_or_unlicensed_is_not_placeable():
    base = Partner.from_dict(partner("p1", licence_expires_on=TODAY.isoformat()))
    assert partner_placeable(base, TODAY) is None  # licensed through today
    assert partner_placeable(base, TODAY + timedelta(days=1)) == "licence_expired"
    assert partner_placeable(Partner.from_dict(partner("p1", whitelisted=False)), TODAY) == "not_whitelisted"
    assert partner_placeable(Partner.from_dict(partner("p1", status="paused")), TODAY) == "paused"


def test_guard_3_an_expired_licence_may_be_stored():
    cat = catalogue([product("x")], partners=[partner("p1", licence_expires_on="2020-01-01")])
    assert catalogue_violations(cat, 2400) == []


def test_guard_3_products_of_a_blocked_partner_are_not_placed_even_when_pinned():
    for over, reason in (
        ({"licence_expires_on": (TODAY - timedelta(days=1)).isoformat()}, "licence_expired"),
        ({"status": "paused"}, "paused"),
        ({"whitelisted": False}, "not_whitelisted"),
    ):
        cat = pinned_top(
            product("blocked", owner="p2", fee_fen=9999),
            partners=[partner("p1"), partner("p2", **over)],
        )
        decision = layout(cat, user())
        assert slots_of(decision) == {"top": "good"}, reason
        assert decision.explanation_for("blocked").filtered_by == f"guard:partner_not_placeable:{reason}"


# -- guard 4 -------------------------------------------------------------------


def test_guard_4_card_without_disclosure_is_rejected():
    for name in ("lender_name", "licence_id", "disclosure", "title"):
        bare = Product.from_dict(product("x", **{name: "  "}))
        assert (name, "card_disclosure") in guards_of(product_violations(bare, 2400)), name
    no_term = Product.from_dict(product("x", term_min_days=365, term_max_days=180))
    assert ("term_max_days", "card_disclosure") in guards_of(product_violations(no_term, 2400))
    no_apr = Product.from_dict(product("x", apr_min_bps=2000, apr_max_bps=1000))
    assert ("apr_min_bps", "card_disclosure") in guards_of(product_violations(no_apr, 2400))


def test_guard_4_no_rate_more_prominent_than_the_apr():
    for field, text in (
        ("promo", "日利率低至0.02%"),
        ("promo", "日息万分之五"),
        ("promo", "月息0.8"),
        ("promo", "低至3‰"),
        ("title", "Daily rate from 0.03"),
        ("title", "monthly rate 1.5"),
        ("promo", "年化利率低至7.2%"),
    ):
        p = Product.from_dict(product("x", **{field: text}))
        assert (field, "card_disclosure") in guards_of(product_violations(p, 2400)), text
    # a promotion without a rate of its own is fine
    for text in ("最高可借30万元，新用户7天免息", "审批快，最快当天到账", "7-day interest-free for new users"):
        assert product_violations(Product.from_dict(product("x", promo=text)), 2400) == [], text


def test_guard_4_the_card_shows_lender_licence_apr_term_and_disclosure():
    card = Product.from_dict(product("x", owner="p1", apr_min_bps=720, apr_max_bps=2400)).card()
    assert card["lender_name"] == "p1 金融有限公司"
    assert card["licence_id"] == "LIC-p1"
    assert (card["apr_min_bps"], card["apr_max_bps"]) == (720, 2400)
    assert card["apr_text"] == "年化利率(单利) 7.2%–24%"
    assert (card["term_min_days"], card["term_max_days"]) == (90, 360)
    assert card["disclosure"]


def test_guard_4_card_with_a_rate_in_its_promo_is_not_placed_even_when_pinned():
    decision = layout(pinned_top(product("loud", fee_fen=9999, promo="日息低至万分之二")), user())
    assert "loud" not in slots_of(decision).values()
    assert decision.explanation_for("loud").filtered_by == "guard:card_disclosure"


# -- guard 7 -------------------------------------------------------------------


def test_guard_7_personalisation_off_means_no_profile_driven_ranking():
    cat = catalogue(
        [
            product("cheap", fee_fen=100),
            product("rich", fee_fen=900),
            # per approved credit line of 250 RMB: 10% ctr × 50% apply × approval (A 40%, D 10%)
            # = 500 fen for tier A, 125 fen for D, and 312.5 fen for an unknown tier (mean approval 25%)
            product("tier_a_only", eligibility={"risk_tiers": ["A"]},
                    settlement={"model": "per_credit_line", "fee_fen": 25_000},
                    funnel={"ctr_bps": 1000, "apply_rate_bps": 5000, "approval_rate_bps": {"A": 4000, "D": 1000}}),
        ],
        pages=[page("home", [slot("top", 10000), slot("second", 5000), slot("third", 2000)],
                    editorial_order=["cheap", "tier_a_only", "rich"])],
        rules=[
            {"rule_id": "boost_cheap_for_d", "action": "boost", "product_id": "cheap", "factor_bps": 100000,
             "condition": {"risk_tier": ["D"]}},
            {"rule_id": "drop_rich_arm_b", "action": "exclude", "product_id": "rich",
             "condition": {"experiment_arm": ["b"]}},
            # payout-driven rules for everyone: a boost, and a floor of 50 fen per impression
            {"rule_id": "push_rich", "action": "boost", "product_id": "rich", "factor_bps": 20000},
            {"rule_id": "min_50_fen", "action": "floor", "floor_rpm_fen": 50_000},
        ],
    )
    layouts = set()
    for tier in ("A", "D", None):
        for decision_status in ("none", "approved"):
            who = user(risk_tier=tier, personalized=False, in_house_decision=decision_status)
            decision = layout(cat, who, experiment_arm="b", new_user=True)
            assert decision.personalized is False
            assert all(s.reason == "editorial" for s in decision.slots)
            layouts.add(tuple((s.slot_id, s.product_id, s.expected_revenue_micro_fen) for s in decision.slots))
    # the editorial order, whatever the tier, the in-house decision or the arm: no risk-tier
    # filter, no floor, and revenue reported without boosts or risk-tier scores:
    # cheap 10 fen × 100%, tier_a_only 312.5 fen × 50%, rich 90 fen × 20%
    assert layouts == {
        (("top", "cheap", 10_000_000), ("second", "tier_a_only", 156_250_000), ("third", "rich", 18_000_000))
    }
    # with personalisation on, the same users get different, revenue-ranked layouts:
    # A: tier_a_only 500, rich 90 × 2 = 180, cheap 10 (under the floor)
    # D: rich 180, cheap 10 × 10 = 100 (over the floor), tier_a_only not for D
    tier_a = layout(cat, user(risk_tier="A"))
    tier_d = layout(cat, user(risk_tier="D"))
    assert slots_of(tier_a) == {"top": "tier_a_only", "second": "rich"}
    assert tier_a.explanation_for("cheap").filtered_by == "floor:min_50_fen"
    assert slots_of(tier_d) == {"top": "rich", "second": "cheap"}


# -- cross references ----------------------------------------------------------


def test_catalogue_cross_references_are_checked():
    cat = catalogue(
        [product("x", owner="nobody")],
        partners=[partner("p1")],
        pages=[page("home", [slot("top", fallback_product_id="ghost")], editorial_order=["x", "phantom"])],
        rules=[
            {"rule_id": "r1", "action": "pin", "product_id": "ghost", "slot_id": "nowhere", "page_id": "home"},
            {"rule_id": "r2", "action": "boost", "product_id": "x", "factor_bps": 0},
            {"rule_id": "r3", "action": "floor"},
            {"rule_id": "r4", "action": "partner_share_cap", "partner_id": "nobody", "max_slots": -1},
            {"rule_id": "r5", "action": "exclude"},
            {"rule_id": "r6", "action": "pin", "product_id": "x"},
            {"rule_id": "r7", "action": "boost", "product_id": "x", "factor_bps": 5000,
             "condition": {"mood": ["happy"], "app_version": {"min": "latest"}}},
        ],
    )
    found = guards_of(catalogue_violations(cat, 2400))
    assert found >= {
        ("products[x].owner", "unknown_reference"),
        ("pages[home].slots[top].fallback_product_id", "unknown_reference"),
        ("pages[home].editorial_order[1]", "unknown_reference"),
        ("rules[r1].product_id", "unknown_reference"),
        ("rules[r1].slot_id", "unknown_reference"),
        ("rules[r2].factor_bps", "rule_parameters"),
        ("rules[r3].floor_rpm_fen", "rule_parameters"),
        ("rules[r4].partner_id", "unknown_reference"),
        ("rules[r4].max_slots", "rule_parameters"),
        ("rules[r5].product_id", "rule_parameters"),
        ("rules[r6].slot_id", "rule_parameters"),
        ("rules[r7].condition.mood", "rule_condition"),
        ("rules[r7].condition.app_version", "rule_condition"),
    }


def test_settlement_must_match_its_model():
    def check(**over) -> set[tuple[str, str]]:
        return guards_of(product_violations(Product.from_dict(product("x", **over)), 2400))

    assert ("settlement.cps_rate_bps", "settlement") in check(settlement={"model": "cps", "cps_rate_bps": 0})
    assert ("settlement.fee_fen", "settlement") in check(settlement={"model": "per_card", "fee_fen": 0})
    # a partner's product cannot be self-lent, and self-lending needs its lending economics
    partner_self = check(owner="p1", settlement={"model": "self", "transfer_price_bps": 100})
    assert {("settlement.model", "settlement"), ("lending", "settlement")} <= partner_self
    assert ("funnel.ctr_bps", "bounds") in check(funnel={"ctr_bps": 12000})
