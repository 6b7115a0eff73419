"""``wallet-market demo``: the wallet story of DESIGN §2, told by the running code.

Loads the demo catalogue under its own key prefix (so a real catalogue is never
touched), then asks the layout API — through the full HTTP stack, in process —
for the home page of a visitor and of a logged-in prime user, and prints them
side by side.
"""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from .services.finance_demo import show_base_comparison
from .settings import Settings

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
    from .app import create_app
    from .cli import load_demo_if_empty, read_catalogue_file
    from pathlib import Path

    app = create_app({"key_prefix": f"{settings.key_prefix}-demo"}, start_background=False)
    comps = app.extensions["wallet_market"]
    if not load_demo_if_empty(comps, echo=lambda *_: None):
        demo = Path(settings.demo_catalogue)
        if not demo.exists():
            demo = Path(__file__).resolve().parent.parent / settings.demo_catalogue
        comps.admin.load(read_catalogue_file(demo), actor="system:demo", publish=True)
    comps.snapshots.refresh()
    app_key = comps.api_keys.create("app", name="demo")
    partners = sorted(comps.snapshots.current.built.catalogue.partners)
    comps.users.put_profile(
        DEMO_USER,
        {
            "user_id": DEMO_USER,
            "risk_tier": "A",
            "in_house_decision": {"status": "approved", "decided_at": None},
            "consents": {"personalized": True, "share_with_partners": partners},
            "age": 32,
            "region": "guangdong",
            "phone_sha256": None,
        },
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
    show_base_comparison(settings, console, app)
    app.extensions["wallet_market"].close()
