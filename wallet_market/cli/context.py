"""What every command shares: the settings, the components, and how bad input is reported."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from ..composition import Components

BAD_INPUT = 2


class BadInput(click.ClickException):
    """Input that cannot be used: exit status 2, the message names what is wrong."""

    exit_code = BAD_INPUT


def settings() -> Settings:
    """The validated settings; a bad one ends the command with one line naming it."""
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def shown_url(url: str) -> str:
    """A Redis URL fit to print: any password replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.hostname or ""
    netloc = f"{user}***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def unreachable(url: str | None, exc: BaseException) -> click.ClickException:
    """The one line a command ends with when Redis does not answer."""
    where = shown_url(url) if url else "the embedded Redis"
    reason = str(exc).strip() or type(exc).__name__
    return click.ClickException(f"cannot reach Redis at {where}: {reason}")


def check_reachable(url: str) -> None:
    """Ping the configured Redis once, so an outage is one clear line before anything else is said."""
    import redis

    from ..store.connection import client_from_url

    client = None
    try:
        client = client_from_url(url)
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise unreachable(url, exc) from None
    except redis.exceptions.RedisClusterException as exc:
        raise unreachable(url, exc) from None
    finally:
        if client is not None:
            client.close()


def components() -> Components:
    """This command's components, built once and closed when the command ends.

    A command run beside ``serve`` joins its embedded Redis (``var/``); one
    that needs no store never calls this and starts nothing. An unreachable
    Redis ends the command with one line naming it.
    """
    ctx = click.get_current_context()
    root = ctx.find_root()
    built = root.meta.get("wallet_market.components")
    if built is None:
        from ..composition import build_components
        from ..store.connection import EmbeddedRedisUnavailable

        config = settings()
        if config.redis_url:
            check_reachable(config.redis_url)
        try:
            built = build_components(config)
        except EmbeddedRedisUnavailable as exc:
            raise click.ClickException(str(exc)) from None
        root.meta["wallet_market.components"] = built
        root.call_on_close(built.close)
    return built


def error_lines(errors: Any, prefix: str = "") -> list[str]:
    """A field → messages map (nested as marshmallow and the guards give it) as readable lines."""
    if isinstance(errors, dict):
        lines = []
        for field, inner in errors.items():
            lines.extend(error_lines(inner, f"{prefix}.{field}" if prefix else str(field)))
        return lines
    if isinstance(errors, (list, tuple)) and errors and all(isinstance(e, str) for e in errors):
        return [f"{prefix}: {'; '.join(errors)}" if prefix else "; ".join(errors)]
    if isinstance(errors, (list, tuple)):
        return [line for inner in errors for line in error_lines(inner, prefix)]
    return [f"{prefix}: {errors}" if prefix else str(errors)]


def service_failure(message: str, errors: Any = None) -> str:
    """One message and, below it, one line per field error."""
    lines = error_lines(errors) if errors else []
    return "\n".join([message, *(f"  {line}" for line in lines)])
