"""Placement (docs/architecture.md): eligibility, rules, assignment, fallbacks, explanations, the wallet story.

Products are paid per click with a 10% click-through, so a fee of F fen earns
F/10 fen per impression at weight 1 (F × 100,000 micro-fen).
"""
import random
from dataclasses import replace
from datetime import timedelta

import pytest

from wallet_market.domain.guards import catalogue_violations
from wallet_market.domain.catalogue import Catalogue
from wallet_market.domain.placement import (
    PlacementIndex,
    PlacementPolicy,
    RequestContext,
    UnknownPage,
    UserState,
    place,
)

from tests.catalogue_builders import (
    NOW,
    TODAY,
    catalogue,
    demo_catalogue,
    layout,
    page,
    partner,
    product,
    slot,
    slots_of,
    user,
)

TWO_SLOTS = [page("home", [slot("top", 10000), slot("second", 5000)])]


def test_unknown_page_is_an_error():
    with pytest.raises(UnknownPage) as err:
        layout(catalogue([product("a")]), user(), page_id="nowhere")
    assert err.value.page_id == "nowhere"


def test_the_best_earner_takes_the_best_slot():
    cat = catalogue([product("a", fee_fen=300), product("b", fee_fen=500), product("c", fee_fen=100)])
    decision = layout(cat, user())
    assert [(s.slot_id, s.position, s.product_id, s.reason) for s in decision.slots] == [
        ("top", 0, "b", "optimal"),
        ("second", 1, "a", "optimal"),
    ]
    # b: 50 fen × 100% = 50,000,000 micro-fen; a: 30 fen × 50% = 15,000,000
    assert [s.expected_revenue_micro_fen for s in decision.slots] == [50_000_000, 15_000_000]
    assert decision.total_expected_micro_fen == 65_000_000
    assert all(s.propensity_bps == 10_000 for s in decision.slots)
    assert decision.ruleset_version == 7
    assert decision.personalized is True


def test_assignment_is_exact_not_greedy_under_slot_kinds():
    # Greedy puts the 100-fen loan on top and leaves the loan-only slot empty: 100 fen.
    # Best: the 90-fen card on top, the loan below: 90 + 100 × 50% = 140 fen.
    cat = catalogue(
        [product("loan", fee_fen=1000), product("card", kind="credit_card", fee_fen=900)],
        pages=[page("home", [slot("top", 10000), slot("second", 5000, accepts=("loan",))])],
    )
    decision = layout(cat, user())
    assert slots_of(decision) == {"top": "card", "second": "loan"}
    assert decision.total_expected_micro_fen == 140_000_000


# -- eligibility ---------------------------------------------------------------


def test_visitors_see_only_products_without_login_and_only_visitor_slots():
    cat = catalogue(
        [
            product("open", owner="in_house", fee_fen=100, requires_login=False),
            product("members", owner="in_house", fee_fen=900, requires_login=True),
            product("partner_open", owner="p1", fee_fen=900, requires_login=False),
        ],
        pages=[page("home", [slot("top", 10000), slot("members_only", 9000, visible_to_visitors=False)])],
    )
    decision = layout(cat, None)
    assert slots_of(decision) == {"top": "open"}
    assert decision.explanation_for("members").filtered_by == "login_required"
    # the joint login needs an identity: a partner product needs a logged-in user
    assert decision.explanation_for("partner_open").filtered_by == "login_required"
    logged_in = layout(cat, user())
    assert slots_of(logged_in) == {"top": "members", "members_only": "partner_open"}


