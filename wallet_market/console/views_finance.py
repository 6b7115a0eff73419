"""Finance's pages: earned revenue against the model, the self-lending comparison, reconciliation."""
from __future__ import annotations

import tempfile
import tomllib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from flask import Response, render_template, request

from ..domain.finance import ScenarioError, compare, parse_scenario
from ..domain.funnel import GROUP_BY, days_between
from ..domain.reconcile import SettlementFileError, parse_settlement_csv
from ..services.errors import ServiceError
from ..reports.finance import csv_text, write_chart
from ..services.reconciliation import report_rows
from ..services.revenue import earned_revenue
from ..settings import find_config_dir
from . import auth, charts
from .blueprint import console
from .wiring import console_services

FINANCE = "finance"
BREAKDOWNS = tuple(g for g in GROUP_BY if g != "day")
VIEWS = {"group": ("group_contribution_fen", "expected_group_contribution_fen"),
         "platform": ("platform_revenue_fen", "expected_platform_revenue_fen")}
DEFAULT_DAYS = 7


class CountersOnce:
    """The ledger read once per page: every grouping of the same date range shares one round trip."""

    def __init__(self, ledger):
        self._ledger = ledger
        self._read: dict[tuple[str, ...], Any] = {}

    def counters(self, days):
        key = tuple(days)
        if key not in self._read:
            self._read[key] = self._ledger.counters(days)
        return self._read[key]


def _today() -> date:
    return datetime.now(timezone.utc).date()


def _read_date(name: str, default: date, errors: dict) -> date:
    raw = request.args.get(name, "").strip()
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors[name] = ["enter a date as YYYY-MM-DD"]
        return default


@console.get("/revenue")
@auth.requires(FINANCE)
def revenue():
    errors: dict[str, list[str]] = {}
    last = _read_date("to", _today(), errors)
    first = _read_date("from", last - timedelta(days=DEFAULT_DAYS - 1), errors)
    group_by = request.args.get("group_by", "product")
    if group_by not in BREAKDOWNS:
        errors["group_by"] = [f"choose one of {', '.join(BREAKDOWNS)}"]
        group_by = "product"
    view = request.args.get("view", "group")
    if view not in VIEWS:
        errors["view"] = ["choose group or platform"]
        view = "group"
    values = {"from": first.isoformat(), "to": last.isoformat(), "group_by": group_by, "view": view}
    by_day = breakdown = None
    series_chart = breakdown_chart = None
    if not errors:
        ledger = CountersOnce(console_services().ledger)
        try:
            by_day = earned_revenue(ledger, first, last, "day")
            breakdown = earned_revenue(ledger, first, last, group_by)
        except ServiceError as exc:
            for name, messages in exc.errors.items():
                errors.setdefault(name, []).extend(messages)
    if not errors:
        earned_key, modelled_key = VIEWS[view]
        rows = {row["day"]: row for row in by_day["rows"]}
        days = [f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in days_between(first, last)]
        series_chart = charts.time_series(
            "revenue-by-day",
            f"Earned against modelled by day ({view} view)",
            days,
            [
                ("earned", [rows.get(d, {}).get(earned_key, 0) for d in days]),
                ("modelled", [rows.get(d, {}).get(modelled_key, 0) for d in days]),
            ],
        )
        labels = [_label(row[group_by]) for row in breakdown["rows"]]
        breakdown_chart = charts.bars(
            "revenue-breakdown",
            f"Earned against modelled by {group_by.replace('_', ' ')} ({view} view)",
            labels,
            [
                ("earned", [row[earned_key] for row in breakdown["rows"]]),
                ("modelled", [row[modelled_key] for row in breakdown["rows"]]),
            ],
        ) if breakdown["rows"] else None
    status = 422 if errors else 200
    return render_template(
        "console/revenue.html", values=values, field_errors=errors, breakdowns=BREAKDOWNS, by_day=by_day,
        breakdown=breakdown, series_chart=series_chart, breakdown_chart=breakdown_chart, label=_label,
    ), status


def _label(value) -> str:
    return "none (visitors, no tier)" if value is None else str(value)


# -- compare ------------------------------------------------------------------------------------


BASE_SCENARIO = Path("scenarios") / "base.toml"


def _base_scenario_text() -> str:
    """``scenarios/base.toml`` of the configuration directory, else the one beside the package; else nothing."""
    for config_dir in (find_config_dir(), Path(__file__).resolve().parents[2] / "config"):
        if (config_dir / BASE_SCENARIO).exists():
            return (config_dir / BASE_SCENARIO).read_text(encoding="utf-8")
    return 'name = "scenario"\n'  # an empty scenario to start from


def _scenario_text() -> str:
    upload = request.files.get("scenario_file")
    if upload is not None and upload.filename:
        raw = upload.read()
        try:
            return raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ScenarioError({"scenario": ["the uploaded file is not UTF-8 text"]}) from None
    return request.form.get("scenario", "")


def _comparison(text: str):
    """The served catalogue, the scenario and its comparison; :class:`ScenarioError` naming the field."""
    catalogue = console_services().serving().catalogue
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError({"scenario": [f"not valid TOML: {exc}"]}) from None
    data.setdefault("name", "scenario")
    scenario = parse_scenario(data, catalogue)
    return catalogue, scenario, compare(catalogue, scenario)


