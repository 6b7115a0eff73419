"""Finance scenarios: validation with errors naming the field, partial overrides, TOML files."""
import tomllib
from pathlib import Path

import pytest

from wallet_market.domain.catalogue import Catalogue
from wallet_market.domain.finance import Scenario, ScenarioError, Segment, apply_overrides, parse_scenario
from wallet_market.reports.finance import load_scenario_file

CATALOGUE = Catalogue.from_dict(
    tomllib.loads(Path(__file__).with_name("finance_catalogue.toml").read_text(encoding="utf-8"))
)
SCENARIO_DIR = Path(__file__).resolve().parents[2] / "config" / "scenarios"
DEMO_PRODUCT_IDS = {
    "inhouse_loan",
    "xingyun_loan",
    "haoyue_loan",
    "qingshan_loan",
    "donghai_card",
    "nanfeng_card",
    "beichen_card",
}


def valid(**changes):
    data = {
        "name": "check",
        "segments": [
            {"name": "visitors", "logged_in": False, "impressions": 1_000},
            {"name": "tier_b", "risk_tier": "B", "logged_in": True, "impressions": 2_000},
        ],
    }
    data.update(changes)
    return data


def errors_of(data, catalogue=None):
    with pytest.raises(ScenarioError) as error:
        parse_scenario(data, catalogue)
    return error.value.errors


def test_a_valid_scenario_parses_with_defaults():
    scenario = parse_scenario(valid())
    assert scenario == Scenario(
        name="check",
        segments=(Segment("visitors", None, False, 1_000), Segment("tier_b", "B", True, 2_000)),
        products=(),
        overrides={},
        discount_rate_bps=0,
    )


def test_a_scenario_survives_its_own_json_shape():
    scenario = parse_scenario(
        valid(products=["xingyun_loan"], overrides={"xingyun_loan": {"funnel": {"ctr_bps": 300}}}, discount_rate_bps=500)
    )
    assert parse_scenario(scenario.to_dict()) == scenario


def test_an_unknown_risk_tier_names_the_segment():
    data = valid()
    data["segments"][1]["risk_tier"] = "E"
    assert errors_of(data) == {"segments[1].risk_tier": ["unknown risk tier (one of A, B, C, D)"]}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3%", "must be an integer"),
        (2.5, "must be an integer"),
        (True, "must be an integer"),
        (-5, "must not be negative"),
        (10_001, "must be between 0 and 10000"),
    ],
)
def test_a_bad_funnel_rate_names_the_product_and_field(value, message):
    data = valid(overrides={"xingyun_loan": {"funnel": {"ctr_bps": value}}})
    assert errors_of(data) == {"overrides.xingyun_loan.funnel.ctr_bps": [message]}


def test_unknown_fields_are_named_wherever_they_are():
    data = valid(
        colour="blue",
        overrides={"xingyun_loan": {"funnel": {"ctr": 300}, "pricing": {}}},
    )
    data["segments"][0]["device"] = "phone"
    errors = errors_of(data)
    assert errors["colour"] == ["unknown field"]
    assert errors["segments[0].device"] == ["unknown field"]
    assert errors["overrides.xingyun_loan.funnel.ctr"] == ["unknown field"]
    assert errors["overrides.xingyun_loan.pricing"] == ["unknown field (one of settlement, funnel, lending)"]


def test_every_problem_is_reported_at_once():
    data = valid(name="", discount_rate_bps=-1, products="xingyun_loan")
    data["segments"][0]["impressions"] = -10
    data["segments"][1]["logged_in"] = "yes"
    errors = errors_of(data)
    assert set(errors) == {
        "name",
        "discount_rate_bps",
        "products",
        "segments[0].impressions",
        "segments[1].logged_in",
    }


def test_segments_are_required_and_named_once():
    assert errors_of(valid(segments=[])) == {"segments": ["required: a non-empty list of segments"]}
    data = valid()
    data["segments"][1]["name"] = "visitors"
    del data["segments"][1]["impressions"]
    assert errors_of(data) == {
        "segments[1].name": ["duplicate segment name visitors"],
        "segments[1].impressions": ["required: a whole number of impressions"],
    }


def test_tiered_overrides_name_the_tier():
    data = valid(overrides={"inhouse_loan": {"lending": {"annual_loss_bps": {"E": 500, "D": 20_000}}}})
    assert errors_of(data) == {
        "overrides.inhouse_loan.lending.annual_loss_bps.E": ["unknown risk tier (one of A, B, C, D or default)"],
        "overrides.inhouse_loan.lending.annual_loss_bps.D": ["must be between 0 and 10000"],
    }


def test_overrides_keep_to_the_guards():
    data = valid(overrides={"inhouse_loan": {"lending": {"apr_bps": 3_600}, "funnel": {"term_months": 1}}})
    assert errors_of(data) == {
        # Guard 1: never above a 24% APR.
        "overrides.inhouse_loan.lending.apr_bps": ["must not exceed the 2400 bps APR cap"],
        # Guard 2: no loan of 60 days or less.
        "overrides.inhouse_loan.funnel.term_months": ["must be between 3 and 120 months (no loan of 60 days or less)"],
    }