def test_each_eligibility_reason_is_reported():
    partners = [
        partner("p1"),
        partner("paused", status="paused"),
        partner("stranger"),
        partner("muted"),
        partner("busy"),
        partner("known", prescreen_url="https://known.example/prescreen"),
        partner("flaky", prescreen_url="https://flaky.example/prescreen"),
        partner("slow", prescreen_url="https://slow.example/prescreen"),
        partner("fresh", prescreen_url="https://fresh.example/prescreen"),
    ]
    tomorrow = (NOW + timedelta(days=1)).isoformat()
    cat = catalogue(
        [
            product("ok", fee_fen=100),
            product("off", status="paused"),
            product("later", schedule={"starts_at": tomorrow}),
            product("pricey", apr_max_bps=3000),
            product("of_paused", owner="paused"),
            product("of_stranger", owner="stranger"),
            product("tier_b", eligibility={"risk_tiers": ["B"]}),
            product("older", eligibility={"age_min": 40}),
            product("beijing", eligibility={"regions": ["BJ"]}),
            product("capped", daily_impression_cap=3),
            product("of_muted", owner="muted"),
            product("of_busy", owner="busy"),
            product("of_known", owner="known"),
            product("of_flaky", owner="flaky"),
            product("of_slow", owner="slow"),
            product("of_fresh", owner="fresh", fee_fen=200),
            product("a_card", kind="credit_card"),
        ],
        partners=partners,
        pages=[page("home", [slot("top", 10000, accepts=("loan",)), slot("second", 5000, accepts=("loan",))])],
    )
    who = user(consents=("p1", "paused", "muted", "busy", "known", "flaky", "slow", "fresh"), region="GD")
    state = UserState(
        impressions_today={"capped": 3},
        suppressed_partners=frozenset({"muted"}),
        partners_at_lead_cap=frozenset({"busy"}),
        prescreen={"known": "existing", "flaky": "failed", "fresh": "new"},
    )
    decision = layout(cat, who, state=state)
    assert slots_of(decision) == {"top": "of_fresh", "second": "ok"}
    reasons = {e.product_id: e.filtered_by for e in decision.explanations if e.outcome == "filtered"}
    assert reasons == {
        "off": "status",
        "later": "schedule",
        "pricey": "guard:apr_cap",
        "of_paused": "guard:partner_not_placeable:paused",
        "of_stranger": "no_consent",
        "tier_b": "risk_tier",
        "older": "age",
        "beijing": "region",
        "capped": "frequency_cap",
        "of_muted": "suppressed",
        "of_busy": "lead_cap",
        "of_known": "prescreen:existing",
        "of_flaky": "prescreen:failed",
        "of_slow": "prescreen:pending",
        "a_card": "kind_not_accepted",
    }


def test_the_first_failing_reason_wins():
    cat = catalogue(
        [
            product("paused_and_strange", owner="stranger", status="paused"),
            product("pricey_and_strange", owner="stranger", apr_max_bps=3000),
        ],
        partners=[partner("stranger")],
    )
    decision = layout(cat, None)
    assert decision.explanation_for("paused_and_strange").filtered_by == "status"
    assert decision.explanation_for("pricey_and_strange").filtered_by == "guard:apr_cap"


def test_a_partner_without_prescreen_needs_none():
    decision = layout(catalogue([product("a")]), user(), state=UserState(prescreen={}))
    assert slots_of(decision) == {"top": "a"}


def test_unknown_risk_tier_skips_the_tier_check():
    cat = catalogue([product("tier_b", eligibility={"risk_tiers": ["B"]})])
    assert slots_of(layout(cat, user(risk_tier=None))) == {"top": "tier_b"}
    assert slots_of(layout(cat, user(risk_tier="A"))) == {}


def test_the_profile_region_wins_over_the_request_region():
    cat = catalogue([product("gd", eligibility={"regions": ["GD"]}), product("bj", eligibility={"regions": ["BJ"]})])
    assert slots_of(layout(cat, user(region="GD"), region="BJ")) == {"top": "gd"}
    assert slots_of(layout(cat, user(region=None), region="BJ")) == {"top": "bj"}


def test_declined_users_do_not_see_the_in_house_loan_during_the_cool_down():
    cat = catalogue(
        [product("inhouse", owner="in_house", fee_fen=900), product("partner_loan", owner="p1", fee_fen=100)]
    )

    def declined(days_ago: int):
        return user(in_house_decision="declined", decided_at=TODAY - timedelta(days=days_ago))

    recent = layout(cat, declined(30))
    assert slots_of(recent) == {"top": "partner_loan"}
    assert recent.explanation_for("inhouse").filtered_by == "decline_cooldown"
    # the default cool-down is 90 days
    assert slots_of(layout(cat, declined(90))) == {"top": "inhouse", "second": "partner_loan"}
    assert slots_of(layout(cat, declined(30), policy=PlacementPolicy(decline_cooldown_days=20)))["top"] == "inhouse"
    assert slots_of(layout(cat, user(in_house_decision="approved")))["top"] == "inhouse"
    # partner loans for a declined user need that user's consent to share with the partner
    assert slots_of(layout(cat, replace(declined(30), share_with_partners=frozenset()))) == {}


