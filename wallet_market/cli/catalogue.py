"""``wallet-market catalog load|export``: the catalogue as a reviewable file."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..services.catalogue_files import read_catalogue_file, without_nulls
from ..services.errors import ServiceError
from .context import BadInput, components, service_failure


@click.group("catalog")
def catalogue_group() -> None:
    """Load or export the catalogue as a reviewable file."""


@catalogue_group.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--publish/--no-publish", default=False, help="Publish the loaded draft as a new version.")
def catalogue_load(file: Path, publish: bool) -> None:
    """Replace the draft with FILE (TOML or JSON), guard-checked; optionally publish it."""
    try:
        result = components().admin.load(read_catalogue_file(file), actor="cli", publish=publish)
    except ServiceError as exc:
        raise BadInput(service_failure(exc.message, exc.errors)) from None
    counts = ", ".join(f"{result[k]} {k}" for k in ("partners", "products", "pages", "rules"))
    if "version" not in result:
        published = ""
    elif result["published"]:
        published = f" Published as version {result['version']}."
    else:
        published = f" It equals version {result['version']}: nothing to publish."
    click.echo(f"Draft replaced: {counts}.{published}")


@catalogue_group.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="toml")
def catalogue_export(output: Path | None, fmt: str) -> None:
    """Print the draft catalogue (secrets left out) as TOML or JSON."""
    data = without_nulls(components().admin.export())
    if fmt == "json":
        text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    else:
        import tomli_w

        text = tomli_w.dumps(data)
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


def register(main: click.Group) -> None:
    main.add_command(catalogue_group)
