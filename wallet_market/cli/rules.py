"""``wallet-market rules evaluate``: what a candidate rule set would earn, estimated from the log."""
from __future__ import annotations

import json
from datetime import date

import click

from ..services.errors import ServiceError
from ..services.evaluation import CANDIDATE
from .context import BadInput, components, service_failure


@click.group("rules")
def rules_group() -> None:
    """Evaluate candidate rule sets against the logged decisions."""


def _candidate(_ctx, _param, value: str) -> str:
    if not CANDIDATE.match(value):
        raise click.BadParameter("must be draft or a rule-set version number")
    return value


@rules_group.command("evaluate")
@click.option("--candidate", required=True, callback=_candidate, help="draft, or a stored rule-set version number.")
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day (UTC) of the log.")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), default=None, help="Last day (UTC) of the log.")
@click.option("--view", type=click.Choice(["group", "platform"]), default="group", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def evaluate(candidate: str, first, last, view: str, as_json: bool) -> None:
    """Replay the logged decisions through CANDIDATE and estimate its revenue per 1,000 slot impressions."""
    first_day: date | None = first.date() if first else None
    last_day: date | None = last.date() if last else None
    if first_day and last_day and last_day < first_day:
        raise BadInput("--to must not be before --from")
    try:
        answer = components().evaluation.evaluate(candidate, first_day, last_day, view)
    except ServiceError as exc:
        raise click.ClickException(service_failure(exc.message, exc.errors)) from None
    if as_json:
        click.echo(json.dumps(answer, indent=2, sort_keys=True))
        return
    click.echo(f"Candidate {answer['candidate']} ({answer['view']} view) on {answer['decisions']} logged decisions")
    click.echo(f"  logged policy      {_fen(answer['logged']['rpm_fen'])} per 1,000 slot impressions")
    for name, estimate in answer["estimators"].items():
        interval = ""
        if estimate["ci_low_fen"] is not None:
            interval = f"   95% [{_fen(estimate['ci_low_fen'])}, {_fen(estimate['ci_high_fen'])}]"
        click.echo(f"  {name:<18} {_fen(estimate['rpm_fen'])}{interval}")
    support = answer["support_bps"]
    shown = "-" if support is None else f"{support / 100:.1f}%"
    click.echo(f"  effective sample size {answer['effective_sample_size']}, support {shown}")
    for warning in answer["warnings"]:
        click.echo(f"  warning: {warning}")


def _fen(value: int | None) -> str:
    return "-" if value is None else f"{value / 100:,.2f} RMB"


def register(main: click.Group) -> None:
    main.add_command(rules_group)
