"""Finance reports: the CSV contract, the chart files, the terminal tables."""
import csv
import io
import tomllib
import xml.etree.ElementTree as ElementTree
from datetime import date
from pathlib import Path

import matplotlib.image
import pytest
from rich.console import Console

from wallet_market.domain.catalogue import Catalogue
from wallet_market.domain.finance import compare, parse_scenario
from wallet_market.domain.reconcile import SettlementLine, reconcile
from wallet_market.reports.finance import (
    percent,
    render_reconciliation,
    render_table,
    write_chart,
    write_csv,
    yuan,
)

CATALOGUE = Catalogue.from_dict(
    tomllib.loads(Path(__file__).with_name("finance_catalogue.toml").read_text(encoding="utf-8"))
)
SCENARIO = parse_scenario(
    {
        "name": "report",
        "segments": [
            {"name": "visitors", "logged_in": False, "impressions": 200_000},
            {"name": "prime_A", "risk_tier": "A", "logged_in": True, "impressions": 1_000_000},
            {"name": "risky_D", "risk_tier": "D", "logged_in": True, "impressions": 400_000},
        ],
    },
    CATALOGUE,
)
COMPARISON = compare(CATALOGUE, SCENARIO)
CONTRACT_COLUMNS = [
    "segment",
    "product_id",
    "owner",
    "settlement",
    "impressions",
    "clicks",
    "applications",
    "approvals",
    "loans",
    "disbursed_fen",
    "platform_revenue_fen",
    "group_contribution_fen",
    "rpm_platform_fen",
    "rpm_group_fen",
]


def printed(render, *args) -> str:
    console = Console(record=True, width=220, file=io.StringIO())
    render(*args, console=console)
    return console.export_text()


def test_the_csv_has_exactly_the_contract_columns_and_one_line_per_row(tmp_path):
    path = tmp_path / "compare.csv"
    write_csv(COMPARISON, path)
    with open(path, newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == CONTRACT_COLUMNS
    # visitors: the in-house loan only; prime_A: all four; risky_D: all but the card.
    assert len(lines) == 1 + 1 + 4 + 3
    prime_inhouse = next(line for line in lines if line[:2] == ["prime_A", "inhouse_loan"])
    assert prime_inhouse == [
        "prime_A", "inhouse_loan", "in_house", "self",
        "1000000", "50000", "25000", "10000", "1000",
        "800000000", "8000000", "32500000", "8000", "32500",
    ]  # fmt: skip


def test_a_png_chart_is_a_real_image(tmp_path):
    path = tmp_path / "compare.png"
    write_chart(COMPARISON, CATALOGUE, SCENARIO, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_an_svg_chart_is_an_svg_document(tmp_path):
    path = tmp_path / "compare.svg"
    write_chart(COMPARISON, CATALOGUE, SCENARIO, path)
    root = ElementTree.parse(path).getroot()
    assert root.tag.rsplit("}", 1)[-1] == "svg"
    text = path.read_text(encoding="utf-8")
    # SVG keeps its text: both panels and the break-even of prime_A (5.5%) are labelled.
    assert "break-even 5.50%" in text
    assert "xingyun_loan" in text


def test_a_chart_with_another_extension_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        write_chart(COMPARISON, CATALOGUE, SCENARIO, tmp_path / "compare.jpg")


def test_a_chart_without_any_referral_still_draws(tmp_path):
    scenario = parse_scenario({"name": "v", "segments": [{"name": "v", "logged_in": False, "impressions": 1}]})
    path = tmp_path / "visitors.png"
    write_chart(compare(CATALOGUE, scenario), CATALOGUE, scenario, path)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_the_terminal_table_shows_both_views_and_the_break_even():
    text = printed(render_table, COMPARISON)
    assert "Scenario report" in text
    # prime_A in-house loan: 80.00 RMB (platform) and 325.00 RMB (group) per 1,000 impressions.
    prime_inhouse = next(line for line in text.splitlines() if "prime_A" in line and "in_house" in line)
    assert "80,000.00" in prime_inhouse and "325,000.00" in prime_inhouse
    assert "80.00" in prime_inhouse and "325.00" in prime_inhouse
    summary = next(line for line in text.splitlines() if "prime_A" in line and "5.50%" in line)
    assert "32.00%" in summary
    assert "Sensitivity" in text
    apr = next(line for line in text.splitlines() if "prime_A" in line and " apr " in line)
    assert "-91.00" in apr and "xingyun_loan" in apr


def test_money_and_rates_are_shown_exactly():
    assert yuan(123_456_789) == "1,234,567.89"
    assert yuan(-5) == "-0.05"
    assert yuan(None) == "–"
    assert percent(550) == "5.50%"
    assert percent(-25) == "-0.25%"


def test_the_reconciliation_report_tells_the_clerk_what_to_do():
    day = date(2025, 3, 14)
    theirs = [SettlementLine("ev-1", "disbursed", 26_000, day), SettlementLine("ev-2", "approved", 20_000, day)]
    ours = [SettlementLine("ev-2", "approved", 15_000, day), SettlementLine("ev-9", "disbursed", 4_000, day)]
    text = printed(render_reconciliation, reconcile(theirs, ours))
    assert "DIFFERENCES" in text
    assert "Missing on our side (1)" in text and "ev-1" in text
    assert "Missing on their side (1)" in text and "claim them from the partner" in text
    assert "Amount mismatches (1)" in text
    mismatch = next(line for line in text.splitlines() if "ev-2" in line)
    assert "150.00" in mismatch and "200.00" in mismatch and "50.00" in mismatch
    # 460 RMB billed against 190 RMB booked.
    difference = next(line for line in text.splitlines() if "Difference" in line)
    assert "270.00" in difference


def test_a_clean_reconciliation_says_so():
    day = date(2025, 3, 14)
    lines = [SettlementLine("ev-1", "disbursed", 26_000, day)]
    text = printed(render_reconciliation, reconcile(lines, lines))
    assert "RECONCILED" in text
    assert "Missing" not in text
