"""Exploration: ε per slot among its k best alternatives, exact per-slot distributions, guards and caps kept."""
import math
import random
import tomllib
from collections import Counter
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import pytest

from wallet_market.domain.catalogue import Catalogue
from wallet_market.domain.placement import PlacementIndex, PlacementPolicy, RequestContext, UserState, place
from wallet_market.domain.users import UserProfile

from tests.catalogue_builders import catalogue, demo_catalogue, page, partner, product, slot

CATALOGUE_FILE = Path(__file__).resolve().parent.parent / "funnel_catalogue.toml"
NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def funnel_catalogue():
    return Catalogue.from_dict(tomllib.loads(CATALOGUE_FILE.read_text(encoding="utf-8")), version=1)


def context(cat, personalized=True, tier="A"):
    user = UserProfile(user_id="u1", risk_tier=tier, personalized=personalized, share_with_partners=frozenset(cat.partners))
    return RequestContext(page_id="home", now=NOW, user=user)


def test_without_exploration_every_choice_is_certain(funnel_catalogue):
    policy = PlacementPolicy(exploration_bps=0)
    decision = place(PlacementIndex.build(funnel_catalogue, policy), context(funnel_catalogue), UserState(), policy)
    assert [(s.slot_id, s.product_id, s.propensity_bps, s.distribution) for s in decision.slots] == [
        ("top", "cps_loan", 10_000, ()),
        ("mid", "own_loan", 10_000, ()),
        ("low", "gold_card", 10_000, ()),
    ]
    assert decision.exploration_cost_micro_fen == 0


# The optimum for a consenting tier-A user: top cps_loan (136.08 fen), mid own_loan (51.1875 × 60%),
# low gold_card (24 × 30%); off the page: line_loan 19.2, app_loan 16.2, click_loan 3.
# Alternatives (the 3 best each slot could show, swapping with the slot holding them):
#   top (loans): own_loan (swap with mid), line_loan, app_loan
#   mid:         cps_loan (swap with top), gold_card (swap with low), line_loan
#   low:         own_loan (swap with mid: mid takes cards), line_loan, app_loan — not cps_loan: top takes no card
# With ε = 20% per slot, each alternative has 20% / 3 = 1/15.
EXPECTED = {
    "top": {"cps_loan": Fraction(11, 15), "own_loan": Fraction(2, 15), "line_loan": Fraction(1, 15),
            "app_loan": Fraction(1, 15)},
    "mid": {"own_loan": Fraction(10, 15), "cps_loan": Fraction(2, 15), "gold_card": Fraction(2, 15),
            "line_loan": Fraction(1, 15)},
    "low": {"gold_card": Fraction(11, 15), "own_loan": Fraction(2, 15), "line_loan": Fraction(1, 15),
            "app_loan": Fraction(1, 15)},
}


def test_each_slot_logs_its_exact_distribution(funnel_catalogue):
    policy = PlacementPolicy(exploration_bps=2_000)
    decision = place(PlacementIndex.build(funnel_catalogue, policy), context(funnel_catalogue), UserState(), policy,
                     rng=random.Random(3))
    for s in decision.slots:
        assert s.logging_distribution() == pytest.approx({k: float(v) for k, v in EXPECTED[s.slot_id].items()})
        assert math.fsum(s.logging_distribution().values()) == pytest.approx(1.0)


def test_the_shown_products_follow_the_logged_distributions(funnel_catalogue):
    policy = PlacementPolicy(exploration_bps=2_000)
    index = PlacementIndex.build(funnel_catalogue, policy)
    rng = random.Random(7)
    draws = 15_000
    shown = {sid: Counter() for sid in EXPECTED}
    for _ in range(draws):
        decision = place(index, context(funnel_catalogue), UserState(), policy, rng=rng)
        products = [s.product_id for s in decision.slots]
        assert len(set(products)) == len(products) == 3  # never a product twice
        explored = [s for s in decision.slots if s.reason == "exploration"]
        assert len(explored) in (0, 1, 2)  # one slot explores at most (two move when it swaps)
        for s in decision.slots:
            shown[s.slot_id][s.product_id] += 1
            assert s.propensity_bps == max(1, round(float(EXPECTED[s.slot_id][s.product_id]) * 10_000))
    for sid, expected in EXPECTED.items():
        for product_id, p in expected.items():
            sigma = math.sqrt(draws * p * (1 - p))
            assert abs(shown[sid][product_id] - draws * p) < 5 * sigma, (sid, product_id, shown[sid][product_id])


