"""The stages of placement one by one: facts, rules, eligibility, scores, assignment, exploration, explanation.

Scores follow the builders' per-click products: ctr 10% × fee, so a fee of F fen
scores F × 100,000 micro-fen per impression at weight 1 (a 500-fen fee: 50,000,000).
"""
from __future__ import annotations

import random

import pytest
from datetime import datetime, timedelta

from wallet_market.domain.catalogue import Catalogue
from wallet_market.domain.placement import (
    DETERMINISTIC_BPS,
    PlacementIndex,
    PlacementPolicy,
    RequestContext,
    UserState,
    _apply_floors,
    _assign_editorial,
    _assign_fallbacks,
    _assign_optimal,
    _Assignment,
    _boosted,
    _candidates,
    _condition_values,
    _eligibility,
    _explain,
    _explore,
    _Facts,
    _facts,
    _RuleEffects,
    _free_slots,
    _pins,
    _rules,
    _scores,
    _slot_decisions,
)
from wallet_market.domain.users import UserProfile

from tests.catalogue_builders import NOW, TODAY, catalogue, micro_fen_per_click_product, page, partner, product, slot, user

POLICY = PlacementPolicy()
HOME_SLOTS = [slot("top", 10000), slot("second", 5000)]


def index_of(cat: Catalogue) -> PlacementIndex:
    return PlacementIndex.build(cat, POLICY)


def facts_of(
    index: PlacementIndex, who: UserProfile | None, state: UserState | None = None, **ctx: object
) -> _Facts:
    return _facts(index, RequestContext(page_id="home", now=NOW, user=who, **ctx), state or UserState(), POLICY)


def effects_of(index: PlacementIndex, who: UserProfile | None) -> _RuleEffects:
    ctx = RequestContext(page_id="home", now=NOW, user=who)
    return _rules(index._pages["home"], ctx, _facts(index, ctx, UserState(), POLICY))


def reasons_of(index: PlacementIndex, f: _Facts, excluded: dict[str, str] | None = None) -> dict[str, str | None]:
    audience = index._pages["home"].users if f.logged_in else index._pages["home"].visitors
    return _eligibility(index.static_verdicts(f.today, f.logged_in), f, audience.kinds, excluded or {})


class FixedDraws(random.Random):
    """A generator whose draws are given: ``random()`` returns ``draw``, ``randrange`` returns ``pick``."""

    def __init__(self, draw: float, pick: int = 0) -> None:
        super().__init__(0)
        self.draw = draw
        self.pick = pick

    def random(self) -> float:
        return self.draw

    def randrange(self, *args: object, **kwargs: object) -> int:
        return self.pick


# -- facts -----------------------------------------------------------------------


def test_facts_of_a_visitor_with_a_naive_time():
    index = index_of(catalogue([product("a")], partners=[partner("p1"), partner("off", status="paused")]))
    f = _facts(index, RequestContext(page_id="home", now=datetime(2025, 6, 1, 8), region="sh"), UserState(), POLICY)
    assert f.now == NOW and f.now.tzinfo is not None  # a naive time is read as UTC
    assert f.today == TODAY
    assert (f.logged_in, f.personalized, f.tier, f.check_tier) == (False, True, None, False)
    assert (f.age, f.region, f.share, f.declined_recently) == (None, "sh", frozenset(), False)
    assert f.partner_reasons == {"p1": None, "off": "paused"}


def test_facts_of_a_user_come_from_the_profile_and_the_counters():
    index = index_of(catalogue([product("a")]))
    state = UserState(
        impressions_today={"a": 2},
        suppressed_partners=frozenset({"p2"}),
        prescreen={"p1": "new"},
        partners_at_lead_cap=frozenset({"p3"}),
    )
    declined = user(risk_tier="B", region="bj", in_house_decision="declined", decided_at=TODAY - timedelta(days=89))
    f = facts_of(index, declined, state, region="sh")
    assert (f.logged_in, f.personalized, f.tier, f.check_tier) == (True, True, "B", True)
    assert (f.age, f.region, f.share) == (30, "bj", frozenset({"p1", "p2", "p3"}))  # the profile's region wins
    assert f.declined_recently is True  # 89 days < the 90-day cool-down
    past = user(in_house_decision="declined", decided_at=TODAY - timedelta(days=90))
    assert facts_of(index, past).declined_recently is False
    assert (f.impressions, f.suppressed, f.prescreen, f.lead_capped) == (
        {"a": 2}, frozenset({"p2"}), {"p1": "new"}, frozenset({"p3"}),
    )


