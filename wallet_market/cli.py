"""The ``wallet-market`` command (click, through Flask's CLI)."""
from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from .settings import SettingsError, load_settings

DEMO_USER = "demo-prime-user"


def _create_app():
    """The app a command runs in; closed (and an embedded Redis it started stopped) at exit."""
    import atexit

    from .app import create_app

    app = create_app(start_background=False)
    atexit.register(app.extensions["wallet_market"].close)
    return app


@click.group(cls=FlaskGroup, create_app=_create_app, add_default_commands=False, add_version_option=False)
def main() -> None:
    """wallet_market: the wallet loan marketplace backend."""


def components():
    return current_app.extensions["wallet_market"]


# -- catalogue files ------------------------------------------------------------
def read_catalogue_file(path: Path) -> dict[str, Any]:
    """Read a catalogue (TOML or JSON) and validate its shape; errors name the entity and field."""
    from marshmallow import ValidationError

    from .api.schemas import PageSchema, PartnerSchema, ProductSchema, RuleSchema

    text = path.read_bytes()
    data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text.decode())
    schemas = {"partners": PartnerSchema(), "products": ProductSchema(), "pages": PageSchema(), "rules": RuleSchema()}
    unknown = set(data) - set(schemas)
    if unknown:
        raise click.ClickException(f"{path.name}: unknown top-level keys {sorted(unknown)}")
    out: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for kind, schema in schemas.items():
        out[kind] = []
        for i, entity in enumerate(data.get(kind) or []):
            try:
                loaded = schema.load(entity)
            except ValidationError as exc:
                name = entity.get(schema.fields[next(iter(schema.fields))].name, i) if isinstance(entity, dict) else i
                errors[f"{kind}[{name}]"] = exc.messages
                continue
            out[kind].append(_plain(loaded))
    if errors:
        raise click.ClickException(f"{path.name} is not a valid catalogue: {json.dumps(errors, ensure_ascii=False)}")
    return out


def _plain(value: Any) -> Any:
    from datetime import date, datetime

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def load_demo_if_empty(comps, echo=click.echo) -> bool:
    """On an empty store: load and publish the demo catalogue and print one demo key per role."""
    if comps.catalogue_store.current_version() != 0:
        return False
    demo = Path(comps.settings.demo_catalogue)
    if not demo.is_absolute() and not demo.exists():
        demo = Path(__file__).resolve().parent.parent / comps.settings.demo_catalogue
    catalogue = read_catalogue_file(demo)
    result = comps.admin.load(catalogue, actor="system:demo", publish=True)
    echo(f"Loaded the demo catalogue ({demo.name}) as rule-set version {result['version']}.")
    if comps.api_keys.count() == 0:
        echo("Demo API keys (shown once):")
        for role in ("app", "pm", "finance", "internal"):
            echo(f"  {role:<9} {comps.api_keys.create(role, name=f'demo-{role}')}")
    return True


@main.group()
def catalog() -> None:
    """Load or export the catalogue as a reviewable file."""


@catalog.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--publish/--no-publish", default=False, help="Publish the loaded draft as a new version.")
@with_appcontext
def catalog_load(file: Path, publish: bool) -> None:
    """Replace the draft with FILE (TOML or JSON), guard-checked; optionally publish it."""
    from .services.errors import ServiceError

    try:
        result = components().admin.load(read_catalogue_file(file), actor="cli", publish=publish)
    except ServiceError as exc:
        raise click.ClickException(f"{exc.message}: {json.dumps(exc.errors, ensure_ascii=False)}") from None
    counts = ", ".join(f"{result[k]} {k}" for k in ("partners", "products", "pages", "rules"))
    click.echo(f"Draft replaced: {counts}." + (f" Published as version {result['version']}." if "version" in result else ""))


@catalog.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="toml")
@with_appcontext
def catalog_export(output: Path | None, fmt: str) -> None:
    """Print the draft catalogue (secrets left out) as TOML or JSON."""
    data = _without_nulls(components().admin.export())
    if fmt == "json":
        text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    else:
        import tomli_w

        text = tomli_w.dumps(data)
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--role", type=click.Choice(["app", "pm", "finance", "internal"]), required=True)
@click.option("--name", default="", help="Who the key is for.")
@with_appcontext
def keys_create(role: str, name: str) -> None:
    """Print a new API key with ROLE (only its hash is stored)."""
    click.echo(components().api_keys.create(role, name=name))


@main.command("token", with_appcontext=False)
@click.argument("user_id")
@click.option("--ttl", type=click.IntRange(1, 30 * 86400), default=None, help="Lifetime in seconds.")
def token(user_id: str, ttl: int | None) -> None:
    """Print a user token for USER_ID signed with the configured secret."""
    from .services.tokens import UserTokens

    settings = _settings()
    click.echo(UserTokens(settings.secret_key, settings.user_token_ttl_seconds).mint(user_id, ttl))


def _settings():
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("serve", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, type=int, show_default=True)
@click.option("--workers", default=2, type=click.IntRange(1, 64), show_default=True)
@click.option("--threads", default=1, type=click.IntRange(1, 64), show_default=True, help="Threads per worker.")
@click.option("--no-worker", is_flag=True, help="Do not start the ledger worker beside the web workers.")
def serve(host: str, port: int, workers: int, threads: int, no_worker: bool) -> None:
    """Serve the API with gunicorn (embedded Redis when WALLET_MARKET_REDIS_URL is unset)."""
    from .serve import run

    run(_settings(), host=host, port=port, workers=workers, threads=threads, with_worker=not no_worker)


@main.command("demo", with_appcontext=False)
def demo() -> None:
    """Load the demo catalogue and print the home page for a visitor and a logged-in user."""
    from .demo import run_demo

    run_demo(_settings())


def _register_commands() -> None:
    from . import cli_finance, cli_funnel, cli_partners

    for module in (cli_funnel, cli_finance, cli_partners):
        module.register(main)


_register_commands()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
