"""Exploration: a configured share of decisions picks at random, and every slot records its propensity."""
import math
import random
import tomllib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from wallet_market.domain.catalogue import Catalogue
from wallet_market.domain.placement import PlacementIndex, PlacementPolicy, RequestContext, UserState, place
from wallet_market.domain.users import UserProfile

CATALOGUE_FILE = Path(__file__).resolve().parent.parent / "funnel_catalogue.toml"
NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue.from_dict(tomllib.loads(CATALOGUE_FILE.read_text(encoding="utf-8")), version=1)


def context(catalogue, personalized=True):
    user = UserProfile(
        user_id="u1", risk_tier="A", personalized=personalized, share_with_partners=frozenset(catalogue.partners)
    )
    return RequestContext(page_id="home", now=NOW, user=user)


def test_without_exploration_every_choice_is_certain(catalogue):
    policy = PlacementPolicy(exploration_bps=0)
    decision = place(PlacementIndex.build(catalogue, policy), context(catalogue), UserState(), policy)
    assert [(s.slot_id, s.product_id, s.propensity_bps) for s in decision.slots] == [
        ("top", "cps_loan", 10_000),
        ("mid", "own_loan", 10_000),
        ("low", "gold_card", 10_000),
    ]


def test_explored_top_slot_records_the_exact_probability_of_what_it_shows(catalogue):
    # ε = 20%. The top slot (loans only) may show cps_loan (the optimum) or, at random, any loan not
    # placed elsewhere: cps_loan, line_loan, app_loan, click_loan (own_loan is in mid).
    # P(cps_loan) = 80% + 20%/4 = 85%; P(each other) = 20%/4 = 5%.
    policy = PlacementPolicy(exploration_bps=2_000)
    index = PlacementIndex.build(catalogue, policy)
    rng = random.Random(7)
    shown: Counter = Counter()
    propensity: dict[str, int] = {}
    draws = 20_000
    for _ in range(draws):
        decision = place(index, context(catalogue), UserState(), policy, rng=rng)
        top = decision.slots[0]
        shown[top.product_id] += 1
        propensity[top.product_id] = top.propensity_bps
        assert top.reason == ("optimal" if top.product_id == "cps_loan" else "exploration")
        assert [(s.slot_id, s.product_id, s.propensity_bps) for s in decision.slots[1:]] == [
            ("mid", "own_loan", 10_000),
            ("low", "gold_card", 10_000),
        ]
    assert propensity == {"cps_loan": 8_500, "line_loan": 500, "app_loan": 500, "click_loan": 500}
    assert sum(propensity.values()) == 10_000
    for product_id, bps in propensity.items():
        p = bps / 10_000
        sigma = math.sqrt(draws * p * (1 - p))
        assert abs(shown[product_id] - draws * p) < 5 * sigma, (product_id, shown[product_id])


def test_no_exploration_without_personalisation(catalogue):
    policy = PlacementPolicy(exploration_bps=10_000)
    index = PlacementIndex.build(catalogue, policy)
    rng = random.Random(1)
    for _ in range(50):
        decision = place(index, context(catalogue, personalized=False), UserState(), policy, rng=rng)
        assert all(s.propensity_bps == 10_000 and s.reason != "exploration" for s in decision.slots)
