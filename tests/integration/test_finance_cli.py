"""``wallet-market finance compare`` and ``finance reconcile`` on the real store."""
import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.finance_ledger import (
    DEMO_CATALOGUE,
    XINGYUN_DAY_LINES,
    publish_demo,
    record_xingyun_day,
    settlement_csv,
    settlement_day,
)
from wallet_market.cli import main
from wallet_market.services.catalogue_files import read_catalogue_file
from wallet_market.domain.finance import ROW_FIELDS

ROOT = Path(__file__).resolve().parent.parent.parent
BASE_SCENARIO = ROOT / "config" / "scenarios" / "base.toml"
FINANCE_CATALOGUE = ROOT / "tests" / "unit" / "finance_catalogue.toml"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run(redis_url, key_prefix):
    """Run ``wallet-market`` against the test Redis and key prefix."""
    env = {
        "WALLET_MARKET_REDIS_URL": redis_url,
        "WALLET_MARKET_KEY_PREFIX": key_prefix,
        "WALLET_MARKET_ENV": "testing",
        "WALLET_MARKET_DEMO_CATALOGUE": str(DEMO_CATALOGUE),
    }

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return invoke


def _csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# -- compare --------------------------------------------------------------------------


def test_compare_writes_the_contract_csv_and_a_png_chart(run, tmp_path):
    rows_file, chart = tmp_path / "base.csv", tmp_path / "base.png"
    result = run("finance", "compare", "--scenario", str(BASE_SCENARIO), "--csv", str(rows_file), "--chart", str(chart))
    assert result.exit_code == 0, result.output
    # Nothing is published in this store yet: the demo catalogue file stands in, and the output says so.
    assert "demo catalogue" in result.output
    assert "Break-even" in result.output and "Sensitivity" in result.output and "logged_in_D" in result.output

    rows = _csv_rows(rows_file)
    assert rows[0] == list(ROW_FIELDS)
    by_key = {(r[0], r[1]): dict(zip(ROW_FIELDS, r)) for r in rows[1:]}
    # logged_in_A × xingyun_loan: 400,000 × 4% × 30% × 45% × 60% = 1,296 loans; × 20,000 RMB = 2,592,000,000 fen;
    # payout 70% × 2,592,000,000 × 3% = 54,432,000 fen.
    assert by_key[("logged_in_A", "xingyun_loan")]["loans"] == "1296"
    assert by_key[("logged_in_A", "xingyun_loan")]["platform_revenue_fen"] == "54432000"
    # Visitors see only what needs no login: the in-house loan.
    assert [key[1] for key in by_key if key[0] == "visitors"] == ["inhouse_loan"]

    data = chart.read_bytes()
    assert data.startswith(PNG_MAGIC)
    import matplotlib.image

    assert matplotlib.image.imread(chart).shape[2] in (3, 4)


def test_compare_uses_the_served_catalogue(run, comps, tmp_path):
    catalogue = read_catalogue_file(DEMO_CATALOGUE)
    for product in catalogue["products"]:
        if product["product_id"] == "xingyun_loan":
            product["settlement"]["cps_rate_bps"] = 100
    comps.admin.load(catalogue, actor="test", publish=True)
    rows_file = tmp_path / "served.csv"
    result = run("finance", "compare", "--scenario", str(BASE_SCENARIO), "--csv", str(rows_file))
    assert result.exit_code == 0, result.output
    assert "served rule-set version 1" in result.output
    by_key = {(r[0], r[1]): dict(zip(ROW_FIELDS, r)) for r in _csv_rows(rows_file)[1:]}
    # At a 1% CPS the served catalogue pays a third of the file's: 70% × 2,592,000,000 × 1% = 18,144,000 fen.
    assert by_key[("logged_in_A", "xingyun_loan")]["platform_revenue_fen"] == "18144000"


