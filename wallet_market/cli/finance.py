"""``wallet-market finance``: the self-lending versus referral comparison and settlement reconciliation.

``finance compare --scenario FILE`` models a scenario over the served catalogue
(or a catalogue file) and prints the tables; ``--csv`` and ``--chart`` write the
contract's CSV and a PNG or SVG chart.

``finance reconcile --partner P FILE`` (or ``--pull``) matches a partner's daily
settlement file against the postbacks our ledger accepted from that partner.

Exit status: 0 when all is well, 1 when a reconciliation has differences a
clerk must act on, 2 when the input cannot be used (a bad scenario, catalogue
or settlement file, an unknown partner, a settlement pull that failed).
"""
from __future__ import annotations

import json
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from ..services.catalogue_files import CatalogueFileError, demo_catalogue_path, read_catalogue_file
from .context import BadInput, components, service_failure

if TYPE_CHECKING:
    from ..services.reconciliation import ReconciliationSources

NON_TERMINAL_WIDTH = 160


def register(main: click.Group) -> None:
    """Add the ``finance`` group to the ``wallet-market`` command."""
    main.add_command(finance)


@click.group()
def finance() -> None:
    """Finance: compare self-lending with referral; reconcile partner settlements."""


def _console() -> Console:
    # Piped into a file or a log, keep the tables wide enough to read.
    return Console(width=None if sys.stdout.isatty() else NON_TERMINAL_WIDTH)


# -- compare ------------------------------------------------------------------------------


def _catalogue_from_file(path: Path):
    from ..domain.catalogue import Catalogue

    try:
        return Catalogue.from_dict(read_catalogue_file(path))
    except CatalogueFileError as exc:
        raise BadInput(service_failure(exc.message, exc.errors)) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"{path.name} cannot be read as a catalogue: {exc}") from None


def _comparison_catalogue(catalogue_path: Path | None):
    """The catalogue to compare over, and a line saying where it came from."""
    if catalogue_path is not None:
        return _catalogue_from_file(catalogue_path), f"catalogue file {catalogue_path}"
    from ..services.errors import Unavailable

    comps = components()
    try:
        catalogue = comps.layouts.serving().catalogue
    except Unavailable:
        path = demo_catalogue_path(comps.settings)
        return _catalogue_from_file(path), f"demo catalogue {path.name} (no rule set is published yet)"
    return catalogue, f"served rule-set version {catalogue.version}"


@finance.command("compare")
@click.option(
    "--scenario",
    "scenario_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scenario TOML (see docs/api.md, finance scenarios).",
)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the rows as CSV here.")
@click.option(
    "--chart", "chart_path", type=click.Path(dir_okay=False, path_type=Path), help="Write a chart here (.png or .svg)."
)
@click.option(
    "--catalogue",
    "catalogue_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Compare over this catalogue file (TOML or JSON) instead of the served one.",
)
def compare_command(scenario_path: Path, csv_path: Path | None, chart_path: Path | None, catalogue_path: Path | None) -> None:
    """Compare self-lending with referral for a scenario, per segment and product, in both views."""
    from ..domain.finance import ScenarioError, compare
    from ..reports.finance import CHART_FORMATS, load_scenario_file, render_table, write_chart, write_csv

    if chart_path is not None and chart_path.suffix.lower() not in CHART_FORMATS:
        raise BadInput(f"--chart: {chart_path.name} must end in {' or '.join(CHART_FORMATS)}")
    catalogue, source = _comparison_catalogue(catalogue_path)
    try:
        scenario = load_scenario_file(scenario_path, catalogue)
    except ScenarioError as exc:
        details = "\n".join(f"  {field}: {'; '.join(messages)}" for field, messages in exc.errors.items())
        raise BadInput(f"{scenario_path.name} is not a valid scenario:\n{details}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{scenario_path.name} cannot be read: {exc}") from None

    comparison = compare(catalogue, scenario)
    console = _console()
    console.print(f"Compared over the {source}.")
    render_table(comparison, console)
    if csv_path is not None:
        write_csv(comparison, csv_path)
        console.print(f"Rows written to {csv_path}.")
    if chart_path is not None:
        write_chart(comparison, catalogue, scenario, chart_path)
        console.print(f"Chart written to {chart_path}.")