def test_facts_without_personalisation_carry_no_risk_tier():
    index = index_of(catalogue([product("a")]))
    f = facts_of(index, user(risk_tier="A", personalized=False))
    assert (f.logged_in, f.personalized, f.tier, f.check_tier) == (True, False, None, False)


# -- rules -----------------------------------------------------------------------


def test_condition_values_hide_profile_fields_without_personalisation():
    index = index_of(catalogue([product("a")]))
    ctx = RequestContext(
        page_id="home", now=NOW, user=user(in_house_decision="approved"), app_version="5.3.1", device_model="X1",
        new_user=True, experiment_arm="b",
    )
    f = _facts(index, ctx, UserState(), POLICY)
    assert _condition_values(ctx, f) == {
        "logged_in": True, "risk_tier": "A", "in_house_decision": "approved", "age_band": "25-34", "region": None,
        "device_model": "X1", "app_version": "5.3.1", "new_user": True, "experiment_arm": "b", "page": "home",
    }
    private = RequestContext(
        page_id="home", now=NOW, user=user(in_house_decision="approved", personalized=False), new_user=True,
        experiment_arm="b",
    )
    values = _condition_values(private, _facts(index, private, UserState(), POLICY))
    assert [values[name] for name in ("risk_tier", "in_house_decision", "new_user", "experiment_arm")] == [None] * 4
    assert (values["logged_in"], values["age_band"]) == (True, "25-34")


def test_rules_sort_matching_rules_by_action_in_priority_order():
    yesterday, tomorrow = (NOW - timedelta(days=1)).isoformat(), (NOW + timedelta(days=1)).isoformat()
    cat = catalogue(
        [product("a", owner="p1"), product("b", owner="p1"), product("c", owner="p2")],
        rules=[
            {"rule_id": "x2", "action": "exclude", "product_id": "a", "priority": 2},
            {"rule_id": "x1", "action": "exclude", "partner_id": "p1", "priority": 1},
            {"rule_id": "boost_c", "action": "boost", "product_id": "c", "factor_bps": 15000},
            {"rule_id": "damp_p2", "action": "boost", "partner_id": "p2", "factor_bps": 5000, "priority": 101},
            {"rule_id": "cap3", "action": "partner_share_cap", "partner_id": "p2", "max_slots": 3},
            {"rule_id": "cap1", "action": "partner_share_cap", "partner_id": "p2", "max_slots": 1},
            {"rule_id": "floor", "action": "floor", "floor_rpm_fen": 50_000},
            {"rule_id": "pin", "action": "pin", "product_id": "c", "slot_id": "top"},
            {"rule_id": "only_b_tier", "action": "exclude", "product_id": "c", "condition": {"risk_tier": ["B"]}},
            {"rule_id": "expired", "action": "exclude", "product_id": "c", "window": {"ends_at": yesterday}},
            {"rule_id": "not_yet", "action": "exclude", "product_id": "c", "window": {"starts_at": tomorrow}},
        ],
    )
    index = index_of(cat)
    effects = effects_of(index, user())
    assert effects.excluded == {"a": "x1", "b": "x1"}  # the first rule (priority 1) names the exclusion
    assert effects.boosts == {"c": [15000, 5000]}
    assert effects.caps == {"p2": 1}  # the tighter of two caps
    # 50,000 fen per 1,000 impressions is 50,000,000 micro-fen per impression
    assert [(r.rule_id, threshold) for r, threshold in effects.floors] == [("floor", 50_000_000)]
    assert [r.rule_id for r in effects.pins] == ["pin"]

    without = effects_of(index, user(personalized=False))
    # guard 7: no boosts or floors without personalisation; excludes, pins and caps still hold
    assert (without.boosts, without.floors) == ({}, [])
    assert (without.excluded, without.caps) == ({"a": "x1", "b": "x1"}, {"p2": 1})
    assert [r.rule_id for r in without.pins] == ["pin"]


# -- eligibility -----------------------------------------------------------------