def test_the_expected_cost_of_exploration_is_computed_by_the_formula(funnel_catalogue):
    # Σ_s ε/|A(s)| Σ_b Δ(s, b), in fen (see placement's exploration stage):
    #   top: own (swap, 0.4 × 84.8925 = 33.957) + line (116.88) + app (119.88)                  = 270.717
    #   mid: cps (swap, −0.4 × −84.8925 = 33.957) + gold (swap, 0.3 × 27.1875 = 8.15625)
    #        + line (0.6 × 31.9875 = 19.1925)                                                  =  61.30575
    #   low: own (swap, −0.3 × −27.1875 = 8.15625) + line (0.3 × 4.8 = 1.44) + app (0.3 × 7.8 = 2.34) = 11.93625
    #   total 343.959 × 1/15 = 22.9306 fen
    policy = PlacementPolicy(exploration_bps=2_000)
    decision = place(PlacementIndex.build(funnel_catalogue, policy), context(funnel_catalogue), UserState(), policy,
                     rng=random.Random(1))
    assert decision.exploration_cost_micro_fen == 22_930_600
    # the layouts' mean value approaches the optimum less that cost
    index = PlacementIndex.build(funnel_catalogue, policy)
    rng = random.Random(5)
    values = [place(index, context(funnel_catalogue), UserState(), policy, rng=rng).total_expected_micro_fen
              for _ in range(20_000)]
    optimum = 173_992_500
    mean = sum(values) / len(values)
    assert abs((optimum - mean) - 22_930_600) < 1_500_000


def test_no_exploration_without_personalisation(funnel_catalogue):
    policy = PlacementPolicy(exploration_bps=10_000)
    index = PlacementIndex.build(funnel_catalogue, policy)
    rng = random.Random(1)
    for _ in range(50):
        decision = place(index, context(funnel_catalogue, personalized=False), UserState(), policy, rng=rng)
        assert all(s.propensity_bps == 10_000 and s.reason != "exploration" and not s.distribution
                   for s in decision.slots)


def test_pins_share_caps_and_eligibility_hold_under_exploration():
    products = [
        product("a1", owner="pa", fee_fen=900), product("a2", owner="pa", fee_fen=800),
        product("b1", owner="pb", fee_fen=700), product("c1", owner="pc", fee_fen=600),
        product("d1", owner="pd", fee_fen=500), product("pinned", owner="pb", fee_fen=10),
        product("young", owner="pc", fee_fen=2_000, eligibility={"age_min": 40}),
    ]
    cat = catalogue(
        products,
        pages=[page("home", [slot("s1", 10_000), slot("s2", 8_000), slot("s3", 6_000), slot("s4", 4_000)])],
        rules=[
            {"rule_id": "cap_pa", "action": "partner_share_cap", "partner_id": "pa", "max_slots": 1, "priority": 1},
            {"rule_id": "pin", "action": "pin", "product_id": "pinned", "slot_id": "s4", "priority": 2},
        ],
        partners=[partner(p) for p in ("pa", "pb", "pc", "pd")],
    )
    user = UserProfile(user_id="u", risk_tier="A", age=30, share_with_partners=frozenset({"pa", "pb", "pc", "pd"}))
    policy = PlacementPolicy(exploration_bps=3_000)
    index = PlacementIndex.build(cat, policy)
    rng = random.Random(11)
    explored = 0
    for _ in range(3_000):
        decision = place(index, RequestContext("home", NOW, user), UserState(), policy, rng=rng)
        shown = {s.slot_id: s.product_id for s in decision.slots}
        assert shown["s4"] == "pinned"
        assert sum(1 for p in shown.values() if p in ("a1", "a2")) <= 1
        assert "young" not in shown.values()
        for s in decision.slots:
            assert "young" not in s.logging_distribution()
            assert s.logging_distribution().get(s.product_id, 0) > 0
        explored += any(s.reason == "exploration" for s in decision.slots)
    assert 2_000 < explored < 2_900  # 3 free slots × 30% = 90% of layouts, minus slots without alternatives


def test_demo_layouts_keep_every_guard_while_exploring():
    cat = demo_catalogue()
    policy = PlacementPolicy(exploration_bps=2_000)
    index = PlacementIndex.build(cat, policy)
    rng = random.Random(2)
    for n in range(400):
        user = UserProfile(user_id=f"u{n}", risk_tier="ABCD"[n % 4], age=20 + n % 45,
                           share_with_partners=frozenset(list(cat.partners)[: n % 7]))
        exploring = place(index, RequestContext("home", NOW, user), UserState(), policy, rng=rng)
        certain = place(index, RequestContext("home", NOW, user), UserState(), PlacementPolicy())
        allowed = {s.product_id for s in certain.slots} | {e for s in exploring.slots for e in s.logging_distribution()}
        products = [s.product_id for s in exploring.slots]
        assert len(products) == len(set(products))
        assert sum(1 for p in products if cat.products[p].owner == "haoyue_mcl") <= 1
        for p in products:
            owner = cat.products[p].owner
            assert owner == "in_house" or owner in user.share_with_partners
            assert p in allowed
