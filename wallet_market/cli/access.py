"""``wallet-market keys create|list|revoke`` and ``wallet-market token``: who may call the service."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import click

from ..store.access import ROLES
from .context import BadInput, components, settings


@click.group("keys")
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--role", type=click.Choice(list(ROLES)), required=True)
@click.option("--name", default="", help="Who the key is for.")
def keys_create(role: str, name: str) -> None:
    """Print a new API key with ROLE (only its hash is stored)."""
    click.echo(components().api_keys.create(role, name=name))


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def keys_list(as_json: bool) -> None:
    """List the API keys: id, name, role, created, last used (never the key or its hash)."""
    listed = components().api_keys.list()
    if as_json:
        click.echo(json.dumps([{**k, "created_at": _when(k["created_at"]), "last_used_at": _when(k["last_used_at"])}
                               for k in listed], ensure_ascii=False, indent=2))
        return
    rows = [("KEY ID", "ROLE", "CREATED", "LAST USED", "NAME")]
    rows.extend(
        (k["key_id"], k["role"], _when(k["created_at"]) or "-", _when(k["last_used_at"]) or "never", k["name"])
        for k in listed
    )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke the key KEY_ID (see ``keys list``): every serving process refuses it within a moment."""
    revoked = components().api_keys.revoke(key_id)
    if revoked is None:
        raise BadInput(f"no API key with id {key_id!r} (see: wallet-market keys list)")
    click.echo(f"Revoked key {key_id} ({revoked['role']}, {revoked['name']}).")


def _when(epoch_seconds: int | None) -> str | None:
    if epoch_seconds is None:
        return None
    return datetime.fromtimestamp(int(epoch_seconds), tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@click.command("token")
@click.argument("user_id")
@click.option("--ttl", type=click.IntRange(1, 30 * 86400), default=None, help="Lifetime in seconds.")
def token(user_id: str, ttl: int | None) -> None:
    """Print a user token for USER_ID signed with the configured secret."""
    from ..services.tokens import UserTokens

    config = settings()
    try:
        click.echo(UserTokens(config.secret_key, config.user_token_ttl_seconds).mint(user_id, ttl))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="USER_ID") from None


def register(main: click.Group) -> None:
    main.add_command(keys)
    main.add_command(token)