def test_against_the_catalogue_unknown_products_and_impossible_overrides_are_named():
    data = valid(
        products=["xingyun_loan", "inhouse_loan", "nowhere_loan"],
        overrides={
            "ghost_loan": {"funnel": {"ctr_bps": 100}},
            "xingyun_loan": {"lending": {"opex_bps": 100}},
            "inhouse_loan": {"settlement": {"model": "cps"}},
        },
    )
    assert errors_of(data, CATALOGUE) == {
        "products[2]": ["unknown product nowhere_loan"],
        "overrides.ghost_loan": ["unknown product ghost_loan"],
        "overrides.xingyun_loan.lending": ["product xingyun_loan has no lending economics"],
        "overrides.inhouse_loan.settlement.model": ["the in-house loan's settlement model cannot change"],
    }


def test_an_override_for_a_product_left_out_of_the_comparison_is_an_error():
    data = valid(products=["inhouse_loan"], overrides={"xingyun_loan": {"funnel": {"ctr_bps": 100}}})
    assert errors_of(data, CATALOGUE) == {"overrides.xingyun_loan": ["product xingyun_loan is not among the scenario's products"]}


def test_an_override_changes_only_the_fields_it_names():
    inhouse = CATALOGUE.products["inhouse_loan"]
    changed = apply_overrides(inhouse, {"lending": {"annual_loss_bps": {"D": 900}}})
    assert changed.lending.annual_loss_bps == {"A": 400, "D": 900}
    assert changed.lending.apr_bps == 1_800
    assert changed.funnel == inhouse.funnel
    assert changed.settlement == inhouse.settlement
    assert changed.card() == inhouse.card()


def test_a_tier_override_of_a_flat_rate_keeps_the_other_tiers():
    xingyun = CATALOGUE.products["xingyun_loan"]
    changed = apply_overrides(xingyun, {"funnel": {"approval_rate_bps": {"D": 900}}})
    assert changed.funnel.approval_for("D") == 900
    assert changed.funnel.approval_for("A") == 2_500
    assert changed.funnel.approval_for(None) == 2_500
    assert changed.funnel.ctr_bps == xingyun.funnel.ctr_bps


def test_a_settlement_override_switches_a_partners_payout_model():
    changed = apply_overrides(
        CATALOGUE.products["xingyun_loan"], {"settlement": {"model": "per_credit_line", "fee_fen": 15_000}}
    )
    assert (changed.settlement.model, changed.settlement.fee_fen, changed.settlement.cps_rate_bps) == (
        "per_credit_line",
        15_000,
        250,
    )


def test_apply_overrides_refuses_a_bad_override():
    with pytest.raises(ScenarioError) as error:
        apply_overrides(CATALOGUE.products["xingyun_loan"], {"funnel": {"ctr_bps": -1}})
    assert error.value.errors == {"overrides.xingyun_loan.funnel.ctr_bps": ["must not be negative"]}


@pytest.mark.parametrize("name", ["base", "declined", "prime"])
def test_the_shipped_scenarios_load_and_name_only_demo_products(name):
    scenario = load_scenario_file(SCENARIO_DIR / f"{name}.toml")
    assert scenario.name == name
    assert scenario.segments
    assert set(scenario.overrides) <= DEMO_PRODUCT_IDS
    assert set(scenario.products) <= DEMO_PRODUCT_IDS


def test_the_declined_scenario_is_declined_traffic_and_prime_is_tier_a():
    declined = load_scenario_file(SCENARIO_DIR / "declined.toml")
    assert all(s.in_house_declined and s.logged_in for s in declined.segments)
    prime = load_scenario_file(SCENARIO_DIR / "prime.toml")
    assert {s.risk_tier for s in prime.segments} == {"A"}


def test_a_scenario_file_without_a_name_takes_the_file_name(tmp_path):
    path = tmp_path / "weekend.toml"
    path.write_text('[[segments]]\nname = "all"\nrisk_tier = "C"\nlogged_in = true\nimpressions = 10\n')
    assert load_scenario_file(path).name == "weekend"


def test_a_scenario_file_error_names_the_field(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        'name = "bad"\n[[segments]]\nname = "all"\nlogged_in = true\nimpressions = 10\n'
        "[overrides.xingyun_loan.funnel]\nctr_bps = 1.5\n"
    )
    with pytest.raises(ScenarioError) as error:
        load_scenario_file(path)
    assert error.value.errors == {"overrides.xingyun_loan.funnel.ctr_bps": ["must be an integer"]}
    assert "overrides.xingyun_loan.funnel.ctr_bps" in str(error.value)


def test_a_file_that_is_not_toml_is_refused(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = \n")
    with pytest.raises(ScenarioError) as error:
        load_scenario_file(path)
    assert list(error.value.errors) == ["_schema"]
    assert "broken.toml is not valid TOML" in error.value.errors["_schema"][0]


def test_a_scenario_file_is_checked_against_the_catalogue_when_given(tmp_path):
    path = tmp_path / "cards.toml"
    path.write_text('products = ["beichen_card"]\n[[segments]]\nname = "all"\nlogged_in = true\nimpressions = 10\n')
    with pytest.raises(ScenarioError) as error:
        load_scenario_file(path, CATALOGUE)
    assert error.value.errors == {"products[0]": ["unknown product beichen_card"]}