# -- rules ---------------------------------------------------------------------


def three_products(**cat_over):
    # a: 30 fen, b: 50 fen, c: 20 fen per impression
    return dict(products=[product("a", fee_fen=300), product("b", fee_fen=500), product("c", fee_fen=200)], **cat_over)


def test_a_pin_wins_its_slot():
    pin = {"rule_id": "pin_c", "action": "pin", "product_id": "c", "slot_id": "top"}
    cat = catalogue(**three_products(rules=[pin]))
    decision = layout(cat, user())
    assert [(s.slot_id, s.product_id, s.reason) for s in decision.slots] == [
        ("top", "c", "pinned"),
        ("second", "b", "optimal"),
    ]
    # c: 20 fen in the top slot; b: 50 fen × 50% = 25 fen
    assert decision.total_expected_micro_fen == 45_000_000


def test_the_first_pin_by_priority_wins_and_a_product_is_pinned_once():
    rules = [
        {"rule_id": "r_a", "action": "pin", "product_id": "a", "slot_id": "top", "priority": 20},
        {"rule_id": "r_c", "action": "pin", "product_id": "c", "slot_id": "top", "priority": 10},
        {"rule_id": "r_c2", "action": "pin", "product_id": "c", "slot_id": "second", "priority": 30},
    ]
    decision = layout(catalogue(**three_products(rules=rules)), user())
    assert slots_of(decision) == {"top": "c", "second": "b"}
    assert "pin rule r_a ignored: slot already pinned by rule r_c" in decision.explanation_for("a").notes
    assert "pin rule r_c2 ignored: product already pinned" in decision.explanation_for("c").notes


def test_equal_priorities_are_evaluated_by_rule_id():
    rules = [
        {"rule_id": "r2", "action": "pin", "product_id": "a", "slot_id": "top"},
        {"rule_id": "r1", "action": "pin", "product_id": "c", "slot_id": "top"},
    ]
    assert slots_of(layout(catalogue(**three_products(rules=rules)), user()))["top"] == "c"


def test_a_pin_of_an_ineligible_product_is_ignored_and_explained():
    rules = [
        {"rule_id": "pin_c", "action": "pin", "product_id": "c", "slot_id": "top"},
        {"rule_id": "drop_c", "action": "exclude", "product_id": "c", "priority": 200},
    ]
    decision = layout(catalogue(**three_products(rules=rules)), user())
    assert slots_of(decision) == {"top": "b", "second": "a"}
    explanation = decision.explanation_for("c")
    assert explanation.filtered_by == "rule:drop_c"
    assert explanation.notes == ("pin rule pin_c ignored: product filtered (rule:drop_c)",)


def test_exclude_a_product_or_every_product_of_a_partner():
    cat = catalogue(
        [product("a", fee_fen=300), product("b", owner="p2", fee_fen=500), product("b2", owner="p2", fee_fen=400),
         product("c", fee_fen=200)],
        rules=[
            {"rule_id": "no_p2", "action": "exclude", "partner_id": "p2"},
            {"rule_id": "no_a", "action": "exclude", "product_id": "a"},
        ],
    )
    decision = layout(cat, user())
    assert slots_of(decision) == {"top": "c"}
    assert {e.product_id: e.filtered_by for e in decision.explanations if e.outcome == "filtered"} == {
        "a": "rule:no_a", "b": "rule:no_p2", "b2": "rule:no_p2",
    }


def test_boosts_multiply_and_damps_shrink():
    rules = [
        {"rule_id": "up1", "action": "boost", "product_id": "a", "factor_bps": 15000},
        {"rule_id": "up2", "action": "boost", "product_id": "a", "factor_bps": 15000},
        {"rule_id": "down", "action": "boost", "product_id": "b", "factor_bps": 5000},
    ]
    decision = layout(catalogue(**three_products(rules=rules)), user())
    # a: 30 fen × 1.5 × 1.5 = 67.5 fen; b: 50 fen × 0.5 = 25 fen; c: 20 fen
    assert slots_of(decision) == {"top": "a", "second": "b"}
    a = decision.explanation_for("a")
    assert a.score_micro_fen == 67_500_000
    assert a.components["boost_factor_bps"] == 22_500
    assert a.components["group_micro_fen"] == 30_000_000  # before the boost
    assert decision.explanation_for("b").score_micro_fen == 25_000_000
    # 67.5 fen + 25 fen × 50% = 80 fen
    assert decision.total_expected_micro_fen == 80_000_000


