"""Off-policy evaluation: hand-computed estimates, on-policy agreement, support warnings, synthetic truth."""
from __future__ import annotations

import random
from typing import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wallet_market.domain.ope import (
    LoggedDecision,
    LoggedSlot,
    candidate_from_table,
    evaluate,
    fit_reward_model,
    log_errors,
)

MU_TOP_A = {"p": 0.8, "q": 0.2}
MU_SIDE = {"c": 0.5, "d": 0.5}

# A 3-decision log; "top" is position 1, "side" position 2 (rewards: group, platform).
LOG = [
    LoggedDecision("d1", {"risk_tier": "A"}, (
        LoggedSlot("top", 1, "p", MU_TOP_A, 100, 40),
        LoggedSlot("side", 2, "c", MU_SIDE, 0, 0),
    )),
    LoggedDecision("d2", {"risk_tier": "A"}, (
        LoggedSlot("top", 1, "q", MU_TOP_A, 50, 20),
        LoggedSlot("side", 2, "d", MU_SIDE, 20, 10),
    )),
    LoggedDecision("d3", {"risk_tier": "B"}, (
        LoggedSlot("top", 1, "p", {"p": 0.5, "q": 0.5}, 0, 0),
    )),
]


def always(choice: Mapping[str, str]):
    """A deterministic candidate: slot id → product."""
    return lambda decision, slot: {choice[slot.slot_id]: 1.0}


# A reward model given as a table, whatever the context: q̂(top, p) = 60, q̂(top, q) = 40, q̂(side, c) = 10, q̂(side, d) = 30
TABLE = {("top", "p"): 60.0, ("top", "q"): 40.0, ("side", "c"): 10.0, ("side", "d"): 30.0}


def table_model(context, slot, product):
    return TABLE.get((slot.slot_id, product), 0.0)


def test_hand_computed_estimates_on_a_three_decision_log():
    # Candidate: top → q, side → d.
    # weights w = π(shown)/μ(shown): d1 top p → 0, d1 side c → 0, d2 top q → 1/0.2 = 5, d2 side d → 1/0.5 = 2, d3 top p → 0
    result = evaluate(LOG, always({"top": "q", "side": "d"}), reward_model=table_model)
    assert result["decisions"] == 3
    # logged: (100 + 0 + 50 + 20 + 0) / 5 slots = 34 per slot → 34,000 per 1000
    assert result["logged"] == {"rpm_fen": 34000}
    est = result["estimators"]
    # IPS: per decision V = [0, 5×50 + 2×20 = 290, 0] over K = [2, 2, 1] slots → 290/5 = 58 → 58,000
    # influences (V − 58K)/K̄ with K̄ = 5/3: −116×0.6 = −69.6, 174×0.6 = 104.4, −58×0.6 = −34.8
    # Var = (69.6² + 104.4² + 34.8²) / (3×2) = 16954.56/6 = 2825.76; se = 53.1579; 1.959964 × se = 104.1875
    assert est["ips"] == {"rpm_fen": 58000, "ci_low_fen": -46188, "ci_high_fen": 162188}
    # SNIPS: position 1: Σwr/Σw = 250/5 = 50 over 3 slots; position 2: 40/2 = 20 over 2 slots
    # value = (3×50 + 2×20)/5 = 38 → 38,000
    # influences Σₚ c̄ₚ(aᵢₚ − Rₚbᵢₚ)/(C b̄ₚ) + (Rₚ − T)(cᵢₚ − c̄ₚ)/C with C = 5/3, c̄ = (1, 2/3):
    #   every aᵢₚ − Rₚbᵢₚ is 0 here; (R₁ − T)/C = 12×0.6 = 7.2 and (R₂ − T)/C = −18×0.6 = −10.8
    #   d1: 7.2×0 − 10.8×(1 − 2/3) = −3.6; d2: −3.6; d3: −10.8×(0 − 2/3) = 7.2
    # Var = (3.6² + 3.6² + 7.2²)/6 = 77.76/6 = 12.96; se = 3.6; 1.959964 × 3.6 = 7.0559
    assert est["snips"] == {"rpm_fen": 38000, "ci_low_fen": 30944, "ci_high_fen": 45056}
    # DM: Σ_s q̂(candidate's product): d1 40 + 30 = 70, d2 70, d3 40 → 180/5 = 36 → 36,000
    # influences (V − 36K)×0.6: −1.2, −1.2, 2.4 → Var = 8.64/6 = 1.44; se = 1.2; 1.959964 × 1.2 = 2.3520
    assert est["dm"] == {"rpm_fen": 36000, "ci_low_fen": 33648, "ci_high_fen": 38352}
    # DR: DM + Σ w (r − q̂(shown)): d1 70 + 0, d2 70 + 5×(50 − 40) + 2×(20 − 30) = 100, d3 40 → 210/5 = 42
    # influences (V − 42K)×0.6: −8.4, 9.6, −1.2 → Var = 164.16/6 = 27.36; se = 5.2307; × 1.959964 = 10.2519
    assert est["dr"] == {"rpm_fen": 42000, "ci_low_fen": 31748, "ci_high_fen": 52252}
    # ESS = (Σw)²/Σw² = (5 + 2)² / (25 + 4) = 49/29 = 1.69
    assert result["effective_sample_size"] == 1.7
    assert result["support_bps"] == 10000
    assert result["warnings"] == []  # 1.69 is not below 1% of 5 slots


