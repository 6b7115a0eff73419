"""``wallet-market partners …``: onboarding checks and settlement pulls for partner lenders."""
from __future__ import annotations

import sys
from datetime import date, timedelta

import click
from rich.console import Console
from rich.table import Table

from ..domain.catalogue import Partner
from ..partners.client import PartnerClient, memory_breaker_storage
from ..partners.onboarding import OnboardingReport, check_partner
from ..services.errors import ServiceError
from .context import components


def _yes_no(value: bool | None) -> str:
    if value is None:
        return "[dim]n/a[/dim]"
    return "[green]yes[/green]" if value else "[red]no[/red]"


def render_report(report: OnboardingReport, console: Console) -> None:
    """Print an onboarding report as a table, each endpoint's URL and problem, and a verdict."""
    table = Table(title=f"Partner {report.partner_id} (timeout {report.timeout_ms} ms)")
    table.add_column("endpoint", no_wrap=True)
    for column in ("reachable", "latency ms", "HTTP", "signature accepted", "answer shape ok", "ready"):
        table.add_column(column, justify="center")
    for check in report.checks:
        latency = "-" if check.latency_ms is None else str(check.latency_ms)
        if check.within_timeout is False:
            latency = f"[red]{latency}[/red]"
        table.add_row(
            check.endpoint,
            _yes_no(check.reachable),
            latency,
            "-" if check.status is None else str(check.status),
            _yes_no(check.signature_accepted),
            _yes_no(check.answer_valid),
            _yes_no(check.ready),
        )
    console.print(table)
    for check in report.checks:
        console.print(f"  {check.endpoint}: {check.url}" + (f" — {check.detail}" if check.detail else ""), markup=False)
    for problem in report.problems:
        console.print(f"[red]problem:[/red] {problem}")
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}")
    verdict = "[bold green]READY[/bold green]" if report.ready else "[bold red]NOT READY[/bold red]"
    console.print(f"{report.partner_id}: {verdict}")


def _draft_partner(comps, partner_id: str) -> tuple[Partner, str | None]:
    try:
        partner = Partner.from_dict(comps.admin.get("partners", partner_id))
    except ServiceError as exc:
        raise click.ClickException(exc.message) from None
    owned = sorted(p["product_id"] for p in comps.admin.list("products") if p.get("owner") == partner_id)
    return partner, owned[0] if owned else None


def register(main: click.Group) -> None:
    """Add the ``partners`` command group to ``main``."""

    @main.group()
    def partners() -> None:
        """Partner lenders: onboarding checks and settlement files."""

    @partners.command("check")
    @click.argument("partner_id")
    @click.option("--timeout", "timeout_seconds", type=click.FloatRange(0.1, 120), default=None,
                  help="Seconds to wait for each answer (default: the longer of 5 s and 3 × the partner's timeout).")
    def check(partner_id: str, timeout_seconds: float | None) -> None:
        """Call PARTNER_ID's endpoints with test requests and say whether it is ready to publish.

        Uses the draft catalogue and the partner's signing secret. Exit status
        0 only when every configured endpoint answered in time, accepted our
        signature and answered in the agreed shape.
        """
        comps = components()
        partner, product_id = _draft_partner(comps, partner_id)
        client = PartnerClient(
            comps.catalogue_store.partner_secret,
            memory_breaker_storage(),
            fail_max=comps.settings.breaker_fail_max,
            reset_seconds=comps.settings.breaker_reset_seconds,
            pool_size=2,
        )
        try:
            report = check_partner(client, partner, product_id=product_id, timeout_seconds=timeout_seconds)
        finally:
            client.close()
        render_report(report, Console(highlight=False))
        sys.exit(0 if report.ready else 1)

    @partners.command("settlement")
    @click.argument("partner_id")
    @click.option("--date", "day", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
                  help="The day to fetch (default: yesterday).")
    def settlement(partner_id: str, day) -> None:
        """Print PARTNER_ID's settlement file (CSV) for a day."""
        comps = components()
        wanted = day.date() if day is not None else date.today() - timedelta(days=1)
        try:
            text = comps.settlement.fetch(partner_id, wanted)
        except ServiceError as exc:
            raise click.ClickException(exc.message) from None
        click.echo(text, nl=not text.endswith("\n"))