def test_a_floor_drops_products_below_its_rpm_but_not_pinned_ones():
    # 250 RMB per thousand impressions = 25 fen per impression: a (30) and b (50) pass, c (20) does not
    floor = {"rule_id": "min_rpm", "action": "floor", "floor_rpm_fen": 25_000}
    decision = layout(catalogue(**three_products(rules=[floor])), user())
    assert decision.explanation_for("c").filtered_by == "floor:min_rpm"
    assert slots_of(decision) == {"top": "b", "second": "a"}
    pinned = layout(
        catalogue(**three_products(rules=[floor, {"rule_id": "pin_c", "action": "pin", "product_id": "c",
                                                  "slot_id": "second"}])),
        user(),
    )
    assert slots_of(pinned) == {"top": "b", "second": "c"}


def test_a_partner_share_cap_is_kept_and_pins_count_toward_it():
    products = [
        product("p1_best", fee_fen=900), product("p1_good", fee_fen=800), product("p1_ok", fee_fen=700),
        product("p2_low", owner="p2", fee_fen=100),
    ]
    three_slots = [page("home", [slot("top", 10000), slot("second", 5000), slot("third", 2000)])]
    cap2 = {"rule_id": "cap_p1", "action": "partner_share_cap", "partner_id": "p1", "max_slots": 2}
    decision = layout(catalogue(products, pages=three_slots, rules=[cap2]), user())
    assert slots_of(decision) == {"top": "p1_best", "second": "p1_good", "third": "p2_low"}
    lost = decision.explanation_for("p1_ok")
    # p1_ok's best slot was the top one: 90 fen there against its own 70 fen = 20 fen
    assert (lost.outcome, lost.lost_to, lost.lost_by_micro_fen) == ("lost", "p1_best", 20_000_000)

    cap1 = dict(cap2, max_slots=1)
    pin = {"rule_id": "pin_ok", "action": "pin", "product_id": "p1_ok", "slot_id": "top"}
    decision = layout(catalogue(products, pages=three_slots, rules=[cap1, pin]), user())
    assert slots_of(decision) == {"top": "p1_ok", "second": "p2_low"}


def test_a_partner_share_cap_is_kept_exactly_not_greedily():
    # p1 may hold one slot. Greedy gives p1_card the top (90 fen) and leaves the loan-only
    # slot to p2_loan (10 × 50% = 5 fen): 95 fen. Best: p1_loan below (80 × 50% = 40 fen)
    # and p2_card on top (60 fen): 100 fen.
    cat = catalogue(
        [product("p1_card", kind="credit_card", fee_fen=900), product("p1_loan", fee_fen=800),
         product("p2_card", owner="p2", kind="credit_card", fee_fen=600), product("p2_loan", owner="p2", fee_fen=100)],
        pages=[page("home", [slot("top", 10000), slot("second", 5000, accepts=("loan",))])],
        rules=[{"rule_id": "cap", "action": "partner_share_cap", "partner_id": "p1", "max_slots": 1}],
    )
    decision = layout(cat, user())
    assert slots_of(decision) == {"top": "p2_card", "second": "p1_loan"}
    assert decision.total_expected_micro_fen == 100_000_000


def test_rules_outside_their_window_do_not_apply():
    past = {"starts_at": "2025-01-01T00:00:00Z", "ends_at": "2025-05-01T00:00:00Z"}
    current = {"starts_at": "2025-05-01T00:00:00Z", "ends_at": "2025-07-01T00:00:00Z"}
    old_pin = {"rule_id": "old", "action": "pin", "product_id": "c", "slot_id": "top", "window": past}
    assert slots_of(layout(catalogue(**three_products(rules=[old_pin])), user()))["top"] == "b"
    live_pin = dict(old_pin, rule_id="live", window=current)
    assert slots_of(layout(catalogue(**three_products(rules=[live_pin])), user()))["top"] == "c"