def test_the_platform_view_uses_platform_rewards():
    result = evaluate(LOG, always({"top": "q", "side": "d"}), view="platform", reward_model=table_model)
    assert result["logged"]["rpm_fen"] == 14000  # (40 + 20 + 10) / 5 × 1000
    assert result["estimators"]["ips"]["rpm_fen"] == 24000  # (5×20 + 2×10) / 5 × 1000


def test_the_fitted_reward_model_shrinks_each_level_toward_the_coarser_one():
    model = fit_reward_model(LOG, prior_strength=2)
    top, side = LOG[0].slots
    # overall mean: 170 / 5 = 34
    # product p (shown twice, 100 and 0): (100 + 2×34) / (2 + 2) = 42
    # p at position 1 (the same two slots): (100 + 2×42) / 4 = 46
    # p at position 1 for tier A (d1 only): (100 + 2×46) / 3 = 64; for tier B (d3 only): (0 + 92) / 3 = 30.67
    assert model({"risk_tier": "A"}, top, "p") == pytest.approx(64)
    assert model({"risk_tier": "B"}, top, "p") == pytest.approx(92 / 3)
    assert model({"risk_tier": "C"}, top, "p") == pytest.approx(46)  # a tier never logged: position level
    assert model({"risk_tier": "A"}, side, "p") == pytest.approx(42)  # a position never logged: product level
    assert model({"risk_tier": "A"}, top, "z") == pytest.approx(34)  # a product never logged: overall
    # without a model, DM uses the one fitted from the log (default strength)
    fitted = fit_reward_model(LOG)
    candidate = always({"top": "q", "side": "d"})
    assert evaluate(LOG, candidate)["estimators"]["dm"] == evaluate(LOG, candidate, reward_model=fitted)["estimators"]["dm"]


def test_a_stochastic_candidate_and_a_table_of_distributions():
    table = {
        "d1": {"top": {"p": 0.5, "q": 0.5}, "side": {"d": 1.0}},
        "d2": {"top": {"p": 0.5, "q": 0.5}, "side": {"d": 1.0}},
        "d3": {"top": {"p": 0.5, "q": 0.5}},
    }
    result = evaluate(LOG, candidate_from_table(table), reward_model=table_model)
    # w: d1 top 0.5/0.8 = 0.625, d1 side 0, d2 top 0.5/0.2 = 2.5, d2 side 2, d3 top 0.5/0.5 = 1
    # IPS: 0.625×100 + 2.5×50 + 2×20 = 62.5 + 125 + 40 = 227.5 over 5 slots = 45.5 → 45,500
    assert result["estimators"]["ips"]["rpm_fen"] == 45500
    # DM: top 0.5×60 + 0.5×40 = 50, side 30: d1 80, d2 80, d3 50 → 210/5 = 42 → 42,000
    assert result["estimators"]["dm"]["rpm_fen"] == 42000


