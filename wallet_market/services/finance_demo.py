"""The finance part of ``wallet-market demo``: the base scenario over the demo's served catalogue.

The layouts the demo has just printed are chosen by expected revenue per
impression; this shows the same economics from finance's side — per segment,
self-lending against the best referral in both views, with break-even points
and the sensitivity of the answer.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ..domain.finance import compare
from ..settings import Settings, find_config_dir
from .finance_report import load_scenario_file, render_table

BASE_SCENARIO = Path("scenarios") / "base.toml"


def base_scenario_path() -> Path:
    """``scenarios/base.toml`` in the configuration directory, else the one shipped beside the package."""
    for config_dir in (find_config_dir(), Path(__file__).resolve().parent.parent.parent / "config"):
        candidate = config_dir / BASE_SCENARIO
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no {BASE_SCENARIO} in the configuration directory")


def show_base_comparison(settings: Settings, console: Console, app) -> None:
    """Print the base scenario's comparison against the catalogue the demo app serves."""
    catalogue = app.extensions["wallet_market"].layouts.serving().catalogue
    path = base_scenario_path()
    scenario = load_scenario_file(path, catalogue)
    comparison = compare(catalogue, scenario)
    console.rule(f"[bold]finance — self-lending versus referral ({path.name}, rule-set version {catalogue.version})")
    render_table(comparison, console)
    for summary in comparison.segments:
        if summary.winner_group_view is None:
            continue
        console.print(
            f"{summary.segment}: group view favours [bold]{summary.winner_group_view}[/bold], "
            f"platform view [bold]{summary.winner_platform_view}[/bold]."
        )