def test_disabled_rules_do_not_apply():
    pin = {"rule_id": "off", "action": "pin", "product_id": "c", "slot_id": "top", "enabled": False}
    assert slots_of(layout(catalogue(**three_products(rules=[pin])), user()))["top"] == "b"


@pytest.mark.parametrize(
    "condition, context, matches",
    [
        ({"logged_in": [True]}, {}, True),
        ({"logged_in": [False]}, {}, False),
        ({"risk_tier": ["A", "B"]}, {}, True),
        ({"risk_tier": ["C"]}, {}, False),
        ({"in_house_decision": ["none"]}, {}, True),
        ({"age_band": ["25-34"]}, {}, True),  # the user is 30
        ({"age_band": ["18-24"]}, {}, False),
        ({"region": ["GD"]}, {"region": "GD"}, True),
        ({"device_model": ["X1", "X2"]}, {"device_model": "X2"}, True),
        ({"device_model": ["X1"]}, {"device_model": None}, False),  # a field the request lacks never matches
        ({"app_version": {"min": "5.10.0"}}, {"app_version": "5.9.3"}, False),
        ({"app_version": {"min": "5.10.0"}}, {"app_version": "5.10.0"}, True),
        ({"app_version": {"min": "5.10.0"}}, {"app_version": "6.0"}, True),  # numeric, not string, order
        ({"app_version": {"min": "5.10.0"}}, {"app_version": None}, False),
        ({"app_version": ["5.2.0", "5.3.1"]}, {"app_version": "5.3.1"}, True),
        ({"app_version": ["5.2.0"]}, {"app_version": "5.2.1"}, False),
        ({"new_user": [True]}, {"new_user": True}, True),
        ({"new_user": [True]}, {"new_user": False}, False),
        ({"experiment_arm": ["b"]}, {"experiment_arm": "b"}, True),
        ({"page": ["home"]}, {}, True),
        ({"page": ["loan_market"]}, {}, False),
        ({"risk_tier": ["A"], "device_model": ["X1"]}, {"device_model": "X2"}, False),  # every field must match
    ],
)
def test_rule_conditions_match_the_request_context(condition, context, matches):
    pin = {"rule_id": "r", "action": "pin", "product_id": "c", "slot_id": "top", "condition": condition}
    decision = layout(catalogue(**three_products(rules=[pin])), user(region="GD"), **context)
    assert (slots_of(decision)["top"] == "c") is matches


def test_a_visitor_has_no_risk_tier_for_a_condition_to_match():
    cat = catalogue(
        [product("x", owner="in_house", fee_fen=100, requires_login=False),
         product("y", owner="in_house", fee_fen=200, requires_login=False)],
        rules=[{"rule_id": "r", "action": "exclude", "product_id": "y",
                "condition": {"risk_tier": ["A", "B", "C", "D"]}}],
    )
    assert slots_of(layout(cat, None)) == {"top": "y", "second": "x"}


def test_page_scoped_rules_apply_only_on_their_page():
    pages = [page("home", [slot("top")]), page("loan_market", [slot("top")])]
    rules = [{"rule_id": "pin_c", "action": "pin", "product_id": "c", "slot_id": "top", "page_id": "loan_market"}]
    cat = catalogue(**three_products(pages=pages, rules=rules))
    assert slots_of(layout(cat, user(), page_id="home")) == {"top": "b"}
    assert slots_of(layout(cat, user(), page_id="loan_market")) == {"top": "c"}


# -- fallbacks -----------------------------------------------------------------


def card_slot_page(fallback: str):
    return [page("home", [slot("top", 10000, accepts=("loan",)),
                          slot("cards", 5000, accepts=("credit_card",), fallback_product_id=fallback)])]


def test_an_empty_slot_gets_its_fallback_even_when_frequency_capped_or_excluded():
    cat = catalogue(
        [product("loan", fee_fen=300), product("house_card", owner="in_house", kind="credit_card",
                                                   requires_login=False, daily_impression_cap=2)],
        pages=card_slot_page("house_card"),
        rules=[{"rule_id": "no_house_card", "action": "exclude", "product_id": "house_card"}],
    )
    decision = layout(cat, user(), state=UserState(impressions_today={"house_card": 5}))
    assert [(s.slot_id, s.product_id, s.reason) for s in decision.slots] == [
        ("top", "loan", "optimal"),
        ("cards", "house_card", "fallback"),
    ]
    assert decision.explanation_for("house_card").outcome == "chosen"


