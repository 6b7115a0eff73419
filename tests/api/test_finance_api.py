"""POST /finance/v1/compare over HTTP, against the served demo catalogue."""
import csv
import io

import pytest

from wallet_market.domain.finance import ROW_FIELDS

SCENARIO = {
    "name": "prime_vs_cps",
    "segments": [{"name": "prime", "risk_tier": "A", "logged_in": True, "impressions": 100_000}],
    "products": ["inhouse_loan", "xingyun_loan"],
}


def _compare(client, auth, body, role="finance", query=""):
    return client.post(f"/finance/v1/compare{query}", json=body, headers=auth(role))


def test_compare_answers_the_rows_segments_and_sensitivity_with_hand_computed_values(demo_app, client, auth):
    response = _compare(client, auth, SCENARIO)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["scenario"] == "prime_vs_cps" and body["ruleset_version"] == 1
    rows = {row["product_id"]: row for row in body["rows"]}
    assert list(rows) == ["inhouse_loan", "xingyun_loan"]
    for row in body["rows"]:
        assert set(row) == set(ROW_FIELDS)

    # xingyun_loan, tier A: 100,000 × 4% ctr = 4,000 clicks; × 30% apply = 1,200 applications;
    # × 45% approval = 540 approvals; × 60% draw = 324 loans; × 20,000 RMB = 648,000,000 fen disbursed;
    # payout: 70% new customers × 648,000,000 × 3% CPS = 13,608,000 fen, the same in both views;
    # per 1,000 impressions: 13,608,000 / 100 = 136,080 fen.
    assert rows["xingyun_loan"] == {
        "segment": "prime",
        "product_id": "xingyun_loan",
        "owner": "xingyun_cf",
        "settlement": "cps",
        "impressions": 100_000,
        "clicks": 4_000,
        "applications": 1_200,
        "approvals": 540,
        "loans": 324,
        "disbursed_fen": 648_000_000,
        "platform_revenue_fen": 13_608_000,
        "group_contribution_fen": 13_608_000,
        "rpm_platform_fen": 136_080,
        "rpm_group_fen": 136_080,
    }
    # inhouse_loan, tier A: 3,000 clicks, 750 applications, 262.5 → 263 approvals, 131.25 → 131 loans;
    # disbursed 131.25 × 800,000 = 105,000,000 fen; platform: 1% transfer price = 1,050,000 fen;
    # group: 131.25 loans × 8,000 × 13/24 × (18 − 3 − 2.5 − 2 − 1.5)% = 131.25 × 39,000 = 5,118,750 fen;
    # per 1,000 impressions: 10,500 and 51,187.5 → 51,188 fen.
    assert rows["inhouse_loan"]["approvals"] == 263 and rows["inhouse_loan"]["loans"] == 131
    assert rows["inhouse_loan"]["disbursed_fen"] == 105_000_000
    assert rows["inhouse_loan"]["platform_revenue_fen"] == 1_050_000
    assert rows["inhouse_loan"]["group_contribution_fen"] == 5_118_750
    assert (rows["inhouse_loan"]["rpm_platform_fen"], rows["inhouse_loan"]["rpm_group_fen"]) == (10_500, 51_188)

    [segment] = body["segments"]
    assert segment["best_referral_product_id"] == "xingyun_loan"
    assert segment["self_product_id"] == "inhouse_loan"
    assert segment["winner_platform_view"] == segment["winner_group_view"] == "xingyun_loan"
    # Break-even approval: at 100% approval self-lending earns 3% × 25% × 50% × 39,000 = 146.25 fen an
    # impression; 136.08 / 146.25 = 93.046% → 9,305 bps. Break-even loss: 0.056875 fen per margin bps,
    # so the loss would have to be 1,000 − 136.08 / 0.056875 = −1,392.6 bps: impossible, null.
    assert segment["breakeven_approval_rate_bps"] == 9_305
    assert segment["breakeven_annual_loss_bps"] is None

    parameters = {(e["role"], e["parameter"]) for e in body["sensitivity"]}
    assert ("winner", "cps_rate") in parameters and ("runner_up", "annual_loss") in parameters
    cps_up = next(e for e in body["sensitivity"] if e["parameter"] == "cps_rate")
    # Margins are rounded once from exact values: 136,080 − 51,187.5 = 84,892.5 → 84,893;
    # +20% CPS: 163,296 − 51,187.5 = 112,108.5 → 112,109; −20%: 108,864 − 51,187.5 = 57,676.5 → 57,677.
    assert cps_up["margin_base_rpm_fen"] == 84_893
    assert cps_up["margin_high_rpm_fen"] == 112_109 and cps_up["margin_low_rpm_fen"] == 57_677
    assert cps_up["flips"] is False


def test_overrides_change_only_the_fields_they_name(demo_app, client, auth):
    body = {
        **SCENARIO,
        "overrides": {"inhouse_loan": {"lending": {"annual_loss_bps": {"A": 0}}, "funnel": {"approval_rate_bps": {"A": 9500}}}},
    }
    response = _compare(client, auth, body)
    assert response.status_code == 200, response.get_json()
    rows = {row["product_id"]: row for row in response.get_json()["rows"]}
    # 3% × 25% × 95% × 50% = 0.35625% loans an impression → 356.25 loans; margin 18 − 3 − 0 − 2 − 1.5 = 11.5%:
    # 8,000 × 13/24 × 11.5% = 498.33 RMB a loan → 356.25 × 49,833.33 = 17,753,125 fen.
    assert rows["inhouse_loan"]["group_contribution_fen"] == 17_753_125
    assert response.get_json()["segments"][0]["winner_group_view"] == "inhouse_loan"
    assert rows["xingyun_loan"]["rpm_group_fen"] == 136_080