@console.route("/compare", methods=["GET", "POST"])
@auth.requires(FINANCE)
def compare_page():
    errors: dict[str, list[str]] = {}
    comparison = chart = None
    text = _base_scenario_text()
    if request.method == "POST":
        try:
            text = _scenario_text()
            catalogue, _scenario, comparison = _comparison(text)
        except ScenarioError as exc:
            errors = {k: list(v) for k, v in exc.errors.items()}
    else:
        catalogue, _scenario, comparison = _comparison(text)
    if comparison is not None:
        segments = [s.segment for s in comparison.segments]
        products = list(dict.fromkeys(row.product_id for row in comparison.rows))
        chart = charts.bars(
            "compare-rpm",
            "Group view per 1,000 impressions, by segment and product",
            [f"{segment} · {pid}" for segment in segments for pid in products if _row(comparison, segment, pid)],
            [
                ("group view", [_row(comparison, s, p).rpm_group_fen for s in segments for p in products if _row(comparison, s, p)]),
                ("platform view", [_row(comparison, s, p).rpm_platform_fen for s in segments for p in products if _row(comparison, s, p)]),
            ],
        )
    return render_template(
        "console/compare.html", scenario_text=text, field_errors=errors, comparison=comparison, chart=chart,
        ruleset_version=catalogue.version if comparison is not None else None,
    ), 422 if errors else 200


def _row(comparison, segment: str, product_id: str):
    return next((r for r in comparison.rows if r.segment == segment and r.product_id == product_id), None)


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "comparison"


@console.post("/compare/download")
@auth.requires(FINANCE)
def compare_download():
    """The comparison of the posted scenario as CSV (``what=csv``) or a PNG chart (``what=chart``)."""
    try:
        catalogue, scenario, comparison = _comparison(_scenario_text())
    except ScenarioError as exc:
        return render_template(
            "console/compare.html", scenario_text=request.form.get("scenario", ""), field_errors=exc.errors,
            comparison=None, chart=None, ruleset_version=None,
        ), 422
    name = _file_name(scenario.name)
    if request.form.get("what") == "chart":
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{name}.png"
            write_chart(comparison, catalogue, scenario, path)
            body = path.read_bytes()
        return Response(body, mimetype="image/png", headers={"Content-Disposition": f'attachment; filename="{name}.png"'})
    return Response(
        csv_text(comparison), mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


# -- reconciliation -----------------------------------------------------------------------------------


@console.route("/reconciliation", methods=["GET", "POST"])
@auth.requires(FINANCE)
def reconciliation():
    services = console_services()
    try:
        partners = sorted(services.serving().catalogue.partners)
    except ServiceError:
        partners = []
    yesterday = _today() - timedelta(days=1)
    values = {"partner": request.form.get("partner", partners[0] if partners else ""),
              "day": request.form.get("day", yesterday.isoformat()), "source": request.form.get("source", "file"),
              "settlement_text": request.form.get("settlement_text", "")}
    errors: dict[str, list[str]] = {}
    rec = rows = days = None
    if request.method == "POST":
        partner_id = values["partner"]
        if partner_id not in partners:
            errors["partner"] = ["choose a partner"]
        day = None
        if values["day"].strip():
            try:
                day = date.fromisoformat(values["day"].strip())
            except ValueError:
                errors["day"] = ["enter a date as YYYY-MM-DD"]
        elif values["source"] == "pull":
            errors["day"] = ["a pull needs the settlement day"]
        text = None
        if not errors:
            try:
                text = _settlement_text(services, partner_id, day, values)
            except ServiceError as exc:
                errors.setdefault("source", []).append(exc.message)
            except _SettlementInputError as exc:
                errors.setdefault(exc.field, []).append(str(exc))
        if text is not None:
            try:
                theirs = parse_settlement_csv(text)
            except SettlementFileError as exc:
                errors["settlement_file"] = [
                    f"line {e['line']}" + (f", column {e['column']}" if e.get("column") else "") + f": {e['message']}"
                    for e in exc.errors
                ]
            else:
                days = sorted({line.date for line in theirs} | ({day} if day else set()))
                if not days:
                    errors["day"] = ["the file has no lines: give the day to reconcile it against"]
                else:
                    try:
                        rec = services.reconcile(partner_id, theirs, days)
                        rows = report_rows(rec)
                    except ServiceError as exc:
                        errors.setdefault("settlement_file", []).append(exc.message)
    return render_template(
        "console/reconciliation.html", partners=partners, values=values, field_errors=errors, rec=rec, rows=rows,
        days=days,
    ), 422 if errors else 200


class _SettlementInputError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _settlement_text(services, partner_id: str, day: date | None, values: dict) -> str:
    if values["source"] == "pull":
        return services.fetch_settlement(partner_id, day)
    upload = request.files.get("settlement_file")
    if upload is not None and upload.filename:
        try:
            return upload.read().decode("utf-8-sig")
        except UnicodeDecodeError:
            raise _SettlementInputError("settlement_file", "the file is not UTF-8 text") from None
    if values["settlement_text"].strip():
        return values["settlement_text"]
    raise _SettlementInputError("settlement_file", "choose a settlement file, paste its lines, or pull it from the partner")