def test_a_fallback_still_obeys_guards_login_and_consent():
    for fallback, who, reason in (
        (product("bad_card", kind="credit_card", owner="in_house", apr_max_bps=3600, requires_login=False),
         user(), "guard"),
        (product("member_card", kind="credit_card", owner="in_house", requires_login=True), None, "login"),
        (product("p9_card", kind="credit_card", owner="p9"), user(consents=("p1",)), "consent"),
    ):
        cat = catalogue(
            [product("loan", owner="in_house", fee_fen=300, requires_login=False), fallback],
            pages=card_slot_page(fallback["product_id"]),
            partners=[partner("p1"), partner("p9")],
        )
        assert slots_of(layout(cat, who)) == {"top": "loan"}, reason


def test_a_fallback_already_on_the_page_is_not_shown_twice():
    cat = catalogue(
        [product("loan", fee_fen=300)],
        pages=[page("home", [slot("top", 10000), slot("second", 5000, fallback_product_id="loan")])],
    )
    assert slots_of(layout(cat, user())) == {"top": "loan"}


# -- ties ----------------------------------------------------------------------


def test_ties_break_by_product_id_whatever_the_catalogue_order():
    forward = catalogue([product("alpha", fee_fen=300), product("beta", fee_fen=300), product("gamma", fee_fen=300)])
    backward = catalogue([product("gamma", fee_fen=300), product("beta", fee_fen=300), product("alpha", fee_fen=300)])
    first = layout(forward, user())
    assert slots_of(first) == {"top": "alpha", "second": "beta"}
    assert layout(backward, user()) == first
    assert all(layout(forward, user()) == first for _ in range(5))


def test_equal_slots_are_filled_in_page_order():
    cat = catalogue(
        [product("a", fee_fen=300), product("b", fee_fen=200)],
        pages=[page("home", [slot("left", 5000), slot("right", 5000)])],
    )
    assert slots_of(layout(cat, user())) == {"left": "a", "right": "b"}


# -- personalisation off -------------------------------------------------------


def test_personalisation_off_follows_the_editorial_order_then_product_id():
    cat = catalogue(
        [product("rich", fee_fen=900), product("zeta", fee_fen=500), product("beta", fee_fen=100),
         product("card", kind="credit_card", fee_fen=50)],
        pages=[page("home", [slot("top", 10000, accepts=("credit_card",)), slot("second", 5000),
                             slot("third", 3000), slot("fourth", 2000)],
                    editorial_order=["zeta"])],
    )
    decision = layout(cat, user(personalized=False))
    # zeta first, then the rest by product id: beta, card, rich; the card slot takes the card
    assert [(s.slot_id, s.product_id) for s in decision.slots] == [
        ("top", "card"), ("second", "zeta"), ("third", "beta"), ("fourth", "rich"),
    ]
    # expected revenue is still reported: card 5 fen at the top, zeta 50 × 50%, beta 10 × 30%, rich 90 × 20%
    assert decision.total_expected_micro_fen == 5_000_000 + 25_000_000 + 3_000_000 + 18_000_000


def test_personalisation_off_keeps_pins_excludes_and_the_decline_cool_down():
    cat = catalogue(
        [product("inhouse", owner="in_house", fee_fen=900), product("a", fee_fen=100), product("b", fee_fen=200),
         product("c", fee_fen=300)],
        pages=[page("home", [slot("top", 10000), slot("second", 5000)], editorial_order=["inhouse", "a", "b", "c"])],
        rules=[
            {"rule_id": "pin_c", "action": "pin", "product_id": "c", "slot_id": "top"},
            {"rule_id": "no_a", "action": "exclude", "product_id": "a"},
        ],
    )
    who = user(personalized=False, in_house_decision="declined", decided_at=TODAY - timedelta(days=5))
    decision = layout(cat, who)
    assert [(s.slot_id, s.product_id, s.reason) for s in decision.slots] == [
        ("top", "c", "pinned"),
        ("second", "b", "editorial"),
    ]
    assert decision.explanation_for("inhouse").filtered_by == "decline_cooldown"