def test_eligibility_gives_each_product_its_first_reason_then_rule_excludes():
    cat = catalogue(
        [
            product("ok", owner="p1"),
            product("off", owner="p1", status="paused"),
            product("later", owner="p1", schedule={"starts_at": (NOW + timedelta(days=1)).isoformat()}),
            product("stranger", owner="p4"),
            product("card", owner="p1", kind="credit_card"),
            product("excluded", owner="p1"),
            product("excluded_stranger", owner="p4"),
        ],
        pages=[page("home", [slot("top", 10000, accepts=("loan",))])],
    )
    index = index_of(cat)
    f = facts_of(index, user(consents=("p1",)))
    excluded = {"excluded": "r1", "excluded_stranger": "r1"}
    assert reasons_of(index, f, excluded) == {
        "ok": None,
        "off": "status",
        "later": "schedule",
        "stranger": "no_consent",
        "card": "kind_not_accepted",  # no slot of the page takes a card
        "excluded": "rule:r1",
        "excluded_stranger": "no_consent",  # an earlier reason is kept
    }
    visitor = facts_of(index, None)
    assert reasons_of(index, visitor)["ok"] == "login_required"


# -- scores ----------------------------------------------------------------------


def test_scores_apply_boosts_exactly_and_copy_the_table_only_then():
    table = {"a": 100_000_000, "b": 30_000_000}
    assert _scores(table, {}) is table
    boosted = _scores(table, {"a": [15000, 5000]})
    assert boosted == {"a": 75_000_000, "b": 30_000_000}  # 100,000,000 × 1.5 × 0.5
    assert table == {"a": 100_000_000, "b": 30_000_000}
    # half away from zero: 5 × 1.5 = 7.5 -> 8, and -7.5 -> -8; 3 × 0.5 = 1.5 -> 2
    assert (_boosted(5, [15000]), _boosted(-5, [15000]), _boosted(3, [5000])) == (8, -8, 2)


def test_floors_filter_eligible_unpinned_products_below_the_threshold():
    cat = catalogue(
        [product("low", fee_fen=400), product("pinned_low", fee_fen=400), product("high", fee_fen=600),
         product("off", fee_fen=100, status="paused")],
        rules=[{"rule_id": "f50", "action": "floor", "floor_rpm_fen": 50_000}],
    )
    index = index_of(cat)
    reason = reasons_of(index, facts_of(index, user()))
    effects = effects_of(index, user())
    scores = index.score_table(POLICY.view, "A")
    assert scores["low"] == micro_fen_per_click_product(400) == 40_000_000  # below 50,000 fen per 1,000 = 50,000,000
    _apply_floors(effects.floors, reason, scores, {"pinned_low"})
    assert reason == {"low": "floor:f50", "pinned_low": None, "high": None, "off": "status"}


def test_candidates_are_the_eligible_unpinned_products_that_earn_best_first():
    cat = catalogue([product(pid) for pid in ("a", "b", "c", "d", "e", "f")])
    index = index_of(cat)
    reason: dict[str, str | None] = {"a": None, "b": None, "c": None, "d": None, "e": "status", "f": None}
    scores = {"a": 5, "b": 7, "c": 5, "d": -1, "e": 9, "f": 8}
    # f is pinned, e filtered, d would lose money; a and c tie and keep product-id order
    assert [e.product_id for e in _candidates(index._entries, reason, scores, {"f"})] == ["b", "a", "c"]


# -- assignment ------------------------------------------------------------------


def test_a_partner_share_cap_is_taken_one_slot_at_a_time():
    assignment = _Assignment({"p1": 1})
    assert assignment.take_share(None) and assignment.take_share("p2")  # no cap for them
    assert assignment.take_share("p1") is True
    assert assignment.take_share("p1") is False
    assert assignment.cap_left == {"p1": 0}


PIN_SLOTS = [
    slot("top", 10000), slot("second", 5000), slot("third", 2500, accepts=("loan",)),
    slot("members", 1000, visible_to_visitors=False),
]


