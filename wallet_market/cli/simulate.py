"""``wallet-market simulate``: synthetic users with known truth through the real services, under a prefix of their own."""
from __future__ import annotations

import json

import click

from ..services.catalogue_files import demo_catalogue_path, read_catalogue_file
from ..services.errors import ServiceError
from ..services.evaluation import CANDIDATE
from .context import components, service_failure, settings


def _candidate(_ctx, _param, value: str | None) -> str | None:
    if value is not None and not CANDIDATE.match(value):
        raise click.BadParameter("must be draft or a rule-set version number")
    return value


@click.command("simulate")
@click.option("--users", type=click.IntRange(1, 1_000_000), default=2_000, show_default=True)
@click.option("--days", type=click.IntRange(1, 365), default=1, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**31), default=1, show_default=True)
@click.option("--candidate", callback=_candidate, default=None,
              help="Serve draft or a stored version instead of the published rules.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def simulate_command(users: int, days: int, seed: int, candidate: str | None, as_json: bool) -> None:
    """Drive synthetic users through the real layout, events, postbacks and worker; print what the policy earned.

    Runs under the key prefix <key_prefix>-sim-<SEED> and a scratch analysis
    directory, both removed afterwards: real traffic and the real ledger are
    never touched.
    """
    from ..simulator import catalogue_body, simulate

    comps = components()
    published = comps.catalogue_store.load_current()
    label = "published"
    if published is None:
        published_body = catalogue_body(read_catalogue_file(demo_catalogue_path(comps.settings)))
        label = "demo catalogue"
    else:
        published_body = published["catalogue"]
        label = f"published version {published['version']}"
    candidate_body = None
    if candidate is not None:
        try:
            record = comps.admin.draft_record() if candidate == "draft" else comps.admin.version_record(int(candidate))
        except ServiceError as exc:
            raise click.ClickException(service_failure(exc.message, exc.errors)) from None
        candidate_body = record["catalogue"]
        label = "draft" if candidate == "draft" else f"candidate version {candidate}"
    base = settings()
    if base.redis_url is None and comps.embedded is not None:
        import dataclasses

        base = dataclasses.replace(base, redis_url=comps.embedded.url)
    result = simulate(base, users=users, days=days, seed=seed, published=published_body, candidate=candidate_body,
                      policy_label=label)
    summary = result.summary()
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    click.echo(f"{summary['policy']}: {summary['decisions']} decisions, {summary['impressions']} slot impressions")
    click.echo(f"  group revenue per 1,000 impressions     {summary['rpm_group_fen'] / 100:,.2f} RMB"
               f" (true {summary['true_rpm_group_fen'] / 100:,.2f})")
    click.echo(f"  platform revenue per 1,000 impressions  {summary['rpm_platform_fen'] / 100:,.2f} RMB"
               f" (true {summary['true_rpm_platform_fen'] / 100:,.2f})")


def register(main: click.Group) -> None:
    main.add_command(simulate_command)
