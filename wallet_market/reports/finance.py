"""Finance reports: the comparison as a terminal table, a CSV and a chart; reconciliation reports.

The numbers come from :mod:`wallet_market.domain.finance` and
:mod:`wallet_market.domain.reconcile`; this module only reads scenario files
and presents results. Money is shown in yuan with two decimals, rates in per
cent; the CSV keeps the contract's integer fen.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import tomllib
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from rich.console import Console
from rich.table import Table

from ..domain.catalogue import Catalogue, Product
from ..domain.economics import round_half_up
from ..domain.finance import (
    ROW_FIELDS,
    Comparison,
    ComparisonNote,
    Scenario,
    ScenarioError,
    SegmentSummary,
    SensitivityEntry,
    parse_scenario,
    revenue_per_impression,
    scenario_products,
    self_contribution_at_loss,
)
from ..domain.reconcile import Reconciliation, SettlementLine
from ..services.reconciliation import REPORT_COLUMNS, report_rows
from .figures import drawing

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CHART_FORMATS = {".png": "png", ".svg": "svg"}
CHART_LOSS_STEP_BPS = 25  # the break-even panel's annual loss axis, in quarter points
CHART_LOSS_MAX_BPS = 1000  # … from 0 to 10%, or further when a tier's current loss is higher
SUMMARY_FIELDS = tuple(f.name for f in dataclasses.fields(SegmentSummary))
SENSITIVITY_FIELDS = tuple(f.name for f in dataclasses.fields(SensitivityEntry))
NOTE_FIELDS = tuple(f.name for f in dataclasses.fields(ComparisonNote))
NOTHING_TO_COMPARE = "Nothing to compare: no product of this scenario may be shown to any of its segments"


def load_scenario_file(path: str | Path, catalogue: Catalogue | None = None) -> Scenario:
    """Read a scenario from TOML (the API's JSON shape); a missing ``name`` is the file's stem.

    Raises :class:`ScenarioError` naming the field, or ``_schema`` for a file
    that is not valid TOML.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError({"_schema": [f"{path.name} is not valid TOML: {exc}"]}) from exc
    data.setdefault("name", path.stem)
    return parse_scenario(data, catalogue)


def yuan(fen: int | None) -> str:
    """Fen as yuan with thousands separators and two decimals: 1234567 → ``12,345.67``."""
    if fen is None:
        return "–"
    whole, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{whole:,}.{cents:02d}"


def percent(bps: int | None) -> str:
    """Basis points as per cent with two decimals: 550 → ``5.50%``."""
    if bps is None:
        return "–"
    whole, rest = divmod(abs(bps), 100)
    return f"{'-' if bps < 0 else ''}{whole}.{rest:02d}%"


def _count(value: int) -> str:
    return f"{value:,}"


def _value(parameter: str, value: int) -> str:
    return yuan(value) if parameter in ("avg_loan", "fee") else percent(value)


def render_table(comparison: Comparison, console: Console | None = None) -> None:
    """Print the comparison: the funnel and the revenue of each segment and product, the
    per-segment answer with break-even points, and the sensitivity table."""
    console = console or Console()
    funnel = Table(title=f"Scenario {comparison.scenario}: funnel per segment and product", title_justify="left")
    for heading in ("Segment", "Product", "Settlement"):
        funnel.add_column(heading, no_wrap=True)
    for heading in ("Impressions", "Clicks", "Applications", "Approvals", "Loans", "Disbursed ¥"):
        funnel.add_column(heading, justify="right")
    for row in comparison.rows:
        funnel.add_row(
            row.segment,
            row.product_id,
            row.settlement,
            _count(row.impressions),
            _count(row.clicks),
            _count(row.applications),
            _count(row.approvals),
            _count(row.loans),
            yuan(row.disbursed_fen),
        )
    console.print(funnel)

    revenue = Table(
        title=f"Scenario {comparison.scenario}: revenue, platform view and group view side by side",
        title_justify="left",
    )
    for heading in ("Segment", "Product", "Owner"):
        revenue.add_column(heading, no_wrap=True)
    for heading in ("Platform ¥", "Group ¥", "Platform per 1k ¥", "Group per 1k ¥"):
        revenue.add_column(heading, justify="right")
    for row in comparison.rows:
        revenue.add_row(
            row.segment,
            row.product_id,
            row.owner,
            yuan(row.platform_revenue_fen),
            yuan(row.group_contribution_fen),
            yuan(row.rpm_platform_fen),
            yuan(row.rpm_group_fen),
        )
    console.print(revenue)
    if comparison.discount_rate_bps:
        console.print(
            f"In-house contribution discounted at {percent(comparison.discount_rate_bps)} a year over each loan's term."
        )

    segments = Table(title="Per segment (revenue per 1,000 impressions)", title_justify="left")
    segments.add_column("Segment", no_wrap=True)
    segments.add_column("Best referral", overflow="fold")
    segments.add_column("Referral ¥", justify="right")
    segments.add_column("In-house", overflow="fold")
    segments.add_column("In-house platform ¥", justify="right")
    segments.add_column("In-house group ¥", justify="right")
    segments.add_column("Winner, platform view", overflow="fold")
    segments.add_column("Winner, group view", overflow="fold")
    segments.add_column("Break-even annual loss", justify="right")
    segments.add_column("Break-even approval", justify="right")
    for summary in comparison.segments:
        segments.add_row(
            summary.segment,
            summary.best_referral_product_id or "–",
            yuan(summary.best_referral_rpm_fen),
            summary.self_product_id or "–",
            yuan(summary.self_rpm_platform_fen),
            yuan(summary.self_rpm_group_fen),
            summary.winner_platform_view or "–",
            summary.winner_group_view or "–",
            percent(summary.breakeven_annual_loss_bps),
            percent(summary.breakeven_approval_rate_bps),
        )
    console.print(segments)
    if comparison.notes:
        console.print("Not compared (no row in the segment):")
        for note in comparison.notes:
            console.print(f"  {note.segment} × {note.product_id}: {note.note}", markup=False, highlight=False)

    if not comparison.sensitivity:
        return
    sensitivity = Table(
        title="Sensitivity: group-view margin of the winner over the best other product, per 1,000 impressions",
        title_justify="left",
    )
    for heading in ("Segment", "Product", "Role", "Parameter"):
        sensitivity.add_column(heading, no_wrap=True)
    for heading in ("Value", "Margin at −20% ¥", "Margin ¥", "Margin at +20% ¥"):
        sensitivity.add_column(heading, justify="right")
    sensitivity.add_column("Winner flips to")
    for entry in comparison.sensitivity:
        winner = comparison.segment(entry.segment).winner_group_view
        flips = [
            f"{side}: {new_winner}"
            for side, new_winner in (("−20%", entry.winner_low), ("+20%", entry.winner_high))
            if new_winner != winner
        ]
        sensitivity.add_row(
            entry.segment,
            entry.product_id,
            entry.role.replace("_", "-"),
            entry.parameter,
            _value(entry.parameter, entry.base_value),
            yuan(entry.margin_low_rpm_fen),
            yuan(entry.margin_base_rpm_fen),
            yuan(entry.margin_high_rpm_fen),
            ", ".join(flips) or "–",
        )
    console.print(sensitivity)


def _write_rows(comparison: Comparison, handle) -> None:
    writer = csv.writer(handle)
    writer.writerow(ROW_FIELDS)
    for row in comparison.rows:
        writer.writerow([getattr(row, name) for name in ROW_FIELDS])


def write_csv(comparison: Comparison, path: str | Path) -> None:
    """Write the comparison rows as CSV with exactly the contract's columns, money in fen."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        _write_rows(comparison, handle)


def companion_csv_paths(path: str | Path) -> dict[str, Path]:
    """Where :func:`write_csv_files` puts each table beside the rows file ``path``.

    ``base.csv`` → ``base.summary.csv``, ``base.sensitivity.csv`` and ``base.notes.csv``.
    """
    path = Path(path)
    return {name: path.with_name(f"{path.stem}.{name}.csv") for name in ("summary", "sensitivity", "notes")}


def _write_records(path: Path, fields: tuple[str, ...], records: Iterable) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for record in records:
            writer.writerow(["" if getattr(record, name) is None else getattr(record, name) for name in fields])


def write_csv_files(comparison: Comparison, path: str | Path) -> dict[str, Path]:
    """Write every table of the comparison as CSV: the rows to ``path`` (the contract's columns), and
    beside it the per-segment summary (winners in both views, break-even loss and approval rates),
    the sensitivity table and the notes on products a segment could not be shown.

    Money in fen and rates in basis points, as in the API; an empty cell is a value that does not
    exist (no break-even, no referral). Returns the paths written, by table.
    """
    path = Path(path)
    write_csv(comparison, path)
    companions = companion_csv_paths(path)
    _write_records(companions["summary"], SUMMARY_FIELDS, comparison.segments)
    _write_records(companions["sensitivity"], SENSITIVITY_FIELDS, comparison.sensitivity)
    _write_records(companions["notes"], NOTE_FIELDS, comparison.notes)
    return {"rows": path, **companions}


def csv_text(comparison: Comparison) -> str:
    """The comparison rows as CSV text, the same as :func:`write_csv` writes."""
    buffer = io.StringIO(newline="")
    _write_rows(comparison, buffer)
    return buffer.getvalue()


def _chart_format(path: Path) -> str:
    try:
        return CHART_FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"chart file must end in {' or '.join(CHART_FORMATS)}, not {path.name}") from None


def write_chart(comparison: Comparison, catalogue: Catalogue, scenario: Scenario, path: str | Path) -> None:
    """Draw the comparison (:func:`chart_figure`) to a PNG or SVG file, chosen by the extension."""
    path = Path(path)
    image_format = _chart_format(path)
    with drawing():  # matplotlib's defaults, whatever another thread is drawing
        chart_figure(comparison, catalogue, scenario).savefig(path, format=image_format)


def chart_figure(comparison: Comparison, catalogue: Catalogue, scenario: Scenario) -> Figure:
    """The comparison as a figure of two panels.

    Left: revenue per 1,000 impressions by segment and product, each product's
    group view (solid) and platform view (hatched) side by side. Right: for each
    segment with both an in-house loan and a referral, self-lending's group
    contribution per 1,000 impressions across annual loss rates against the best
    referral, with the break-even loss and the tier's current loss marked. The
    legends sit below the panels, over no line or bar. A scenario with nothing
    to compare says so in words.
    """
    # Imported here so that reading scenarios and printing tables never pays for matplotlib.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 7), layout="constrained")
    by_product, by_loss = figure.subplots(1, 2, width_ratios=(3, 2))
    if comparison.rows:
        _draw_rpm_bars(by_product, comparison)
    else:
        _say(by_product, NOTHING_TO_COMPARE + (" (see the notes)." if comparison.notes else "."))
    _draw_breakeven(by_loss, comparison, catalogue, scenario)
    figure.suptitle(f"Scenario {comparison.scenario}: self-lending versus referral")
    return figure


def _say(axes, text: str) -> None:
    """An empty panel that says in words why it is empty."""
    import textwrap

    axes.set_axis_off()
    axes.text(0.5, 0.5, textwrap.fill(text, 50), ha="center", va="center", transform=axes.transAxes, wrap=True)


def _legend_below(axes, columns: int) -> None:
    axes.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=columns, frameon=False)


def _draw_rpm_bars(axes, comparison: Comparison) -> None:
    segment_names = [s.segment for s in comparison.segments]
    product_ids = list(dict.fromkeys(row.product_id for row in comparison.rows))
    colours = {pid: f"C{index % 10}" for index, pid in enumerate(product_ids)}
    width = 0.8 / max(len(product_ids), 1)  # one product's pair of bars
    for offset, product_id in enumerate(product_ids):
        positions, group_values, platform_values = [], [], []
        for index, name in enumerate(segment_names):
            row = next((r for r in comparison.rows_for(name) if r.product_id == product_id), None)
            if row is None:
                continue
            positions.append(index - 0.4 + width * offset)
            group_values.append(row.rpm_group_fen / 100)
            platform_values.append(row.rpm_platform_fen / 100)
        colour = colours[product_id]
        axes.bar(positions, group_values, width / 2, align="edge", color=colour, label=product_id)
        axes.bar(
            [p + width / 2 for p in positions],
            platform_values,
            width / 2,
            align="edge",
            color="white",
            edgecolor=colour,
            hatch="///",
        )
    axes.set_xticks(range(len(segment_names)), segment_names)
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_ylabel("revenue per 1,000 impressions (¥)")
    axes.set_title("By segment and product: group view (solid) and platform view (hatched), side by side")
    _legend_below(axes, min(len(product_ids), 4))


def _current_loss_bps(product: Product, risk_tier: str | None) -> int:
    """The annual loss the product's lending terms give this tier (a product drawn here has lending terms)."""
    assert product.lending is not None
    return product.lending.annual_loss_for(risk_tier)


def _draw_breakeven(axes, comparison: Comparison, catalogue: Catalogue, scenario: Scenario) -> None:
    products = scenario_products(catalogue, scenario)
    segments = {s.name: s for s in scenario.segments}
    drawable = [
        (summary, products[summary.self_product_id], products[summary.best_referral_product_id])
        for summary in comparison.segments
        if summary.self_product_id is not None
        and summary.best_referral_product_id is not None
        and products[summary.self_product_id].lending is not None
    ]
    if not drawable:
        _say(axes, "No segment has both an in-house loan and a referral: there is no break-even to draw.")
        return
    currents = {
        summary.segment: _current_loss_bps(own, segments[summary.segment].risk_tier) for summary, own, _ in drawable
    }
    top = max(CHART_LOSS_MAX_BPS, max(currents.values()) + 4 * CHART_LOSS_STEP_BPS)
    losses = list(range(0, top + 1, CHART_LOSS_STEP_BPS))
    percents = [loss / 100 for loss in losses]
    for drawn, (summary, product, referral) in enumerate(drawable):
        tier = segments[summary.segment].risk_tier
        colour = f"C{drawn % 10}"
        self_rpm = [
            _rpm_yuan(self_contribution_at_loss(product, tier, loss, scenario.discount_rate_bps)) for loss in losses
        ]
        referral_rpm = _rpm_yuan(revenue_per_impression(referral, tier, scenario.discount_rate_bps).group_fen)
        axes.plot(percents, self_rpm, color=colour, label=f"{summary.segment}: {summary.self_product_id}")
        axes.axhline(
            referral_rpm, color=colour, linestyle="--", label=f"{summary.segment}: {summary.best_referral_product_id}"
        )
        current = currents[summary.segment]
        current_rpm = _rpm_yuan(self_contribution_at_loss(product, tier, current, scenario.discount_rate_bps))
        axes.axvline(current / 100, color=colour, linestyle=":", linewidth=1)
        axes.plot(
            [current / 100],
            [current_rpm],
            marker="D",
            linestyle="none",
            color=colour,
            label=f"{summary.segment}: current loss {percent(current)}",
        )
        breakeven = summary.breakeven_annual_loss_bps
        if breakeven is not None and breakeven <= losses[-1]:
            axes.plot([breakeven / 100], [referral_rpm], marker="o", color=colour)
            axes.annotate(
                f"break-even {percent(breakeven)}",
                (breakeven / 100, referral_rpm),
                textcoords="offset points",
                xytext=(6, 6),
                fontsize="small",
                color=colour,
            )
    axes.set_xlabel("annual loss rate of the segment's tier (%)")
    axes.set_ylabel("group view per 1,000 impressions (¥)")
    axes.set_title("Self-lending (solid) versus best referral (dashed);\ndotted: the tier's current loss")
    _legend_below(axes, 2)


def _rpm_yuan(value_fen: Fraction) -> float:
    return round_half_up(value_fen * 1000) / 100


def _lines_table(title: str, lines: Iterable[SettlementLine], action: str) -> Table:
    table = Table(title=f"{title} — {action}", title_justify="left")
    table.add_column("Event id")
    table.add_column("Type")
    table.add_column("Date")
    table.add_column("Amount ¥", justify="right")
    for line in lines:
        table.add_row(line.event_id, line.type, line.date.isoformat(), yuan(line.amount_fen))
    return table


def render_reconciliation(rec: Reconciliation, console: Console | None = None) -> None:
    """Print a reconciliation as a clerk reads it: the verdict, the totals, then each kind of difference and what to do."""
    console = console or Console()
    verdict = (
        "[bold green]RECONCILED[/]: every line matches"
        if rec.ok
        else "[bold red]DIFFERENCES[/]: see the tables below"
    )
    console.print(verdict)
    totals = Table(title="Totals", title_justify="left")
    totals.add_column("")
    totals.add_column("Lines", justify="right")
    totals.add_column("Amount ¥", justify="right")
    their_lines = len(rec.matched) + len(rec.missing_on_our_side) + len(rec.amount_mismatches)
    our_lines = len(rec.matched) + len(rec.missing_on_their_side) + len(rec.amount_mismatches)
    totals.add_row("Partner's file", _count(their_lines), yuan(rec.their_total_fen))
    totals.add_row("Our ledger", _count(our_lines), yuan(rec.our_total_fen))
    totals.add_row("Difference (partner − ours)", "", yuan(rec.difference_fen))
    totals.add_row("Matched", _count(len(rec.matched)), yuan(sum(line.amount_fen for line in rec.matched)))
    console.print(totals)
    if rec.missing_on_our_side:
        console.print(
            _lines_table(
                f"Missing on our side ({len(rec.missing_on_our_side)})",
                rec.missing_on_our_side,
                "billed by the partner, not in our ledger: check the postback log, or dispute the charge",
            )
        )
    if rec.missing_on_their_side:
        console.print(
            _lines_table(
                f"Missing on their side ({len(rec.missing_on_their_side)})",
                rec.missing_on_their_side,
                "in our ledger, not billed: claim them from the partner",
            )
        )
    if rec.amount_mismatches:
        table = Table(
            title=f"Amount mismatches ({len(rec.amount_mismatches)}) — agree the amount with the partner",
            title_justify="left",
        )
        for heading in ("Event id", "Type", "Date"):
            table.add_column(heading)
        for heading in ("Ours ¥", "Theirs ¥", "Difference ¥"):
            table.add_column(heading, justify="right")
        for mismatch in rec.amount_mismatches:
            table.add_row(
                mismatch.theirs.event_id,
                mismatch.theirs.type,
                mismatch.theirs.date.isoformat(),
                yuan(mismatch.ours.amount_fen),
                yuan(mismatch.theirs.amount_fen),
                yuan(mismatch.difference_fen),
            )
        console.print(table)


def write_reconciliation_report(rec: Reconciliation, path: str | Path) -> None:
    """Write every line with its status as CSV (``REPORT_COLUMNS``); a last ``total`` row sums each side."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(report_rows(rec))
        writer.writerow(
            {
                "status": "total",
                "event_id": "",
                "type": "",
                "date": "",
                "their_amount_fen": rec.their_total_fen,
                "our_amount_fen": rec.our_total_fen,
                "difference_fen": rec.difference_fen,
                "action": "" if rec.ok else "settle the differences above before booking",
            }
        )