def test_pins_take_their_slot_once_each_and_note_the_pins_that_do_not_apply():
    cat = catalogue(
        [product("a", owner="p1"), product("b", owner="p1"), product("c", owner="p2"),
         product("card", owner="p2", kind="credit_card"), product("off", owner="p2", status="paused")],
        pages=[page("home", PIN_SLOTS)],
        rules=[
            {"rule_id": "cap", "action": "partner_share_cap", "partner_id": "p1", "max_slots": 1},
            {"rule_id": "pa", "action": "pin", "product_id": "a", "slot_id": "top", "priority": 1},
            {"rule_id": "pc_top", "action": "pin", "product_id": "c", "slot_id": "top", "priority": 2},
            {"rule_id": "pa_again", "action": "pin", "product_id": "a", "slot_id": "second", "priority": 3},
            {"rule_id": "pb", "action": "pin", "product_id": "b", "slot_id": "second", "priority": 4},
            {"rule_id": "poff", "action": "pin", "product_id": "off", "slot_id": "second", "priority": 5},
            {"rule_id": "pcard", "action": "pin", "product_id": "card", "slot_id": "third", "priority": 6},
            {"rule_id": "pnowhere", "action": "pin", "product_id": "c", "slot_id": "nowhere", "priority": 7},
            {"rule_id": "pc", "action": "pin", "product_id": "c", "slot_id": "second", "priority": 8},
        ],
    )
    index = index_of(cat)
    f = facts_of(index, user())
    home = index._pages["home"]
    effects = effects_of(index, user())
    assignment = _Assignment(effects.caps)
    notes: dict[str, list[str]] = {}
    _pins(effects.pins, home, home.users.slots, index._by_id, reasons_of(index, f), assignment, notes)
    assert assignment.chosen == {"top": ("a", "pinned"), "second": ("c", "pinned")}
    assert assignment.pinned == {"a", "c"}
    assert assignment.cap_left == {"p1": 0}  # the pin of a took p1's one slot
    assert notes == {
        "c": ["pin rule pc_top ignored: slot already pinned by rule pa",
              "pin rule pnowhere ignored: slot not shown on this page"],
        "a": ["pin rule pa_again ignored: product already pinned"],
        "b": ["pin rule pb ignored: partner share cap reached"],
        "off": ["pin rule poff ignored: product filtered (status)"],
        "card": ["pin rule pcard ignored: slot does not accept this kind"],
    }


def test_a_pin_into_a_slot_visitors_do_not_see_is_noted_for_a_visitor():
    visitor_pin = {"rule_id": "pm", "action": "pin", "product_id": "a", "slot_id": "members"}
    cat = catalogue(
        [product("a", owner="in_house", requires_login=False)], pages=[page("home", PIN_SLOTS)], rules=[visitor_pin]
    )
    index = index_of(cat)
    visitor = facts_of(index, None)
    home = index._pages["home"]
    effects = effects_of(index, None)
    assignment = _Assignment(effects.caps)
    notes: dict[str, list[str]] = {}
    _pins(effects.pins, home, home.visitors.slots, index._by_id, reasons_of(index, visitor), assignment, notes)
    assert (assignment.chosen, notes) == ({}, {"a": ["pin rule pm ignored: slot not shown to visitors"]})


def test_the_optimal_assignment_fills_the_free_slots_within_caps():
    # p1: a 500 fen, b 400 fen, at most one slot; p2: c 100 fen.
    # Without the cap: a on top, b second. With it: a 50 fen + c 100 fen × 50% = 55 fen.
    cat = catalogue(
        [product("a", owner="p1", fee_fen=500), product("b", owner="p1", fee_fen=400),
         product("c", owner="p2", fee_fen=100)],
        pages=[page("home", HOME_SLOTS)],
    )
    index = index_of(cat)
    home = index._pages["home"]
    reason = reasons_of(index, facts_of(index, user()))
    scores = index.score_table(POLICY.view, "A")
    cands = _candidates(index._entries, reason, scores, set())
    assignment = _Assignment({"p1": 1})
    order = _free_slots(home.users.best_first, assignment)
    _assign_optimal(order, cands, scores, assignment)
    assert assignment.chosen == {"top": ("a", "optimal"), "second": ("c", "optimal")}
    assert assignment.cap_left == {"p1": 0}


def test_free_slots_keep_their_order_and_skip_the_filled():
    slots = [slot("low", 2000), slot("top", 9000), slot("mid", 5000)]
    index = index_of(catalogue([product("a")], pages=[page("home", slots)]))
    home = index._pages["home"]
    assignment = _Assignment({})
    assignment.chosen["mid"] = ("a", "pinned")
    assert [s.slot_id for s in _free_slots(home.users.best_first, assignment)] == ["top", "low"]
    assert [s.slot_id for s in _free_slots(home.users.slots, assignment)] == ["low", "top"]