def test_compare_over_a_catalogue_file_with_an_svg_chart(run, tmp_path):
    scenario = tmp_path / "prime.toml"
    scenario.write_text(
        'name = "prime"\n[[segments]]\nname = "prime_A"\nrisk_tier = "A"\nlogged_in = true\nimpressions = 1_000_000\n',
        encoding="utf-8",
    )
    rows_file, chart = tmp_path / "prime.csv", tmp_path / "prime.svg"
    result = run(
        "finance", "compare", "--scenario", str(scenario), "--catalogue", str(FINANCE_CATALOGUE),
        "--csv", str(rows_file), "--chart", str(chart),
    )
    assert result.exit_code == 0, result.output
    by_product = {r[1]: dict(zip(ROW_FIELDS, r)) for r in _csv_rows(rows_file)[1:]}
    # The 325 RMB loan: 0.001 loans an impression × 32,500 fen = 32.5 fen → 32,500,000 fen for 1,000,000
    # impressions; platform view: 0.001 × 800,000 × 1% = 8 fen → 8,000,000. xingyun: 26 fen → 26,000,000.
    assert by_product["inhouse_loan"]["group_contribution_fen"] == "32500000"
    assert by_product["inhouse_loan"]["platform_revenue_fen"] == "8000000"
    assert by_product["xingyun_loan"]["platform_revenue_fen"] == "26000000"
    # Break-even loss: 26 fen = 0.001 × 800,000 × 13/24 × (11.5% − loss) → loss = 11.5% − 6% = 5.50%.
    assert "5.50%" in result.output
    import xml.etree.ElementTree as ElementTree

    assert ElementTree.parse(chart).getroot().tag.endswith("svg")


def test_a_bad_scenario_exits_2_naming_the_field(run, tmp_path):
    scenario = tmp_path / "bad.toml"
    scenario.write_text(
        'name = "bad"\n[[segments]]\nname = "s"\nrisk_tier = "E"\nlogged_in = true\nimpressions = 10\n'
        "[overrides.xingyun_loan.funnel]\nctr_bps = -5\n",
        encoding="utf-8",
    )
    result = run("finance", "compare", "--scenario", str(scenario))
    assert result.exit_code == 2
    assert "segments[0].risk_tier" in result.output
    assert "overrides.xingyun_loan.funnel.ctr_bps" in result.output


def test_a_chart_that_is_neither_png_nor_svg_exits_2(run, tmp_path):
    result = run("finance", "compare", "--scenario", str(BASE_SCENARIO), "--chart", str(tmp_path / "chart.gif"))
    assert result.exit_code == 2 and "chart.gif" in result.output


# -- reconcile ------------------------------------------------------------------------


@pytest.fixture
def ledger_day(app, comps, client):
    """xingyun_cf's postbacks of a settled day, in the ledger."""
    version = publish_demo(comps)
    day = settlement_day()
    record_xingyun_day(comps, client, day, version)
    return day


def test_a_file_that_matches_exits_0(run, ledger_day, tmp_path):
    theirs = tmp_path / "xingyun.csv"
    theirs.write_text(settlement_csv(XINGYUN_DAY_LINES, ledger_day), encoding="utf-8")
    report = tmp_path / "report.csv"
    result = run("finance", "reconcile", "--partner", "xingyun_cf", str(theirs), "--report", str(report))
    assert result.exit_code == 0, result.output
    assert "RECONCILED" in result.output
    rows = _csv_rows(report)
    assert [r[0] for r in rows[1:]] == ["matched"] * 4 + ["total"]
    # 30,000 + 37,037 + 15,000 − 15,000 = 67,037 fen on both sides.
    assert rows[-1][4:7] == ["67037", "67037", "0"]


def test_each_kind_of_difference_exits_1_and_the_report_lists_it(run, ledger_day, tmp_path):
    billed = [
        ("x-1", "disbursed", 30_000),  # matched
        ("x-2", "disbursed", 37_100),  # we booked 37,037: amount mismatch of +63
        ("x-4", "disbursed", 15_000),  # matched; its reversal x-5 is not billed: missing on their side
        ("x-9", "disbursed", 45_000),  # never reached our ledger: missing on our side
    ]
    theirs = tmp_path / "xingyun.csv"
    theirs.write_text(settlement_csv(billed, ledger_day), encoding="utf-8")
    report = tmp_path / "report.csv"
    result = run("finance", "reconcile", "--partner", "xingyun_cf", str(theirs), "--report", str(report))
    assert result.exit_code == 1, result.output
    assert "DIFFERENCES" in result.output
    for heading, event_id in (("Missing on our side", "x-9"), ("Missing on their side", "x-5"), ("Amount mismatches", "x-2")):
        assert heading in result.output and event_id in result.output

    rows = {r[1]: dict(zip(rows_header := _csv_rows(report)[0], r)) for r in _csv_rows(report)[1:]}
    assert rows_header[:7] == ["status", "event_id", "type", "date", "their_amount_fen", "our_amount_fen", "difference_fen"]
    assert rows["x-1"]["status"] == "matched"
    assert (rows["x-2"]["status"], rows["x-2"]["difference_fen"]) == ("amount_mismatch", "63")
    assert (rows["x-5"]["status"], rows["x-5"]["our_amount_fen"], rows["x-5"]["their_amount_fen"]) == (
        "missing_on_their_side", "-15000", ""
    )
    assert (rows["x-9"]["status"], rows["x-9"]["their_amount_fen"]) == ("missing_on_our_side", "45000")
    assert "dispute" in rows["x-9"]["action"] and "agree" in rows["x-2"]["action"]
    # x-5 is a claw-back the partner has not made yet: nothing to claim, expect it later.
    assert "later file" in rows["x-5"]["action"]
    # Totals: theirs 30,000 + 37,100 + 15,000 + 45,000 = 127,100; ours 67,037; difference 60,063.
    assert [rows[""]["their_amount_fen"], rows[""]["our_amount_fen"], rows[""]["difference_fen"]] == [
        "127100", "67037", "60063"
    ]