# -- explanations --------------------------------------------------------------


def test_explanations_say_who_won_lost_and_why():
    cat = catalogue(
        [product("a", fee_fen=500), product("b", fee_fen=300), product("c", fee_fen=200),
         product("d", kind="credit_card", fee_fen=250), product("e", status="paused")],
        pages=[page("home", [slot("top", 10000, accepts=("loan",)), slot("second", 5000)])],
    )
    decision = layout(cat, user())
    assert slots_of(decision) == {"top": "a", "second": "b"}
    by_id = {e.product_id: e for e in decision.explanations}
    assert [e.product_id for e in decision.explanations] == ["a", "b", "d", "c", "e"]
    assert (by_id["a"].outcome, by_id["a"].slot_id, by_id["a"].score_micro_fen) == ("chosen", "top", 50_000_000)
    assert by_id["a"].components == {
        "platform_micro_fen": 50_000_000, "group_micro_fen": 50_000_000, "boost_factor_bps": 10_000,
        "view": "group", "personalized": True,
    }
    # c could have had the top slot: a earns 50 fen there, c would earn 20 fen
    assert (by_id["c"].outcome, by_id["c"].lost_to, by_id["c"].lost_by_micro_fen) == ("lost", "a", 30_000_000)
    # the card could only have had the second slot: b earns 30 × 50% = 15 fen, d would earn 25 × 50% = 12.5 fen
    assert (by_id["d"].lost_to, by_id["d"].lost_by_micro_fen) == ("b", 2_500_000)
    assert (by_id["e"].outcome, by_id["e"].filtered_by) == ("filtered", "status")


def test_explanations_are_empty_unless_asked_for():
    cat = catalogue([product("a")])
    policy = PlacementPolicy()
    index = PlacementIndex.build(cat, policy)
    decision = place(index, RequestContext("home", NOW, user()), UserState(), policy)
    assert decision.explanations == ()
    assert decision.product_in("top") == "a"


def test_the_platform_view_ranks_by_what_the_platform_books():
    inhouse = product(
        "inhouse", owner="in_house",
        settlement={"model": "self", "transfer_price_bps": 100},
        funnel={"ctr_bps": 300, "apply_rate_bps": 2500, "approval_rate_bps": 3500, "draw_rate_bps": 5000,
                "avg_loan_fen": 800_000, "term_months": 12},
        lending={"apr_bps": 1800, "cost_of_funds_bps": 300, "annual_loss_bps": 250, "opex_bps": 200,
                 "capital_charge_bps": 150},
    )
    # group view: 51.1875 fen; platform view: 10.5 fen (docs/economics.md). The referral earns 20 fen.
    cat = catalogue([inhouse, product("referral", fee_fen=200)],
                    pages=[page("home", [slot("top")])])
    assert slots_of(layout(cat, user())) == {"top": "inhouse"}
    assert slots_of(layout(cat, user(), policy=PlacementPolicy(view="platform"))) == {"top": "referral"}


def test_a_loss_making_product_is_left_out_rather_than_placed():
    loss_maker = product(
        "inhouse", owner="in_house",
        settlement={"model": "self", "transfer_price_bps": 100},
        funnel={"ctr_bps": 300, "apply_rate_bps": 2500, "approval_rate_bps": 3500, "draw_rate_bps": 5000,
                "avg_loan_fen": 800_000, "term_months": 12},
        lending={"apr_bps": 1800, "cost_of_funds_bps": 300, "annual_loss_bps": {"A": 250, "D": 1400},
                 "opex_bps": 200, "capital_charge_bps": 150},
    )
    cat = catalogue([loss_maker], pages=[page("home", [slot("top")])])
    assert slots_of(layout(cat, user(risk_tier="A"))) == {"top": "inhouse"}
    decision = layout(cat, user(risk_tier="D"))
    assert slots_of(decision) == {}
    assert decision.explanation_for("inhouse").score_micro_fen < 0


# -- exploration ---------------------------------------------------------------