def test_editorial_assignment_follows_the_page_order_within_caps():
    cat = catalogue(
        [product("a", owner="p1"), product("b", owner="p1"), product("c", owner="p2", kind="credit_card"),
         product("d", owner="p2"), product("off", owner="p2", status="paused")],
        pages=[page("home", [slot("top", 10000), slot("second", 5000, accepts=("loan",)), slot("third", 2500)],
                    editorial_order=["off", "b", "c", "a"])],
    )
    index = index_of(cat)
    reason = reasons_of(index, facts_of(index, user()))
    home = index._pages["home"]
    assignment = _Assignment({"p1": 1})
    # editorial order then the rest by id: off (filtered), b, c, a, d
    _assign_editorial(_free_slots(home.users.slots, assignment), index._editorial["home"], reason, assignment)
    # top: b (takes p1's one slot); second (loans): c is a card, a is p1's (capped), so d; third: c
    assert assignment.chosen == {"top": ("b", "editorial"), "second": ("d", "editorial"), "third": ("c", "editorial")}


def test_fallbacks_fill_empty_slots_past_frequency_caps_but_not_past_consent():
    cat = catalogue(
        [product("capped", owner="p1", daily_impression_cap=1), product("stranger", owner="p9"),
         product("a", owner="p1")],
        partners=[partner("p1"), partner("p9")],
        pages=[page("home", [
            slot("top", 10000, fallback_product_id="a"), slot("second", 5000, fallback_product_id="capped"),
            slot("third", 2500, fallback_product_id="stranger"), slot("fourth", 1000, fallback_product_id="a"),
        ])],
    )
    index = index_of(cat)
    f = facts_of(index, user(consents=("p1",)), UserState(impressions_today={"capped": 1}))
    reason = reasons_of(index, f)
    assert (reason["capped"], reason["stranger"]) == ("frequency_cap", "no_consent")
    assignment = _Assignment({})
    assignment.chosen["top"] = ("a", "optimal")
    notes: dict[str, list[str]] = {}
    _assign_fallbacks(index._pages["home"].users.slots, index._by_id, f, reason, assignment, notes)
    # second: capped, despite its frequency cap; third: not the stranger (no consent); fourth: a is already shown
    assert assignment.chosen == {"top": ("a", "optimal"), "second": ("capped", "fallback")}
    assert notes == {"capped": ["placed as second's fallback despite frequency_cap"]}


# -- exploration -----------------------------------------------------------------


def exploration_case() -> tuple[PlacementIndex, list, list, _Assignment]:
    """Loans a (p1, 500 fen), b (p1, 400), c (p2, 300), card d (p2, 200); p1 may take one slot."""
    cat = catalogue(
        [product("a", owner="p1", fee_fen=500), product("b", owner="p1", fee_fen=400),
         product("c", owner="p2", fee_fen=300), product("d", owner="p2", kind="credit_card", fee_fen=200)],
        pages=[page("home", [slot("top", 10000, accepts=("loan",)), slot("second", 5000)])],
    )
    index = index_of(cat)
    reason = reasons_of(index, facts_of(index, user()))
    scores = index.score_table(POLICY.view, "A")
    cands = _candidates(index._entries, reason, scores, set())
    assignment = _Assignment({"p1": 1})
    order = _free_slots(index._pages["home"].users.best_first, assignment)
    _assign_optimal(order, cands, scores, assignment)
    assert assignment.chosen == {"top": ("a", "optimal"), "second": ("c", "optimal")}
    return index, order, cands, assignment


EXPLORING = PlacementPolicy(exploration_bps=2000)


def explore(assignment, order, cands, draws, index):
    return _explore(order, cands, index.score_table(POLICY.view, "A"), assignment, EXPLORING, draws)


