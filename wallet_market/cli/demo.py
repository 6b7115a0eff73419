"""``wallet-market demo``: the wallet story, told by the running code.

Loads the demo catalogue under its own key prefix (so a real catalogue is never
touched), then asks the layout API — through the full HTTP stack, in process —
for the home page of a visitor and of a logged-in prime user, and prints them
side by side.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from ..domain.catalogue import Catalogue
from ..domain.finance import compare
from ..domain.users import UserProfile
from ..reports.finance import load_scenario_file, render_table
from ..services.catalogue_files import load_demo, load_demo_if_empty
from ..settings import Settings, find_config_dir
from .context import settings as cli_settings

BASE_SCENARIO = Path("scenarios") / "base.toml"

DEMO_USER = "demo-prime-user"


def _yuan(fen: int) -> str:
    return f"{fen / 100:,.0f}"


def _layout_table(layout: dict[str, Any]) -> Table:
    table = Table(show_header=True, header_style="bold", expand=True)
    table.add_column("slot", no_wrap=True)
    table.add_column("product")
    table.add_column("up to (RMB)", justify="right", no_wrap=True)
    table.add_column("APR", no_wrap=True)
    for slot in layout["slots"]:
        card = slot["product"]
        table.add_row(
            slot["slot"],
            f"{card['title']}\n[dim]{card['product_id']} · {card['lender_name']}[/dim]"
            + (f"\n[green]{card['promo']}[/green]" if card.get("promo") else ""),
            _yuan(card["limit_max_fen"]),
            f"{card['apr_min_bps'] / 100:g}–{card['apr_max_bps'] / 100:g}%",
        )
    return table


def demo_layouts(settings: Settings) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """The visitor's and the logged-in prime user's home layouts, and the app used."""
    from ..app import components_of, create_app

    app = create_app({"key_prefix": f"{settings.key_prefix}-demo"}, start_background=False)
    comps = components_of(app)
    if not load_demo_if_empty(comps.admin, comps.api_keys, comps.settings, echo=lambda _line: None):
        load_demo(comps.admin, comps.settings)
    comps.snapshots.refresh()
    app_key = comps.api_keys.create("app", name="demo")
    snapshot = comps.snapshots.current
    if snapshot is None:
        raise RuntimeError(f"the demo rule set is not served: {comps.snapshots.last_error}")
    partners = sorted(snapshot.built.catalogue.partners)
    comps.profiles.put(
        UserProfile.from_dict(
            {
                "risk_tier": "A",
                "in_house_decision": {"status": "approved", "decided_at": None},
                "consents": {"personalized": True, "share_with_partners": partners},
                "age": 32,
                "region": "guangdong",
                "phone_sha256": None,
            },
            user_id=DEMO_USER,
        )
    )
    client = app.test_client()
    headers = {"Authorization": f"Bearer {app_key}"}
    visitor = client.get("/v1/layout?page=home", headers=headers)
    user_token = comps.user_tokens.mint(DEMO_USER, 600)
    logged_in = client.get("/v1/layout?page=home", headers={**headers, "X-User-Token": user_token})
    if visitor.status_code != 200 or logged_in.status_code != 200:
        raise RuntimeError(f"layout failed: {visitor.get_json()} {logged_in.get_json()}")
    return visitor.get_json(), logged_in.get_json(), app


def run_demo(settings: Settings, console: Console | None = None) -> None:
    console = console or Console(width=max(Console().width, 150))
    from ..app import components_of

    visitor, logged_in, app = demo_layouts(settings)
    console.rule("[bold]wallet home page — rule-set version %s" % visitor["ruleset_version"])
    side_by_side = Table.grid(expand=True, padding=(0, 1))
    side_by_side.add_column(ratio=1)
    side_by_side.add_column(ratio=1)
    side_by_side.add_row(
        Panel(_layout_table(visitor), title="Visitor (not logged in)"),
        Panel(_layout_table(logged_in), title="Logged-in prime user (tier A, shares with partners)"),
    )
    console.print(side_by_side)
    console.print(
        f"Top slot — visitor: [bold]{visitor['slots'][0]['product']['product_id']}[/bold]; "
        f"logged-in: [bold]{logged_in['slots'][0]['product']['product_id']}[/bold] "
        "(chosen by expected revenue per impression, group view, not by a pin)."
    )
    show_base_comparison(console, components_of(app).layouts.serving().catalogue)
    components_of(app).close()


def base_scenario_path() -> Path:
    """``scenarios/base.toml`` in the configuration directory, else the one shipped beside the package."""
    for config_dir in (find_config_dir(), Path(__file__).resolve().parent.parent.parent / "config"):
        candidate = config_dir / BASE_SCENARIO
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"no {BASE_SCENARIO} in the configuration directory")


def show_base_comparison(console: Console, catalogue: Catalogue) -> None:
    """Print the base scenario's comparison against the catalogue the demo app serves."""
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


@click.command("demo")
def demo() -> None:
    """Load the demo catalogue and print the home page for a visitor and a logged-in user."""
    run_demo(cli_settings())


def register(main: click.Group) -> None:
    main.add_command(demo)
