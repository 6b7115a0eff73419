"""The ``wallet-market`` command: one module per audience, all on one click group.

- :mod:`.catalogue`: ``catalog load|export`` (product managers);
- :mod:`.rules`: ``rules evaluate`` (product managers: a candidate against the log);
- :mod:`.access`: ``keys``, ``token`` (operators and the internal systems);
- :mod:`.funnel`: ``worker``, ``postback-secret`` (the ledger);
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

from . import access, catalogue, demo, finance, funnel, partners, rules, serve, simulate


def _version() -> str:
    try:
        return version("wallet-market")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="wallet-market", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log what the command does (INFO); quiet by default.")
def main(verbose: bool) -> None:
    """wallet_market: the wallet loan marketplace backend."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


for _module in (catalogue, access, funnel, finance, partners, rules, simulate, serve, demo):
    _module.register(main)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