def test_exploration_records_the_probability_of_what_was_shown():
    cat = catalogue(
        [product("a", fee_fen=400), product("b", fee_fen=300), product("c", fee_fen=200), product("d", fee_fen=100)],
        pages=[page("home", [slot("top")])],
    )
    policy = PlacementPolicy(exploration_bps=2000)
    index = PlacementIndex.build(cat, policy)
    seen = {}
    for seed in range(200):
        decision = place(index, RequestContext("home", NOW, user()), UserState(), policy, rng=random.Random(seed))
        (top,) = decision.slots
        seen[top.product_id] = (top.propensity_bps, top.reason)
    # 20% explores uniformly over the 3 best alternatives: the best is shown with 80%, each other with 6.67%
    assert seen == {
        "a": (8000, "optimal"),
        "b": (667, "exploration"),
        "c": (667, "exploration"),
        "d": (667, "exploration"),
    }
    assert decision.slots[0].logging_distribution() == pytest.approx({"a": 0.8, "b": 0.2 / 3, "c": 0.2 / 3, "d": 0.2 / 3})


# -- the wallet story (demo catalogue) -----------------------------------------


def test_the_demo_catalogue_is_valid_and_round_trips():
    cat = demo_catalogue()
    assert catalogue_violations(cat, 2400) == []
    assert Catalogue.from_dict(cat.to_dict()) == cat
    assert {"inhouse_loan", "xingyun_loan", "haoyue_loan", "qingshan_loan",
            "donghai_card", "nanfeng_card", "beichen_card"} == set(cat.products)
    assert {"home", "loan_market", "my_assets"} <= set(cat.pages)


def test_the_wallet_story_visitor_sees_in_house_and_logged_in_user_sees_the_partner():
    cat = demo_catalogue()
    # by the numbers, not by a pin
    assert not [r for r in cat.rules if r.action == "pin" and r.slot_id == "top_banner"]
    visitor = layout(cat, None)
    assert visitor.product_in("top_banner") == "inhouse_loan"
    assert visitor.slots[0].reason == "optimal"
    tier_a = user(risk_tier="A", consents=tuple(cat.partners), age=30)
    member = layout(cat, tier_a)
    assert member.product_in("top_banner") == "xingyun_loan"
    assert member.slots[0].reason == "optimal"
    # xingyun: 70% × 4% × 30% × 45% × 60% × 20,000 RMB × 3% = 136.08 fen per impression
    assert member.slots[0].expected_revenue_micro_fen == 136_080_000
    # the in-house loan still earns its 51.1875 fen a view, one slot down (60% weight)
    assert member.product_in("list_1") == "inhouse_loan"
    assert member.explanation_for("inhouse_loan").score_micro_fen == 51_187_500


def test_the_wallet_story_declined_users_go_to_partners_that_fit_only_with_consent():
    cat = demo_catalogue()
    declined = dict(risk_tier="D", in_house_decision="declined", decided_at=TODAY - timedelta(days=10), age=30)
    consenting = layout(cat, user(consents=tuple(cat.partners), **declined), page_id="loan_market")
    # only the micro-lender takes tier D; the in-house loan sits out its cool-down, fallback included
    assert slots_of(consenting) == {"loan_1": "haoyue_loan"}
    assert consenting.explanation_for("inhouse_loan").filtered_by == "decline_cooldown"
    no_consent = layout(cat, user(consents=(), **declined), page_id="loan_market")
    assert slots_of(no_consent) == {}


def test_the_wallet_story_my_assets_keeps_the_in_house_entry():
    cat = demo_catalogue()
    decision = layout(cat, user(risk_tier="A", consents=tuple(cat.partners)), page_id="my_assets")
    assert decision.product_in("available_credit") == "inhouse_loan"
    assert decision.slots[0].reason == "pinned"


def test_the_index_names_the_partners_to_pre_screen_for_a_page():
    cat = catalogue(
        [product("a", owner="p1"), product("b", owner="p2"), product("c", owner="p3", kind="credit_card")],
        partners=[partner("p1", prescreen_url="https://p1.example/prescreen"), partner("p2"),
                  partner("p3", prescreen_url="https://p3.example/prescreen")],
        pages=[page("home", [slot("top", accepts=("loan",))])],
    )
    index = PlacementIndex.build(cat, PlacementPolicy())
    # p3's only product is a card, which the page does not show
    assert index.prescreen_partner_ids("home") == ("p1",)
    with pytest.raises(UnknownPage):
        index.prescreen_partner_ids("nowhere")
