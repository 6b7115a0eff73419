"""Learned funnel rates: Beta-smoothed priors that follow the observed counts, and placement follows them."""
import tomllib
from datetime import date, datetime, timezone
from fractions import Fraction
from pathlib import Path

import pytest

from wallet_market.domain.catalogue import Catalogue
from wallet_market.domain.learning import (
    ObservedFunnel,
    apply_learning,
    beta_smoothed_bps,
    decay_weight,
    decayed_counts,
    learned_funnel,
    learning_days,
    learning_window_days,
    parse_observed,
)
from wallet_market.domain.placement import PlacementIndex, PlacementPolicy, RequestContext, UserState, place
from wallet_market.domain.users import UserProfile

CATALOGUE_FILE = Path(__file__).resolve().parent.parent / "funnel_catalogue.toml"


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue.from_dict(tomllib.loads(CATALOGUE_FILE.read_text(encoding="utf-8")), version=1)


def test_beta_smoothing_blends_prior_and_evidence_by_their_weights():
    # prior 4% worth 200 trials (8 pseudo-successes) + 3 clicks in 100 trials: 11 / 300 = 3.6667% → 367 bps
    assert beta_smoothed_bps(3, 100, 400, 200) == 367
    # no evidence: the prior stands, whatever its weight
    assert beta_smoothed_bps(0, 0, 400, 200) == 400
    assert beta_smoothed_bps(0, 0, 400, 0) == 400
    # no prior weight: the observed rate, 1 / 8 = 12.5% → 1250 bps
    assert beta_smoothed_bps(1, 8, 400, 0) == 1250
    # more successes than trials (postbacks without their clicks) stays a rate
    assert beta_smoothed_bps(30, 10, 400, 0) == 10_000


def test_no_observations_leave_the_product_as_catalogued(catalogue):
    funnel = catalogue.products["cps_loan"].funnel
    assert learned_funnel(funnel, {}, 200) is funnel
    assert apply_learning(catalogue, {}, 200) is catalogue


def test_clicks_are_normalised_by_slot_position_weight(catalogue):
    # 1,000 impressions in a 30% slot are worth 300 best-slot impressions; 6 clicks there is a 2% best-slot ctr.
    observed = {"A": ObservedFunnel(weighted_impressions_bps=1_000 * 3_000, impressions=1_000, clicks=6)}
    funnel = learned_funnel(catalogue.products["gold_card"].funnel, observed, prior_strength=0)
    assert funnel.ctr_bps == 200


def test_the_prior_is_one_body_of_evidence_down_the_funnel(catalogue):
    # cps_loan priors: ctr 4%, apply 30%, approval 45%, draw 60%; strength 1,000 pseudo-impressions
    # → 40 pseudo-clicks, 12 pseudo-applications, 5.4 pseudo-approvals.
    observed = {"B": ObservedFunnel(weighted_impressions_bps=1_000 * 10_000, impressions=1_000,
                                    clicks=10, applications=10, approvals=2, loans=0)}
    funnel = learned_funnel(catalogue.products["cps_loan"].funnel, observed, prior_strength=1_000)
    assert funnel.ctr_bps == 250  # (10 + 40) / (1,000 + 1,000) = 2.5%
    assert funnel.apply_rate_bps == 4_400  # (10 + 12) / (10 + 40) = 44%
    # tier B: (2 + 0.45 × 12) / (10 + 12) = 7.4 / 22 = 33.636% → 3364
    assert funnel.approval_rate_bps["B"] == 3_364
    # tier A saw nothing: its prior, 45%
    assert funnel.approval_rate_bps["A"] == 4_500
    assert funnel.approval_rate_bps["default"] == 3_364  # every tier pooled: only B's evidence
    # draw: (0 + 0.6 × 5.4) / (2 + 5.4) = 3.24 / 7.4 = 43.784% → 4378
    assert funnel.draw_rate_bps == 4_378


def test_learned_rates_move_toward_the_observed_ones_as_data_arrives(catalogue):
    prior = catalogue.products["cps_loan"].funnel  # ctr 4%
    observed_ctr = Fraction(1, 100)  # the product really gets 1% in the best slot
    previous_gap = abs(Fraction(prior.ctr_bps, 10_000) - observed_ctr)
    for impressions in (100, 1_000, 10_000, 100_000):
        counts = {"A": ObservedFunnel(weighted_impressions_bps=impressions * 10_000, impressions=impressions,
                                      clicks=int(impressions * observed_ctr))}
        learned = learned_funnel(prior, counts, prior_strength=200)
        gap = abs(Fraction(learned.ctr_bps, 10_000) - observed_ctr)
        assert gap < previous_gap
        previous_gap = gap
    assert learned.ctr_bps == 101  # (1,000 + 8) / (100,000 + 200) = 1.006% → 101