def test_exploration_logs_each_slots_exact_distribution_and_keeps_the_optimum_when_not_drawn():
    index, order, cands, assignment = exploration_case()
    # ε = 20% per slot, two explorable slots: no slot explores when the draw is ≥ 2 × 20%.
    explored = explore(assignment, order, cands, FixedDraws(draw=0.9), index)
    assert assignment.chosen == {"top": ("a", "optimal"), "second": ("c", "optimal")}
    top, second = dict(explored.distributions["top"]), dict(explored.distributions["second"])
    # top (loans): its alternatives are b (p1 in a's place) and c (swapped in from second): ε/2 each;
    # when second explores into a (ε/2), top shows c. P(a) = 1 − 20% − 10% = 70%, P(b) = 10%, P(c) = 20%.
    assert top == pytest.approx({"a": 0.7, "b": 0.1, "c": 0.2})
    # second: alternatives a (swapped down from top) and d (p2 in c's place; b would take a second p1 slot):
    # P(a) = 10% + 10% (top explores into c) = 20%, P(d) = 10%, P(c) = 70%.
    assert second == pytest.approx({"c": 0.7, "a": 0.2, "d": 0.1})
    assert explored.cost_micro_fen > 0


def test_an_explored_slot_shows_an_alternative_and_the_page_keeps_each_product_once():
    index, order, cands, assignment = exploration_case()
    # draw 0 picks the first explorable slot (top); pick 0 its best alternative, b
    explore(assignment, order, cands, FixedDraws(draw=0.0, pick=0), index)
    assert assignment.chosen == {"top": ("b", "exploration"), "second": ("c", "optimal")}
    assert assignment.cap_left == {"p1": 0}  # b took the p1 slot a gave back


def test_no_exploration_without_an_explorable_slot():
    index, order, cands, _ = exploration_case()
    assert explore(_Assignment({}), order, cands, FixedDraws(draw=0.0), index).distributions == {}


# -- explanation -----------------------------------------------------------------


def test_slot_decisions_value_each_slot_by_its_weight_in_page_order():
    slots = [slot("top", 10000), slot("mid", 5000), slot("low", 5000)]
    index = index_of(catalogue([product("a")], pages=[page("home", slots)]))
    home = index._pages["home"]
    chosen = {"low": ("b", "optimal"), "top": ("a", "pinned")}
    logged = {"low": (("b", 0.09), ("a", 0.91))}  # exploration's distribution of low: b shown with 9%
    decided, total = _slot_decisions(home.users.slots, home.position, chosen, {"a": 50_000_000, "b": 3}, logged)
    assert [(d.slot_id, d.position, d.product_id, d.reason, d.propensity_bps) for d in decided] == [
        ("top", 0, "a", "pinned", DETERMINISTIC_BPS),
        ("low", 2, "b", "optimal", 900),
    ]
    # 50,000,000 × 100%; 3 × 50% = 1.5 -> 2 (half away from zero)
    assert [d.expected_revenue_micro_fen for d in decided] == [50_000_000, 2]
    assert total == 50_000_002


def test_explanations_list_chosen_then_lost_then_filtered():
    cat = catalogue(
        [product("a", fee_fen=500), product("b", fee_fen=300), product("c", fee_fen=100), product("d", fee_fen=200),
         product("off", status="paused")],
        pages=[page("home", [slot("top", 10000)])],
    )
    index = index_of(cat)
    home = index._pages["home"]
    reason = {"a": None, "b": None, "c": None, "d": None, "off": "status"}
    scores = {"a": 50_000_000, "b": 30_000_000, "c": -1_000, "d": 20_000_000, "off": 10_000_000}
    decided, _ = _slot_decisions(home.users.slots, home.position, {"top": ("a", "optimal")}, scores, {})
    found = _explain(index._entries, home.users.best_first, decided, reason, scores, {"b": [15000]},
                     {"d": ["a note"]}, POLICY.view, "A", True)
    assert [(e.product_id, e.outcome, e.slot_id, e.lost_to, e.lost_by_micro_fen, e.filtered_by) for e in found] == [
        ("a", "chosen", "top", None, None, None),
        ("b", "lost", None, "a", 20_000_000, None),  # 50,000,000 − 30,000,000
        ("d", "lost", None, "a", 30_000_000, None),
        ("c", "lost", None, "a", 50_001_000, None),
        ("off", "filtered", None, None, None, "status"),
    ]
    by_id = {e.product_id: e for e in found}
    assert by_id["b"].components == {
        "platform_micro_fen": micro_fen_per_click_product(300), "group_micro_fen": micro_fen_per_click_product(300),
        "boost_factor_bps": 15000, "view": POLICY.view, "personalized": True,
    }
    assert by_id["d"].notes == ("a note",)
    assert by_id["c"].notes == ("negative expected revenue: showing it would lose money",)