def test_the_candidate_equal_to_the_logging_policy_gives_the_logged_value():
    rng = random.Random(7)
    log = []
    for i in range(500):
        slots = []
        for position, products in ((1, "abcd"), (2, "xyz")):
            raw = [rng.random() + 0.05 for _ in products]
            mu = {p: r / sum(raw) for p, r in zip(products, raw)}
            shown = rng.choices(list(mu), weights=list(mu.values()))[0]
            reward = rng.choice((0, 0, 0, 120, 800))
            slots.append(LoggedSlot(f"s{position}", position, shown, mu, reward, reward // 4))
        log.append(LoggedDecision(f"d{i}", {"risk_tier": rng.choice("ABC")}, tuple(slots)))
    result = evaluate(log, lambda decision, slot: slot.logged_probs)
    logged = result["logged"]["rpm_fen"]
    assert result["estimators"]["ips"]["rpm_fen"] == logged  # every weight is exactly 1
    assert result["estimators"]["snips"]["rpm_fen"] == logged
    assert abs(result["estimators"]["dr"]["rpm_fen"] - logged) <= 0.05 * logged
    assert result["effective_sample_size"] == 1000.0 and result["support_bps"] == 10000


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 1000), st.floats(0.05, 1.0)), min_size=2, max_size=30))
def test_on_policy_ips_equals_the_logged_value(rows):
    log = [
        LoggedDecision(f"d{i}", {}, (LoggedSlot("s", 1, shown, {shown: p, "other": 1 - p}, reward, 0),))
        for i, (shown, reward, p) in enumerate(rows)
    ]
    result = evaluate(log, lambda decision, slot: slot.logged_probs)
    assert result["estimators"]["ips"]["rpm_fen"] == result["logged"]["rpm_fen"]
    assert result["estimators"]["snips"]["rpm_fen"] == result["logged"]["rpm_fen"]


def test_a_candidate_choosing_what_was_never_logged_gets_a_support_warning():
    # top → z, which no slot ever had a chance to show; side → d (supported): support 2 of 5 slots = 4000 bps
    result = evaluate(LOG, always({"top": "z", "side": "d"}), reward_model=table_model)
    assert result["support_bps"] == 4000
    assert len(result["warnings"]) == 1 and "support is 40.0%" in result["warnings"][0]
    # a stochastic candidate: half its mass on z in top → support (3×0.5 + 2) / 5 = 0.7 → 7000 bps
    half = lambda decision, slot: {"z": 0.5, "q": 0.5} if slot.slot_id == "top" else {"d": 1.0}  # noqa: E731
    assert evaluate(LOG, half, reward_model=table_model)["support_bps"] == 7000


def test_a_tiny_effective_sample_gets_a_warning():
    # 200 decisions, the rare product b shown once; a candidate always showing b has one weight of 100
    log = [
        LoggedDecision(f"d{i}", {}, (LoggedSlot("s", 1, "b" if i == 0 else "a", {"a": 0.99, "b": 0.01}, 10, 1),))
        for i in range(200)
    ]
    result = evaluate(log, always({"s": "b"}))
    assert result["effective_sample_size"] == 1.0  # 100² / 100²
    assert result["support_bps"] == 10000
    assert any("effective sample size 1.0 is below 1% of the 200 slots" in w for w in result["warnings"])


def test_an_empty_log_has_no_estimates():
    result = evaluate([], always({}))
    assert result["decisions"] == 0 and result["logged"]["rpm_fen"] is None
    assert result["estimators"]["dr"] == {"rpm_fen": None, "ci_low_fen": None, "ci_high_fen": None}
    assert result["support_bps"] is None and result["warnings"]


def test_bad_logs_and_candidates_are_named():
    bad = [LoggedDecision("d1", {}, (LoggedSlot("s", 1, "a", {"b": 1.0}, 0, 0),)),
           LoggedDecision("d2", {}, (LoggedSlot("s", 1, "a", {"a": 0.7, "b": 0.7}, 0, 0),))]
    errors = log_errors(bad)
    assert errors == {
        "decisions[0].slots[0].logged_probs": "must give the product shown (a) a positive probability",
        "decisions[1].slots[0].logged_probs": "probabilities must add up to 1",
    }
    with pytest.raises(ValueError, match=r"decisions\[0\]\.slots\[0\]\.logged_probs"):
        evaluate(bad, always({"s": "a"}))
    with pytest.raises(ValueError, match="candidate for decision d1, slot top"):
        evaluate(LOG, lambda decision, slot: {"p": 0.5})
    with pytest.raises(ValueError, match="view"):
        evaluate(LOG, always({"top": "p", "side": "c"}), view="partner")


# --- a synthetic world with a known truth --------------------------------------

