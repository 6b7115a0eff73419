"""Experiments: sticky assignment, validation, per-arm results, lift with its interval, sample-ratio check."""
from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from wallet_market.domain.experiments import (
    Experiment,
    UnitOutcome,
    active_on_page,
    arm_summary,
    assign,
    assign_on_page,
    bucket,
    experiment_errors,
    experiment_results,
    ratio_of_means,
    rpm_lift,
    srm_p_value,
)

START = datetime(2025, 3, 1, tzinfo=timezone.utc)
END = datetime(2025, 4, 1, tzinfo=timezone.utc)
DURING = datetime(2025, 3, 15, 12, tzinfo=timezone.utc)


def experiment(**changes: object) -> Experiment:
    base = Experiment(
        experiment_id="home-boost", page="home", treatment_version=7, traffic_bps=8000, treatment_bps=5000,
        starts_at=START, ends_at=END, salt="s1", status="running",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# --- assignment --------------------------------------------------------------


def test_bucket_of_a_fixed_id_is_the_first_eight_bytes_of_its_sha256_modulo_10000():
    # sha256("s1:u42") starts ca09cd8cc77fa9ec → 14,558,393,274,977,987,052 → mod 10,000 = 7052
    assert bucket("s1:u42") == 7052
    # sha256("s1:arm:u42") starts af6bcf83b84486e9 → 12,640,424,943,784,593,129 → mod 10,000 = 3129
    assert bucket("s1:arm:u42") == 3129


def test_assignment_of_a_fixed_unit_follows_its_two_buckets():
    # traffic bucket 7052: in the experiment only when traffic_bps > 7052
    assert assign(experiment(traffic_bps=7052), "u42", DURING) is None
    assert assign(experiment(traffic_bps=7053, treatment_bps=5000), "u42", DURING) == "treatment"  # 3129 < 5000
    # arm bucket 3129: treatment only when treatment_bps > 3129
    assert assign(experiment(treatment_bps=3129), "u42", DURING) == "control"
    assert assign(experiment(treatment_bps=3130), "u42", DURING) == "treatment"


def test_no_arm_outside_the_window_or_unless_running():
    assert assign(experiment(), "u42", START) == "treatment"  # the window includes its start
    assert assign(experiment(), "u42", START - timedelta(seconds=1)) is None
    assert assign(experiment(), "u42", END) is None  # and excludes its end
    assert assign(experiment(status="stopped"), "u42", DURING) is None
    assert assign(experiment(status="shipped"), "u42", DURING) is None


def test_the_arm_does_not_change_when_the_traffic_share_grows():
    ids = [f"user-{i}" for i in range(2000)]
    small, large = experiment(traffic_bps=2000), experiment(traffic_bps=9000)
    for unit in ids:
        before = assign(small, unit, DURING)
        if before is not None:
            assert assign(large, unit, DURING) == before


@settings(max_examples=50, deadline=None)
@given(salt=st.text(min_size=1, max_size=12), unit=st.text(max_size=40),
       traffic=st.integers(0, 10000), treatment=st.integers(0, 10000))
def test_assignment_is_deterministic(salt, unit, traffic, treatment):
    exp = experiment(salt=salt, traffic_bps=traffic, treatment_bps=treatment)
    first = assign(exp, unit, DURING)
    assert assign(replace(exp), unit, DURING + timedelta(days=3)) == first
    if traffic == 0:
        assert first is None
    if traffic == 10000 and treatment in (0, 10000):
        assert first == ("treatment" if treatment == 10000 else "control")


@settings(max_examples=15, deadline=None)
@given(salt=st.text(min_size=1, max_size=12), traffic=st.integers(1000, 10000), treatment=st.integers(0, 10000))
def test_shares_of_20000_ids_match_traffic_and_treatment_bps(salt, traffic, treatment):
    exp = experiment(salt=salt, traffic_bps=traffic, treatment_bps=treatment)
    arms = [assign(exp, f"u{i}", DURING) for i in range(20_000)]
    entered = [a for a in arms if a is not None]
    # Within five standard errors of a binomial share, plus one unit for rounding.
    p_in = traffic / 10000
    assert abs(len(entered) / 20_000 - p_in) <= 5 * math.sqrt(p_in * (1 - p_in) / 20_000) + 1 / 20_000
    p_t = treatment / 10000
    share_t = sum(a == "treatment" for a in entered) / len(entered)
    assert abs(share_t - p_t) <= 5 * math.sqrt(p_t * (1 - p_t) / len(entered)) + 1 / len(entered)


def test_the_active_experiment_of_a_page_is_picked_among_several_pages():
    home = experiment()
    loans = experiment(experiment_id="loans-floor", page="loans", salt="s2", traffic_bps=10000)
    ended = experiment(experiment_id="home-old", starts_at=START - timedelta(days=60), ends_at=START)
    experiments = [ended, home, loans]
    assert active_on_page(experiments, "home", DURING) == home
    assert active_on_page(experiments, "loans", DURING) == loans
    assert active_on_page(experiments, "cards", DURING) is None
    assert active_on_page(experiments, "home", START - timedelta(days=1)) == ended
    assert assign_on_page(experiments, "home", "u42", DURING) == (home, "treatment")
    assert assign_on_page(experiments, "home", "u42", END) is None
    # u42 is held out at 70.52% traffic: the published rules
    assert assign_on_page([experiment(traffic_bps=7000)], "home", "u42", DURING) is None


def test_two_overlapping_experiments_on_one_page_resolve_to_the_earliest():
    first = experiment(experiment_id="b-first")
    later = experiment(experiment_id="a-later", starts_at=START + timedelta(days=1))
    assert active_on_page([later, first], "home", DURING) == first


# --- validation --------------------------------------------------------------


def test_a_valid_experiment_has_no_errors():
    assert experiment_errors(experiment()) == {}


def test_validation_names_each_bad_field():
    bad = experiment(
        experiment_id="Home Boost", page="", treatment_version=0, traffic_bps=10001, treatment_bps=-1,
        salt="", status="paused",
    )
    errors = experiment_errors(bad)
    assert set(errors) == {"experiment_id", "page", "treatment_version", "traffic_bps", "treatment_bps", "salt", "status"}
    assert "a-z" in errors["experiment_id"]
    assert "10000" in errors["traffic_bps"]
    assert experiment_errors(experiment(experiment_id="a" * 65)).keys() == {"experiment_id"}
    assert experiment_errors(experiment(experiment_id="a" * 64)) == {}
    assert experiment_errors(experiment(experiment_id="ab\n")).keys() == {"experiment_id"}
    assert experiment_errors(experiment(traffic_bps=True)).keys() == {"traffic_bps"}


def test_validation_of_the_window():
    assert experiment_errors(experiment(ends_at=START)) == {"ends_at": "must be after starts_at"}
    naive = experiment(starts_at=datetime(2025, 3, 1))
    assert set(experiment_errors(naive)) == {"starts_at"}


def test_one_running_experiment_per_page_at_a_time():
    stored = [experiment()]
    overlapping = experiment(experiment_id="home-two", starts_at=END - timedelta(days=1), ends_at=END + timedelta(days=9))
    assert "home-boost" in experiment_errors(overlapping, stored)["page"]
    after = experiment(experiment_id="home-two", starts_at=END, ends_at=END + timedelta(days=9))
    assert experiment_errors(after, stored) == {}
    elsewhere = experiment(experiment_id="loans-one", page="loans")
    assert experiment_errors(elsewhere, stored) == {}
    assert experiment_errors(overlapping, [experiment(status="stopped")]) == {}
    assert "already exists" in experiment_errors(experiment(page="loans"), stored)["experiment_id"]


# --- results -----------------------------------------------------------------

# A tiny data set, per unit (impressions, group contribution in fen):
#   control:   (10, 100), (20, 100), (10, 40)   Σx = 40, Σy = 240, R_c = 6 fen per impression
#   treatment: (10, 90),  (10, 70),  (20, 200)  Σx = 40, Σy = 360, R_t = 9 fen per impression
CONTROL = [UnitOutcome(10, 1, 0, 0, 50, 100), UnitOutcome(20, 2, 1, 1, 30, 100), UnitOutcome(10, 0, 0, 0, 25, 40)]
TREATMENT = [UnitOutcome(10, 1, 0, 0, 45, 90), UnitOutcome(10, 3, 1, 0, 35, 70), UnitOutcome(20, 2, 1, 1, 99, 200)]


def test_arm_totals_and_rpm():
    assert arm_summary(CONTROL) == {
        "units": 3, "impressions": 40, "clicks": 3, "approvals": 1, "loans": 1,
        "platform_revenue_fen": 105, "group_contribution_fen": 240,
        "rpm_group_fen": 6000,  # 240 × 1000 / 40
        "rpm_platform_fen": 2625,  # 105 × 1000 / 40 = 2625
    }
    assert arm_summary(TREATMENT)["rpm_platform_fen"] == 4475  # (45 + 35 + 99) × 1000 / 40
    # 1 fen over 3 impressions = 333.33 → 333; 2 over 3 = 666.67 → 667; 1 over 2000 = 0.5 → 1
    assert arm_summary([UnitOutcome(3, group_contribution_fen=1)])["rpm_group_fen"] == 333
    assert arm_summary([UnitOutcome(3, group_contribution_fen=2)])["rpm_group_fen"] == 667
    assert arm_summary([UnitOutcome(2000, group_contribution_fen=1)])["rpm_group_fen"] == 1  # 0.5 rounds up
    assert arm_summary([UnitOutcome(2000, group_contribution_fen=-1)])["rpm_group_fen"] == -1  # away from zero
    assert arm_summary([])["rpm_group_fen"] == 0


def test_ratio_of_means_variance_by_the_delta_method():
    # control residuals yᵢ − R xᵢ: 100 − 60 = 40, 100 − 120 = −20, 40 − 60 = −20
    # Σ residual² = 1600 + 400 + 400 = 2400; / (n − 1) = 1200; n x̄² = 3 × (40/3)² = 1600/3
    # Var(R_c) = 1200 / (1600/3) = 2.25
    ratio, variance = ratio_of_means([100, 100, 40], [10, 20, 10])
    assert ratio == 6.0 and math.isclose(variance, 2.25)
    # treatment residuals: 90 − 90 = 0, 70 − 90 = −20, 200 − 180 = 20 → Σ = 800; / 2 = 400
    # Var(R_t) = 400 / (1600/3) = 0.75
    ratio, variance = ratio_of_means([90, 70, 200], [10, 10, 20])
    assert ratio == 9.0 and math.isclose(variance, 0.75)


def test_lift_interval_and_p_value_on_a_hand_computed_data_set():
    # lift = 9/6 − 1 = 0.5 → 5000 bps
    # Var(lift) = Var(R_t)/R_c² + R_t² Var(R_c)/R_c⁴ = 0.75/36 + 81 × 2.25/1296 = 1/48 + 9/64 = 31/192
    # se = √(31/192) = 0.4018188; 1.959964 × se = 0.7875503
    # 95% CI = 0.5 ± 0.7875503 = [−0.2875503, 1.2875503] → [−2876, 12876] bps
    # z = 0.5 / 0.4018188 = 1.2443420; p = erfc(1.2443420 / √2) = 0.2133737
    lift = rpm_lift(CONTROL, TREATMENT)
    assert lift["metric"] == "rpm_group_fen"
    assert lift["estimate_bps"] == 5000
    assert (lift["ci_low_bps"], lift["ci_high_bps"]) == (-2876, 12876)
    assert math.isclose(lift["p_value"], 0.2133737, abs_tol=1e-7)


def test_srm_on_a_hand_computed_case():
    # 1000 units meant 50/50: expected 500 each; observed 460 control, 540 treatment
    # χ² = 40²/500 + 40²/500 = 6.4; p = erfc(√3.2) = erfc(1.7888544) = 0.0114120
    assert math.isclose(srm_p_value(460, 540, 5000), 0.0114120, abs_tol=1e-7)
    # 20% treatment of 1000: expected 800 / 200; observed 780 / 220
    # χ² = 20²/800 + 20²/200 = 0.5 + 2 = 2.5; p = erfc(√1.25) = erfc(1.1180340) = 0.1138463
    assert math.isclose(srm_p_value(780, 220, 2000), 0.1138463, abs_tol=1e-7)
    assert srm_p_value(500, 500, 5000) == 1.0
    assert srm_p_value(0, 0, 5000) is None
    assert srm_p_value(10, 0, 0) == 1.0 and srm_p_value(10, 1, 0) == 0.0


def test_results_bundle_arms_lift_and_srm():
    results = experiment_results(CONTROL, TREATMENT, 5000)
    assert results["arms"]["treatment"]["rpm_group_fen"] == 9000
    assert results["lift"]["estimate_bps"] == 5000
    assert results["srm_p_value"] == 1.0


def test_degenerate_results_give_none_not_exceptions():
    empty = experiment_results([], [], 5000)
    assert empty["arms"]["control"]["units"] == 0 and empty["arms"]["control"]["rpm_group_fen"] == 0
    assert empty["lift"]["estimate_bps"] is None and empty["lift"]["p_value"] is None
    assert empty["srm_p_value"] is None
    # control earns nothing: relative lift undefined
    zero_control = rpm_lift([UnitOutcome(10), UnitOutcome(5)], TREATMENT)
    assert zero_control["estimate_bps"] is None and zero_control["ci_low_bps"] is None
    # one unit per arm: an estimate but no interval
    single = rpm_lift([UnitOutcome(10, group_contribution_fen=50)], [UnitOutcome(10, group_contribution_fen=60)])
    assert single["estimate_bps"] == 2000 and single["ci_low_bps"] is None and single["p_value"] is None
    # no variation at all: no interval
    flat = [UnitOutcome(10, group_contribution_fen=50)] * 4
    assert rpm_lift(flat, flat)["estimate_bps"] == 0 and rpm_lift(flat, flat)["p_value"] is None
    # impressions without any unit in the other arm
    assert rpm_lift(CONTROL, [])["estimate_bps"] is None


def _aa_units(rng: random.Random, n: int) -> tuple[list[UnitOutcome], list[UnitOutcome]]:
    """Both arms from one skewed distribution: users differ in activity and in value."""
    arms: tuple[list[UnitOutcome], list[UnitOutcome]] = ([], [])
    for _ in range(n):
        impressions = 1 + int(rng.expovariate(1 / 12))
        value_per_impression = rng.lognormvariate(1.0, 1.2)
        group = int(impressions * value_per_impression * rng.random() * 2)
        arms[rng.random() < 0.5].append(UnitOutcome(impressions, group_contribution_fen=group))
    return arms


def test_an_aa_simulation_rejects_at_5_percent_about_5_percent_of_the_time():
    rejections = 0
    for seed in range(200):
        control, treatment = _aa_units(random.Random(seed), 2000)
        lift = rpm_lift(control, treatment)
        assert lift["p_value"] is not None
        rejections += lift["p_value"] < 0.05
        if abs(lift["p_value"] - 0.05) > 1e-3:  # away from the edge, where rounding to whole bps may tip it
            excludes_zero = lift["ci_low_bps"] > 0 or lift["ci_high_bps"] < 0
            assert excludes_zero == (lift["p_value"] < 0.05)
    assert 0.01 <= rejections / 200 <= 0.10
