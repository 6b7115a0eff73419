"""``wallet-market keys create`` and ``wallet-market token``: who may call the service."""
from __future__ import annotations

import click

from ..store.access import ROLES
from .context import components, settings


@click.group("keys")
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--role", type=click.Choice(list(ROLES)), required=True)
@click.option("--name", default="", help="Who the key is for.")
def keys_create(role: str, name: str) -> None:
    """Print a new API key with ROLE (only its hash is stored)."""
    click.echo(components().api_keys.create(role, name=name))


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
