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
    NOTHING_TO_COMPARE,
    chart_figure,
    percent,
    render_reconciliation,
    render_table,
    write_chart,
    write_csv,
    write_csv_files,
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


def _csv_dicts(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_the_csv_files_hold_the_summary_the_sensitivity_and_the_notes_beside_the_rows(tmp_path):
    written = write_csv_files(COMPARISON, tmp_path / "compare.csv")
    assert written == {
        "rows": tmp_path / "compare.csv",
        "summary": tmp_path / "compare.summary.csv",
        "sensitivity": tmp_path / "compare.sensitivity.csv",
        "notes": tmp_path / "compare.notes.csv",
    }
    assert next(csv.reader(open(written["rows"], encoding="utf-8"))) == CONTRACT_COLUMNS
    summary = {line["segment"]: line for line in _csv_dicts(written["summary"])}
    assert list(summary) == ["visitors", "prime_A", "risky_D"]
    # prime_A: the referral wins the platform view, self-lending the group view, until the annual loss
    # reaches 5.50% or the approval rate falls to 32.00% (the values the table shows).
    assert (summary["prime_A"]["winner_platform_view"], summary["prime_A"]["winner_group_view"]) == (
        "xingyun_loan", "inhouse_loan",
    )
    assert (summary["prime_A"]["breakeven_annual_loss_bps"], summary["prime_A"]["breakeven_approval_rate_bps"]) == (
        "550", "3200",
    )
    assert summary["visitors"]["best_referral_product_id"] == "" and summary["visitors"]["breakeven_annual_loss_bps"] == ""
    sensitivity = _csv_dicts(written["sensitivity"])
    assert len(sensitivity) == len(COMPARISON.sensitivity)
    apr = next(line for line in sensitivity if line["segment"] == "prime_A" and line["parameter"] == "apr")
    # APR 18% ± 20%: 14.40% and 21.60%; the margin over xingyun_loan goes from −91.00 to 221.00 ¥ per 1,000.
    assert (apr["low_value"], apr["high_value"], apr["margin_low_rpm_fen"], apr["margin_high_rpm_fen"]) == (
        "1440", "2160", "-9100", "22100",
    )
    assert apr["flips"] == "True" and apr["winner_low"] == "xingyun_loan"
    notes = _csv_dicts(written["notes"])
    assert {(n["segment"], n["product_id"]) for n in notes} == {
        ("visitors", "donghai_card"), ("visitors", "haoyue_loan"), ("visitors", "xingyun_loan"), ("risky_D", "donghai_card"),
    }


def test_the_table_notes_what_a_segment_cannot_be_shown():
    text = printed(render_table, COMPARISON)
    assert "risky_D × donghai_card: not offered to risk tier D (its eligible tiers: A, B)" in text


def _bars(axes):
    return [patch for patch in axes.patches if patch.get_width() > 0]


def test_group_and_platform_bars_stand_side_by_side():
    figure = chart_figure(COMPARISON, CATALOGUE, SCENARIO)
    by_product = figure.axes[0]
    bars = sorted(_bars(by_product), key=lambda bar: bar.get_x())
    assert len(bars) == 2 * len(COMPARISON.rows)  # one group and one platform bar per row
    for left, right in zip(bars, bars[1:]):
        assert left.get_x() + left.get_width() <= right.get_x() + 1e-9  # no bar overlaps another


def test_the_break_even_panel_marks_each_tiers_current_loss_and_its_legend_covers_no_line():
    figure = chart_figure(COMPARISON, CATALOGUE, SCENARIO)
    by_loss = figure.axes[1]
    verticals = {line.get_xdata()[0] for line in by_loss.get_lines() if line.get_linestyle() == ":"}
    # The in-house loan's annual loss in the catalogue: tier A 4%, tier D 10%.
    assert verticals == {4.0, 10.0}
    labels = by_loss.get_legend_handles_labels()[1]
    assert "prime_A: current loss 4.00%" in labels and "risky_D: current loss 10.00%" in labels
    assert max(by_loss.get_xlim()) > 10.0  # tier D's 10% is inside the axis, not on its edge
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    for axes in figure.axes:
        legend = axes.get_legend()
        assert legend is not None
        assert not legend.get_window_extent(renderer).overlaps(axes.get_window_extent(renderer))


def test_a_scenario_with_nothing_to_compare_says_so_in_words(tmp_path):
    scenario = parse_scenario(
        {"name": "none", "segments": [{"name": "v", "logged_in": False, "impressions": 1}], "products": ["xingyun_loan"]},
        CATALOGUE,
    )
    comparison = compare(CATALOGUE, scenario)
    assert comparison.rows == ()
    figure = chart_figure(comparison, CATALOGUE, scenario)
    by_product, by_loss = figure.axes
    assert not by_product.axison and not by_loss.axison
    assert any(NOTHING_TO_COMPARE in text.get_text().replace("\n", " ") for text in by_product.texts)
    assert any("no break-even" in text.get_text().replace("\n", " ") for text in by_loss.texts)
    path = tmp_path / "none.svg"
    write_chart(comparison, CATALOGUE, scenario, path)
    assert "Nothing to compare" in path.read_text(encoding="utf-8")
