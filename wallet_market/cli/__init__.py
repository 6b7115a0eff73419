"""The ``wallet-market`` command: one module per audience, all on one click group.

- :mod:`.catalogue`: ``catalog load|export`` (product managers);
- :mod:`.rules`: ``rules evaluate`` (product managers: a candidate against the log);
- :mod:`.access`: ``keys``, ``token`` (operators and the internal systems);
- :mod:`.funnel`: ``worker``, ``postback-secret`` (the ledger);
- :mod:`.ledger`: ``ledger dead-letters`` (entries the worker set aside, and their replay);
- :mod:`.finance`: ``finance compare|reconcile`` (finance);
- :mod:`.partners`: ``partners check|settlement`` (partner integration);
- :mod:`.simulate`: synthetic users through the real services, under a prefix of their own;
- :mod:`.serve` and :mod:`.demo`: running the service and showing it.

Every command builds what it needs through :mod:`wallet_market.composition`.
"""
from __future__ import annotations

import logging
import sys
from importlib.metadata import PackageNotFoundError, version

import click

from . import access, catalogue, demo, finance, funnel, ledger, partners, rules, serve, simulate


def _version() -> str:
    try:
        return version("wallet-market")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class Main(click.Group):
    """The command group; whatever a command meets that a user can act on ends it with readable lines.

    - Redis stops answering: ``cannot reach Redis at …``;
    - a use case refuses (a guard, a reference, an unknown id): the message and one line per field;
    - the embedded Redis is wanted but not installed: what to install or set instead.
    """

    def invoke(self, ctx: click.Context):
        import redis

        from ..services.errors import ServiceError
        from ..store.connection import EmbeddedRedisUnavailable
        from .context import BadInput, service_failure, unreachable

        try:
            return super().invoke(ctx)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise unreachable(_configured_redis_url(), exc) from None
        except ServiceError as exc:
            raise BadInput(service_failure(exc.message, exc.errors)) from None
        except EmbeddedRedisUnavailable as exc:
            raise click.ClickException(str(exc)) from None


def _configured_redis_url() -> str | None:
    from ..settings import SettingsError, load_settings

    try:
        return load_settings().redis_url
    except SettingsError:
        return None


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="wallet-market", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log what the command does (INFO); quiet by default.")
def main(verbose: bool) -> None:
    """wallet_market: the wallet loan marketplace backend."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


for _module in (catalogue, access, funnel, ledger, finance, partners, rules, simulate, serve, demo):
    _module.register(main)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