def test_a_bad_scenario_is_a_422_naming_the_field(demo_app, client, auth):
    bad_tier = {**SCENARIO, "segments": [{**SCENARIO["segments"][0], "risk_tier": "E"}]}
    response = _compare(client, auth, bad_tier)
    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == 422 and "segments[0].risk_tier" in body["errors"]

    unknown = {**SCENARIO, "products": [], "overrides": {"nowhere_loan": {"funnel": {"ctr_bps": 100}}}}
    response = _compare(client, auth, unknown)
    assert response.status_code == 422 and "overrides.nowhere_loan" in response.get_json()["errors"]

    out_of_range = {**SCENARIO, "overrides": {"xingyun_loan": {"funnel": {"ctr_bps": 20_000}}}}
    response = _compare(client, auth, out_of_range)
    assert response.status_code == 422
    assert "overrides.xingyun_loan.funnel.ctr_bps" in response.get_json()["errors"]

    response = client.post(
        "/finance/v1/compare", data="{not json", headers={**auth("finance"), "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.get_json()["errors"]


@pytest.mark.parametrize("role", ["app", "pm", "internal"])
def test_only_finance_keys_may_compare(demo_app, client, auth, role):
    assert _compare(client, auth, SCENARIO, role=role).status_code == 403


def test_no_key_is_a_401(demo_app, client):
    assert client.post("/finance/v1/compare", json=SCENARIO).status_code == 401


def test_csv_format_has_exactly_the_contract_columns(demo_app, client, auth):
    response = _compare(client, auth, SCENARIO, query="?format=csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == list(ROW_FIELDS)
    assert [r[1] for r in rows[1:]] == ["inhouse_loan", "xingyun_loan"]
    assert rows[2][ROW_FIELDS.index("platform_revenue_fen")] == "13608000"


def test_before_any_publish_compare_is_unavailable(client, auth):
    response = _compare(client, auth, SCENARIO)
    assert response.status_code == 503


def test_openapi_documents_the_scenario_body_and_answer(demo_app, client):
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/finance/v1/compare"]["post"]
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/Scenario"}
    assert {"name", "segments", "products", "overrides"} <= set(spec["components"]["schemas"]["Scenario"]["properties"])
    answer = operation["responses"]["200"]["content"]
    assert answer["application/json"]["schema"] == {"$ref": "#/components/schemas/Comparison"}
    assert "text/csv" in answer


def test_a_product_the_segment_cannot_be_shown_gets_a_note_saying_why(demo_app, client, auth):
    scenario = {
        "name": "tier_a_only",
        "segments": [
            {"name": "prime", "risk_tier": "A", "logged_in": True, "impressions": 1_000},
            {"name": "visitors", "logged_in": False, "impressions": 1_000},
        ],
        "products": ["haoyue_loan"],  # offered to tiers B, C and D only, and only after a login
    }
    response = _compare(client, auth, scenario)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["rows"] == []
    assert body["notes"] == [
        {"segment": "prime", "product_id": "haoyue_loan", "note": "not offered to risk tier A (its eligible tiers: B, C, D)"},
        {"segment": "visitors", "product_id": "haoyue_loan", "note": "needs a logged-in user; this segment is visitors"},
    ]
    both = _compare(client, auth, {**scenario, "products": ["inhouse_loan", "haoyue_loan"]}).get_json()
    assert [(r["segment"], r["product_id"]) for r in both["rows"]] == [("prime", "inhouse_loan"), ("visitors", "inhouse_loan")]
    assert len(both["notes"]) == 2  # every product asked about is either a row or a note


def test_an_override_restating_the_in_house_model_is_accepted(demo_app, client, auth):
    restated = {**SCENARIO, "overrides": {"inhouse_loan": {"settlement": {"model": "self", "transfer_price_bps": 200}}}}
    response = _compare(client, auth, restated)
    assert response.status_code == 200, response.get_json()
    rows = {row["product_id"]: row for row in response.get_json()["rows"]}
    # 131.25 loans per 100,000 impressions × 800,000 fen × 2% transfer price = 2,100,000 fen; 21,000 per 1,000.
    assert rows["inhouse_loan"]["platform_revenue_fen"] == 2_100_000 and rows["inhouse_loan"]["rpm_platform_fen"] == 21_000
    switched = _compare(client, auth, {**SCENARIO, "overrides": {"xingyun_loan": {"settlement": {"model": "self"}}}})
    assert switched.status_code == 422
    assert "overrides.xingyun_loan.settlement.model" in switched.get_json()["errors"]
    still_fixed = _compare(client, auth, {**SCENARIO, "overrides": {"inhouse_loan": {"settlement": {"model": "cps"}}}})
    assert still_fixed.status_code == 422
    assert "overrides.inhouse_loan.settlement.model" in still_fixed.get_json()["errors"]
