"""Finance's console pages: earned revenue against the model with charts, the comparison, reconciliation."""
from __future__ import annotations

import csv
import io
import re
from html import unescape
from datetime import datetime, timedelta, timezone

import pytest

from tests.console_fixtures import EARNED_FEN, MODELLED_XINGYUN_FEN, earn_demo_revenue
from tests.finance_ledger import SECRETS
from wallet_market.domain.finance import ROW_FIELDS


@pytest.fixture
def earned(demo_app, comps, api_keys):
    return earn_demo_revenue(comps, demo_app.test_client(), api_keys["app"])


def _today() -> str:
    return datetime.now(timezone.utc).date().isoformat()


def _row(html: str, table_id: str, label: str) -> list[str]:
    table = re.search(rf'<table[^>]*id="{table_id}">(.*?)</table>', html, re.S).group(1)
    row = re.search(rf'<tr>\s*<th scope="row">{re.escape(label)}</th>(.*?)</tr>', table, re.S).group(1)
    return re.findall(r"<td>(.*?)</td>", row, re.S)


def test_revenue_by_product_shows_earned_beside_modelled(finance, earned):
    response = finance.get(f"/console/revenue?from={_today()}&to={_today()}&group_by=product&view=group")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    cells = _row(html, "revenue-breakdown-table", "xingyun_loan")
    # impressions, clicks, applications, approvals, loans, disbursed, platform earned/modelled, group earned/modelled
    assert cells[:5] == ["1", "1", "0", "0", "1"]
    assert cells[5] == "10,000.00"
    assert cells[6:] == ["300.00", "1.36", "300.00", "1.36"]
    assert EARNED_FEN == 30_000 and MODELLED_XINGYUN_FEN == 136


def test_revenue_charts_are_inline_svg_with_a_point_per_day_and_a_bar_per_row(finance, earned):
    first = (datetime.now(timezone.utc).date() - timedelta(days=6)).isoformat()
    html = finance.get(f"/console/revenue?from={first}&to={_today()}&group_by=partner").get_data(as_text=True)
    series = re.search(r'<svg[^>]*id="revenue-by-day".*?</svg>', html, re.S).group(0)
    assert series.count('<g id="revenue-by-day-series-') == 2  # earned and modelled
    assert len(re.findall(r"<use [^>]*><title>", series)) == 14  # a point for each of 7 days, with its value
    assert f"<title>earned {_today()}: ¥300</title>" in series
    breakdown = re.search(r'<svg[^>]*id="revenue-breakdown".*?</svg>', html, re.S).group(0)
    partners = re.findall(r'<th scope="row">([^<]+)</th>', re.search(r'id="revenue-breakdown-table">(.*?)</table>', html, re.S).group(1))
    assert breakdown.count('<g id="revenue-breakdown-bar-') == 2 * len(partners)
    assert "xingyun_cf" in partners and "in_house" in partners
    assert 'role="img"' in breakdown and "<title" in breakdown


def test_revenue_by_risk_tier_and_slot(finance, earned):
    html = finance.get(f"/console/revenue?from={_today()}&to={_today()}&group_by=risk_tier").get_data(as_text=True)
    assert _row(html, "revenue-breakdown-table", "A")[6] == "300.00"
    html = finance.get(f"/console/revenue?from={_today()}&to={_today()}&group_by=slot").get_data(as_text=True)
    assert _row(html, "revenue-breakdown-table", "home/top_banner")[0] == "1"


@pytest.mark.parametrize(("query", "field"), [("from=yesterday", "from"), ("from=2026-01-02&to=2026-01-01", "to"),
                                              ("group_by=colour", "group_by"), ("from=2024-01-01&to=2026-01-01", "to")])
def test_revenue_form_errors_name_the_field(finance, query, field):
    response = finance.get(f"/console/revenue?{query}")
    assert response.status_code == 422
    assert f'id="f-{field.replace("_", "-")}-error"' in response.get_data(as_text=True)


def test_compare_shows_the_base_scenario_with_break_even_and_chart(finance):
    response = finance.get("/console/compare")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'name = "base"' in unescape(html)  # the scenario text, ready to edit
    segments = re.findall(r'<tr><th scope="row">([^<]+)</th>', re.search(r'id="segments">(.*?)</table>', html, re.S).group(1))
    assert segments == ["visitors", "logged_in_A", "logged_in_B", "logged_in_C", "logged_in_D"][: len(segments)]
    assert re.search(r'class="breakeven">\d+\.\d\d%', html)
    assert re.search(r'<svg[^>]*id="compare-rpm"', html)


