"""The simulator with known truth: estimators of a draft's value against the truth, an A/A experiment, the command.

The estimator tests log with the published rules and estimate a draft that damps a card for tier D. The log is
made as an evaluation campaign would make it: exploration raised to 1,000 bps (at the default 200 bps an
explored alternative has a probability of 0.67%, so the few logged layouts that agree with a changed choice
carry weights of about 150, and a day of 20,000 users pins a draft only when it changes very little), and
learning held still (``prior_strength`` very large), so the log's policy is stationary and the draft differs
from it by its rule alone. The dense funnels of ``sim_catalogue.toml`` carry enough conversions for the
intervals' normal approximation.
"""
import copy
import json
from pathlib import Path

import pytest

from wallet_market.services.catalogue_admin import canonical
from wallet_market.services.catalogue_files import read_catalogue_file
from wallet_market.services.evaluation import evaluate_rows
from wallet_market.settings import load_settings
from wallet_market.simulator import Simulation, catalogue_body

SIM_CATALOGUE = Path(__file__).resolve().parent.parent / "sim_catalogue.toml"
ESTIMATORS = ("dr", "snips")


@pytest.fixture
def sim_settings(settings_overrides):
    return load_settings(overrides={**settings_overrides, "exploration_bps": 1_000, "prior_strength": 10**7})


@pytest.fixture(scope="module")
def published():
    return catalogue_body(read_catalogue_file(SIM_CATALOGUE))


@pytest.fixture(scope="module")
def draft(published):
    body = copy.deepcopy(published)
    body["rules"].append(canonical("rules", {
        "rule_id": "damp_gold_d", "action": "boost", "product_id": "gold_card", "factor_bps": 8_000,
        "condition": {"risk_tier": ["D"]}, "priority": 30,
    }))
    return body


def estimate(settings, published, draft, seed, users):
    """Log ``users`` for a day with the published rules; the draft's estimates and its true value on that log."""
    with Simulation(settings, users=users, days=1, seed=seed, published=published, candidate=draft) as sim:
        sim.run()
        rows = sim.logged()
        serving = sim.candidate_serving()
        estimates = evaluate_rows(serving, sim.comps.policy, rows, "group", label="draft")
        truth = sim.true_rpm(serving, rows, "group")
        published_truth = sim.true_rpm(sim.serving(), rows, "group")
    return estimates, truth, published_truth


def covers(estimate, truth):
    return estimate["ci_low_fen"] <= truth <= estimate["ci_high_fen"]


def test_dr_and_snips_intervals_contain_the_drafts_true_value_in_nine_seeds_of_ten(sim_settings, published, draft):
    covered = {name: 0 for name in ESTIMATORS}
    changed = 0
    for seed in range(1, 11):
        estimates, truth, published_truth = estimate(sim_settings, published, draft, seed, users=1_000)
        changed += truth != published_truth
        assert estimates["support_bps"] >= 9_000
        for name in ESTIMATORS:
            covered[name] += covers(estimates["estimators"][name], truth)
    assert changed == 10  # the draft is not the published policy under another name
    assert covered["dr"] >= 9, covered
    assert covered["snips"] >= 9, covered


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_with_20000_users_dr_and_snips_are_within_15_percent_of_the_truth(sim_settings, published, draft):
    estimates, truth, published_truth = estimate(sim_settings, published, draft, seed=2026, users=20_000)
    assert estimates["decisions"] >= 19_000
    for name in ESTIMATORS:
        value = estimates["estimators"][name]
        assert abs(value["rpm_fen"] - truth) <= 0.15 * truth, (name, value, truth)
        assert covers(value, truth), (name, value, truth)
    assert estimates["effective_sample_size"] > estimates["decisions"]  # over the slots: about half of them
    assert published_truth != truth


def test_an_a_a_experiment_shows_no_significant_lift(sim_settings, published):
    # The treatment is the published catalogue frozen again: the same policy under another version number.
    with Simulation(sim_settings, users=3_000, days=1, seed=11, published=published, candidate=published) as sim:
        sim.add_experiment(experiment_id="a-a", page="home", treatment_version=sim.candidate_version,
                           traffic_bps=10_000, treatment_bps=5_000)
        sim.run()
        results = sim.comps.experiments.results("a-a")
    arms = {a["arm"]: a for a in results["arms"]}
    assert arms["control"]["units"] + arms["treatment"]["units"] >= 2_900
    assert arms["control"]["impressions"] > 0 and arms["treatment"]["impressions"] > 0
    lift = results["lift"]
    # At the 5% false-positive rate of a 95% interval: not significant, and the interval contains no lift.
    assert lift["p_value"] >= 0.05, lift
    assert lift["ci_low_bps"] <= 0 <= lift["ci_high_bps"], lift
    assert results["srm_p_value"] >= 0.001


def test_a_seed_gives_the_same_experiment_again(sim_settings, published):
    # Units are hashed into arms with a salt of the seed's: two runs of one seed split and count alike.
    def run(seed):
        with Simulation(sim_settings, users=300, days=1, seed=seed, published=published, candidate=published) as sim:
            sim.add_experiment(experiment_id="again", page="home", treatment_version=sim.candidate_version,
                               traffic_bps=10_000, treatment_bps=5_000)
            sim.run()
            results = sim.comps.experiments.results("again")
        return [(a["arm"], a["units"], a["impressions"]) for a in results["arms"]], results["lift"]

    first = run(5)
    assert first == run(5)
    assert first[0] != run(6)[0]


def test_the_simulate_command_runs_apart_from_real_traffic_and_cleans_up(cli, cli_env, comps, redis_client, key_prefix,
                                                                         tmp_path):
    from click.testing import CliRunner

    from wallet_market.cli import main

    comps.admin.load(read_catalogue_file(SIM_CATALOGUE), actor="test", publish=True)
    comps.admin.create("rules", {"rule_id": "pin_card", "action": "pin", "page_id": "home", "slot_id": "second",
                                 "product_id": "silver_card", "priority": 1}, actor="test")
    analysis = tmp_path / "analysis"
    env = {**cli_env, "WALLET_MARKET_ANALYSIS_DIR": str(analysis)}
    published_run = CliRunner().invoke(main, ["simulate", "--users", "60", "--days", "1", "--seed", "7", "--json"],
                                       env=env)
    assert published_run.exit_code == 0, published_run.output
    answer = json.loads(published_run.output)
    assert {"policy", "decisions", "impressions", "rpm_group_fen", "rpm_platform_fen"} <= set(answer)
    assert answer["policy"] == "published version 1" and answer["decisions"] == 60 and answer["impressions"] > 0
    draft_run = CliRunner().invoke(main, ["simulate", "--users", "60", "--seed", "7", "--candidate", "draft", "--json"],
                                   env=env)
    assert draft_run.exit_code == 0, draft_run.output
    assert json.loads(draft_run.output)["policy"] == "draft"
    # Nothing left under the simulation's prefix, nothing written to the real ledger or analysis log.
    assert not list(redis_client.scan_iter(match=f"{key_prefix}-sim-7:*"))
    assert redis_client.exists(comps.keys.event_stream()) == 0
    assert redis_client.exists(comps.keys.decisions()) == 0
    assert not analysis.exists()
    assert comps.catalogue_store.current_version() == 1
    bad = CliRunner().invoke(main, ["simulate", "--users", "0"], env=env)
    assert bad.exit_code == 2