def test_observed_counts_are_read_from_the_ledgers_hash():
    raw = {"cps_loan|A|imp": 10, "cps_loan|A|wimp": 60_000, "cps_loan|-|clk": 1, "gold_card|B|app": 2, "odd": 1}
    observed = parse_observed(raw)
    assert observed["cps_loan"]["A"] == ObservedFunnel(weighted_impressions_bps=60_000, impressions=10)
    assert observed["cps_loan"]["-"] == ObservedFunnel(clicks=1)
    assert observed["gold_card"]["B"] == ObservedFunnel(applications=2)


def test_placement_follows_the_learned_rates(catalogue):
    user = UserProfile(user_id="u1", risk_tier="A", share_with_partners=frozenset(catalogue.partners))
    context = RequestContext(page_id="home", now=datetime(2026, 1, 1, 12, tzinfo=timezone.utc), user=user)
    policy = PlacementPolicy()

    def top(cat):
        return place(PlacementIndex.build(cat, policy), context, UserState(), policy).product_in("top")

    assert top(catalogue) == "cps_loan"  # 136.08 fen per impression on priors
    # 20,000 top-slot impressions of cps_loan and 20 clicks: ctr ≈ (20 + 8) / 20,200 = 0.139% → 14 bps,
    # worth 136.08 × 14/400 = 4.76 fen per impression: own_loan (51.19) now wins the top slot.
    learned = apply_learning(
        catalogue,
        {"cps_loan": {"A": ObservedFunnel(weighted_impressions_bps=20_000 * 10_000, impressions=20_000, clicks=20)}},
        prior_strength=200,
    )
    assert learned.products["cps_loan"].funnel.ctr_bps == 14
    assert learned.version == catalogue.version
    assert top(learned) == "own_loan"
    assert catalogue.products["cps_loan"].funnel.ctr_bps == 400  # the published catalogue is untouched


# -- decay --------------------------------------------------------------------


def test_a_days_counts_weigh_half_per_half_life():
    assert decay_weight(0, 14) == 1
    assert decay_weight(14, 14) == Fraction(1, 2)
    assert decay_weight(28, 14) == Fraction(1, 4)
    assert decay_weight(7, 14) == Fraction(0.5 ** 0.5)  # 0.7071…
    assert float(decay_weight(7, 14)) == pytest.approx(0.70710678)
    assert decay_weight(400, 0) == 1  # half-life 0: no decay


def test_decayed_counts_add_up_each_day_times_its_weight():
    today = date(2026, 3, 10)
    by_day = [
        (date(2026, 3, 10), {"cps_loan|A|imp": 100, "cps_loan|A|clk": 4}),
        (date(2026, 3, 9), {"cps_loan|A|imp": 100, "cps_loan|A|clk": 2}),
        (date(2026, 3, 8), {"cps_loan|A|imp": 80}),
    ]
    # half-life 1 day: weights 1, 1/2, 1/4 → impressions 100 + 50 + 20 = 170, clicks 4 + 1 = 5
    assert decayed_counts(by_day, today, 1) == {"cps_loan|A|imp": 170, "cps_loan|A|clk": 5}
    # half-life 2 days: weights 1, 2^-0.5, 1/2 → impressions 100 + 70.71 + 40 = 210.71
    decayed = decayed_counts(by_day, today, 2)
    assert float(decayed["cps_loan|A|imp"]) == pytest.approx(210.7107, abs=1e-4)
    # no decay: plain sums
    assert decayed_counts(by_day, today, 0) == {"cps_loan|A|imp": 280, "cps_loan|A|clk": 6}


def test_the_window_reads_eight_half_lives_at_most_a_year():
    assert learning_window_days(14) == 112
    assert learning_window_days(60) == 365
    assert learning_window_days(0) == 365
    days = learning_days(date(2026, 3, 10), 1)
    assert days[0] == date(2026, 3, 10) and days[-1] == date(2026, 3, 3) and len(days) == 8


def test_decayed_counts_learn_like_whole_ones(catalogue):
    # Two days of 1,000 best-slot impressions each: today's 30 clicks count whole, yesterday's 10 at half
    # (half-life 1 day): clicks 30 + 5 = 35 over 1,000 + 500 impressions; no prior: 35 / 1,500 = 2.333% → 233 bps.
    raw = decayed_counts(
        [
            (date(2026, 3, 10), {"cps_loan|A|wimp": 1_000 * 10_000, "cps_loan|A|imp": 1_000, "cps_loan|A|clk": 30}),
            (date(2026, 3, 9), {"cps_loan|A|wimp": 1_000 * 10_000, "cps_loan|A|imp": 1_000, "cps_loan|A|clk": 10}),
        ],
        date(2026, 3, 10),
        1,
    )
    observed = parse_observed(raw)
    assert observed["cps_loan"]["A"].clicks == 35
    funnel = learned_funnel(catalogue.products["cps_loan"].funnel, observed["cps_loan"], prior_strength=0)
    assert funnel.ctr_bps == 233