def test_json_output_for_machines(run, ledger_day, tmp_path):
    import json

    theirs = tmp_path / "xingyun.csv"
    theirs.write_text(settlement_csv(XINGYUN_DAY_LINES[:3], ledger_day), encoding="utf-8")
    result = run("finance", "reconcile", "--partner", "xingyun_cf", str(theirs), "--json")
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["days"] == [ledger_day.isoformat()]
    assert [line["event_id"] for line in body["missing_on_their_side"]] == ["x-5"]
    assert body["totals"] == {"their_total_fen": 82_037, "our_total_fen": 67_037, "difference_fen": 15_000}


def test_an_empty_file_for_a_day_with_postbacks_lists_them_all_as_missing_on_their_side(run, ledger_day, tmp_path):
    theirs = tmp_path / "empty.csv"
    theirs.write_text("event_id,type,amount_fen,date\n", encoding="utf-8")
    result = run("finance", "reconcile", "--partner", "xingyun_cf", str(theirs), "--date", ledger_day.isoformat(), "--json")
    assert result.exit_code == 1
    import json

    assert [line["event_id"] for line in json.loads(result.stdout)["missing_on_their_side"]] == ["x-1", "x-2", "x-4", "x-5"]


def test_unreadable_input_exits_2(run, ledger_day, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"event_id,type,amount_fen,date\nx-1,disbursed,thirty,{ledger_day.isoformat()}\n", encoding="utf-8")
    result = run("finance", "reconcile", "--partner", "xingyun_cf", str(bad))
    assert result.exit_code == 2 and "line 2, column amount_fen" in result.output

    no_amount = tmp_path / "no_amount.csv"
    no_amount.write_text("event_id,type,date\n", encoding="utf-8")
    result = run("finance", "reconcile", "--partner", "xingyun_cf", str(no_amount))
    assert result.exit_code == 2 and "amount_fen" in result.output

    good = tmp_path / "good.csv"
    good.write_text(settlement_csv(XINGYUN_DAY_LINES, ledger_day), encoding="utf-8")
    result = run("finance", "reconcile", "--partner", "nobody", str(good))
    assert result.exit_code == 2 and "nobody" in result.output

    assert run("finance", "reconcile", "--partner", "xingyun_cf").exit_code == 2
    assert run("finance", "reconcile", "--partner", "xingyun_cf", str(tmp_path / "absent.csv")).exit_code == 2


# -- demo -----------------------------------------------------------------------------


def test_the_demo_ends_with_the_base_scenarios_comparison(run, redis_client, key_prefix):
    try:
        result = run("demo")
    finally:
        # The demo keeps its catalogue under a prefix of its own.
        for key in redis_client.scan_iter(match=f"{key_prefix}-demo:*", count=1000):
            redis_client.delete(key)
    assert result.exit_code == 0, result.output
    layouts, _, finance = result.output.partition("finance — self-lending versus referral")
    assert "Visitor (not logged in)" in layouts
    assert "base.toml" in finance and "Per segment" in finance and "Sensitivity" in finance
    # Logged-in tier A: xingyun's 1,360.80 per 1,000 impressions beats the in-house 511.88 in both views.
    assert "logged_in_A: group view favours xingyun_loan, platform view xingyun_loan." in finance