def test_compare_an_edited_scenario_and_download_its_csv(finance):
    scenario = 'name = "tier A only"\n[[segments]]\nname = "a"\nrisk_tier = "A"\nlogged_in = true\nimpressions = 1000\n'
    response = finance.post("/console/compare", {"scenario": scenario})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Per segment: tier A only" in html
    download = finance.post("/console/compare/download", {"scenario": scenario, "what": "csv"})
    assert download.status_code == 200 and download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"] == 'attachment; filename="tier_A_only.csv"'
    rows = list(csv.DictReader(io.StringIO(download.get_data(as_text=True))))
    assert list(rows[0]) == list(ROW_FIELDS)
    xingyun = next(r for r in rows if r["product_id"] == "xingyun_loan")
    # 1,000 impressions × 136.08 fen = 136,080 fen ⇒ 136.08 yuan per 1,000 = 13,608 fen
    # 136.08 fen per impression (70% new × 4% × 30% × 45% × 60% × 20,000 RMB × 3%): 1,000 impressions earn
    # 136,080 fen, which is also the revenue per 1,000 impressions
    assert xingyun["platform_revenue_fen"] == "136080" and xingyun["rpm_platform_fen"] == "136080"
    chart = finance.post("/console/compare/download", {"scenario": scenario, "what": "chart"})
    assert chart.mimetype == "image/png" and chart.get_data()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_uploaded_scenario_file_replaces_the_text(finance):
    scenario = 'name = "uploaded"\n[[segments]]\nname = "v"\nlogged_in = false\nimpressions = 500\n'
    response = finance.post("/console/compare", {"scenario": "ignored", "scenario_file": (io.BytesIO(scenario.encode()), "up.toml")},
                            content_type="multipart/form-data")
    assert response.status_code == 200
    assert "Per segment: uploaded" in response.get_data(as_text=True)


@pytest.mark.parametrize(("scenario", "message"), [
    ("name = ", "not valid TOML"),
    ('name = "x"\n[[segments]]\nname = "a"\nrisk_tier = "Z"\nlogged_in = true\nimpressions = 1\n', "segments[0].risk_tier"),
])
def test_a_bad_scenario_is_refused_naming_the_field(finance, scenario, message):
    response = finance.post("/console/compare", {"scenario": scenario})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    errors = re.search(r'<ul class="field-errors" id="f-scenario-error">(.*?)</ul>', html, re.S).group(1)
    assert message in errors
    assert 'aria-invalid="true"' in html


def test_reconciliation_of_pasted_lines_against_the_ledger(finance, earned):
    today = _today()
    lines = f"event_id,type,amount_fen,date\nconsole-x1,disbursed,30000,{today}\nx-unknown,disbursed,500,{today}\n"
    response = finance.post("/console/reconciliation", {"partner": "xingyun_cf", "day": today, "source": "file",
                                                       "settlement_text": lines})
    assert response.status_code == 200, response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    assert "differences" in html
    body = re.search(r'id="reconciliation-lines">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    statuses = dict(re.findall(r'<th scope="row">([^<]+)</th><td><code>([^<]+)</code>', body))
    assert statuses == {"matched": "console-x1", "missing on our side": "x-unknown"}
    assert "<dt>Their total</dt><dd>¥305.00</dd>" in html and "<dt>Our total</dt><dd>¥300.00</dd>" in html
    assert "xingyun_cf" in SECRETS


def test_reconciliation_errors_name_the_field(finance, earned):
    response = finance.post("/console/reconciliation", {"partner": "xingyun_cf", "day": _today(), "source": "file",
                                                       "settlement_text": "event_id,type\nx,disbursed\n"})
    assert response.status_code == 422
    assert 'id="f-settlement-file-error"' in response.get_data(as_text=True)
    response = finance.post("/console/reconciliation", {"partner": "nobody", "day": _today(), "source": "file"})
    assert response.status_code == 422 and 'id="f-partner-error"' in response.get_data(as_text=True)