TIERS = {"A": 0.5, "B": 0.3, "C": 0.2}
NEW_USER_SHARE = 0.3
# slot → (position, products it may show); each product earns its value when the user converts
SLOTS = {"top": (1, ("L1", "L2", "L3", "L4")), "side": (2, ("C1", "C2", "C3"))}
VALUE_FEN = {"L1": 900, "L2": 600, "L3": 1500, "L4": 400, "C1": 500, "C2": 800, "C3": 300}
BASE_RATE = {  # conversion probability in the top slot, per tier
    "L1": {"A": 0.30, "B": 0.20, "C": 0.10}, "L2": {"A": 0.35, "B": 0.35, "C": 0.30},
    "L3": {"A": 0.20, "B": 0.10, "C": 0.05}, "L4": {"A": 0.40, "B": 0.45, "C": 0.50},
    "C1": {"A": 0.30, "B": 0.30, "C": 0.20}, "C2": {"A": 0.15, "B": 0.25, "C": 0.30},
    "C3": {"A": 0.50, "B": 0.40, "C": 0.35},
}
POSITION_FACTOR = {1: 1.0, 2: 0.6}
EPSILON = 0.4
LOGGING_GREEDY = {"top": "L1", "side": "C1"}  # the published rules' pick, whatever the user
CANDIDATE = {  # a draft that picks per tier (and never L1 or C1)
    ("top", "A"): "L3", ("top", "B"): "L2", ("top", "C"): "L4",
    ("side", "A"): "C3", ("side", "B"): "C2", ("side", "C"): "C2",
}


def conversion_rate(tier: str, new_user: bool, position: int, product: str) -> float:
    # New users convert more on loans: something the fitted reward model (keyed by tier only) cannot see.
    lift = 1.3 if new_user and product.startswith("L") else 1.0
    return BASE_RATE[product][tier] * POSITION_FACTOR[position] * lift


def candidate_policy(decision: LoggedDecision, slot: LoggedSlot) -> dict[str, float]:
    return {CANDIDATE[(slot.slot_id, str(decision.context["risk_tier"]))]: 1.0}


def true_candidate_rpm() -> float:
    """The candidate's exact value per 1000 slots, summed over every context."""
    value = 0.0
    for tier, p_tier in TIERS.items():
        for new_user, p_new in ((True, NEW_USER_SHARE), (False, 1 - NEW_USER_SHARE)):
            for slot_id, (position, _) in SLOTS.items():
                product = CANDIDATE[(slot_id, tier)]
                value += p_tier * p_new * conversion_rate(tier, new_user, position, product) * VALUE_FEN[product]
    return value / len(SLOTS) * 1000


def simulate_log(seed: int, decisions: int) -> list[LoggedDecision]:
    rng = random.Random(seed)
    tiers, tier_weights = list(TIERS), list(TIERS.values())
    log = []
    for i in range(decisions):
        tier = rng.choices(tiers, tier_weights)[0]
        new_user = rng.random() < NEW_USER_SHARE
        slots = []
        for slot_id, (position, products) in SLOTS.items():
            # ε-greedy: the greedy pick with probability 1 − ε, else uniform over the slot's products
            mu = {p: EPSILON / len(products) + (1 - EPSILON) * (p == LOGGING_GREEDY[slot_id]) for p in products}
            shown = LOGGING_GREEDY[slot_id] if rng.random() >= EPSILON else rng.choice(products)
            converted = rng.random() < conversion_rate(tier, new_user, position, shown)
            reward = VALUE_FEN[shown] if converted else 0
            slots.append(LoggedSlot(slot_id, position, shown, mu, reward, reward // 5))
        log.append(LoggedDecision(f"d{i}", {"risk_tier": tier, "new_user": new_user}, tuple(slots)))
    return log


def test_dr_and_snips_intervals_cover_the_true_value_and_estimates_are_close():
    truth = true_candidate_rpm()
    covered = {"dr": 0, "snips": 0}
    for seed in range(30):
        estimators = evaluate(simulate_log(seed, 2000), candidate_policy)["estimators"]
        for name in covered:
            covered[name] += estimators[name]["ci_low_fen"] <= truth <= estimators[name]["ci_high_fen"]
    assert covered["dr"] >= 27 and covered["snips"] >= 27  # at least 90% of 30 seeds

    result = evaluate(simulate_log(1000, 20_000), candidate_policy)
    for name in ("ips", "snips", "dr"):
        assert abs(result["estimators"][name]["rpm_fen"] - truth) <= 0.15 * truth
    # the published rules earn less than the draft, and the log says so
    assert result["logged"]["rpm_fen"] < 0.85 * truth
    assert result["support_bps"] == 10000 and result["warnings"] == []