# -- reconcile ----------------------------------------------------------------------------


def _yesterday() -> date:
    # Ledger days are UTC days, like the counters and the postbacks' occurred_at.
    return datetime.now(timezone.utc).date() - timedelta(days=1)


@finance.command("reconcile")
@click.option("--partner", "partner_id", required=True, help="The partner whose settlement this is.")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The settlement day (UTC). Default: the days in FILE; with --pull, yesterday.",
)
@click.option("--pull", is_flag=True, help="Fetch the file from the partner's settlement_url (?date=), signed.")
@click.option(
    "--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="Write every line with its status as CSV."
)
@click.option("--json", "as_json", is_flag=True, help="Print the reconciliation as JSON instead of tables.")
def reconcile_command(
    partner_id: str, file: Path | None, day: datetime | None, pull: bool, report_path: Path | None, as_json: bool
) -> None:
    """Reconcile a partner's daily settlement FILE (event_id,type,amount_fen,date) with our ledger.

    Exit status 0 when every line matches, 1 when there are lines missing on
    either side or amounts that differ, 2 when the file or the pull cannot be used.
    """
    from ..domain.reconcile import SettlementFileError, parse_settlement_csv
    from ..services.errors import ServiceError
    from ..reports.finance import render_reconciliation
    from ..services.reconciliation import reconcile_partner
    from ..reports.finance import write_reconciliation_report

    if (file is None) == (not pull):
        raise click.UsageError("give either a settlement FILE or --pull, not both and not neither")
    settlement_day = day.date() if day is not None else (_yesterday() if pull else None)
    comps = components()

    try:
        text, source = _settlement_text(comps.reconciliation, partner_id, file, settlement_day)
        theirs = parse_settlement_csv(text)
    except SettlementFileError as exc:
        details = "\n".join(
            f"  line {e['line']}" + (f", column {e['column']}" if e.get("column") else "") + f": {e['message']}"
            for e in exc.errors
        )
        raise BadInput(f"the settlement file cannot be read:\n{details}") from None
    except ServiceError as exc:
        raise BadInput(exc.message) from None

    days = sorted({line.date for line in theirs} | ({settlement_day} if settlement_day else set()))
    if not days:
        raise BadInput("the settlement file has no lines: give --date to reconcile it against that day")
    try:
        rec = reconcile_partner(comps.reconciliation, partner_id, theirs, days)
    except ServiceError as exc:
        raise BadInput(exc.message) from None

    if as_json:
        body = {"partner_id": partner_id, "days": [d.isoformat() for d in days], **rec.to_dict()}
        click.echo(json.dumps(body, ensure_ascii=False, indent=2))
    else:
        console = _console()
        console.print(
            f"Settlement of [bold]{partner_id}[/bold] for {', '.join(d.isoformat() for d in days)} ({source}) "
            "against the postbacks our ledger accepted."
        )
        render_reconciliation(rec, console)
    if report_path is not None:
        write_reconciliation_report(rec, report_path)
        if not as_json:
            click.echo(f"Report written to {report_path}.")
    if rec.exit_status:
        click.get_current_context().exit(rec.exit_status)


def _settlement_text(
    sources: ReconciliationSources, partner_id: str, file: Path | None, day: date | None
) -> tuple[str, str]:
    """The settlement file's text and where it came from: FILE, else pulled from the partner for ``day``."""
    from ..services.reconciliation import fetch_settlement

    if file is not None:
        return _read_text(file), f"file {file}"
    pull_day = day or _yesterday()
    text = fetch_settlement(sources, partner_id, pull_day)
    return text, f"pulled from {partner_id}'s settlement_url for {pull_day.isoformat()}"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path.name} cannot be read: {exc}") from None
