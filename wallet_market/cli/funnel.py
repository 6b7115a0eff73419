"""Funnel commands: ``wallet-market worker`` and ``wallet-market postback-secret``."""
from __future__ import annotations

import secrets
import signal
import threading

import click

from ..composition import build_ledger_worker
from ..domain.catalogue import IN_HOUSE
from .context import components


def register(main: click.Group) -> None:
    """Add the funnel's commands to the ``wallet-market`` group."""
    main.add_command(worker)
    main.add_command(postback_secret)


@click.command("worker")
@click.option("--consumer", default=None, help="Consumer name in the group (default: host-pid).")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--block-ms", default=1000, show_default=True, type=click.IntRange(1, 60_000),
              help="How long one read waits for new events.")
@click.option("--claim-idle-ms", default=30_000, show_default=True, type=click.IntRange(1, 3_600_000),
              help="Reclaim entries another consumer left unacknowledged this long.")
def worker(consumer: str | None, batch_size: int, block_ms: int, claim_idle_ms: int) -> None:
    """Turn the event stream into the ledger's counters until stopped (SIGTERM or Ctrl-C)."""
    comps = components()
    ledger_worker = build_ledger_worker(
        comps, consumer=consumer, batch_size=batch_size, block_ms=block_ms, claim_idle_ms=claim_idle_ms
    )
    stop = threading.Event()

    def _stop(signum, _frame):
        click.echo(f"Ledger worker: signal {signum}, finishing the batch in hand.", err=True)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"Ledger worker {ledger_worker.consumer} applying {comps.keys.event_stream()}.", err=True)
    ledger_worker.run(stop)


@click.command("postback-secret")
@click.argument("partner_id")
@click.option("--secret", default=None, envvar="WALLET_MARKET_POSTBACK_SECRET",
              help="The secret to set (16–256 characters); default: a new random one, printed once.")
def postback_secret(partner_id: str, secret: str | None) -> None:
    """Set the postback signing secret of PARTNER_ID (``in_house`` for the in-house lender)."""
    store = components().catalogue_store
    revision, draft = store.read_draft()
    if partner_id != IN_HOUSE and partner_id not in draft["partners"]:
        raise click.ClickException(f"no partner {partner_id!r} in the catalogue (nor {IN_HOUSE!r})")
    generated = secret is None
    if secret is None:
        secret = secrets.token_hex(24)
    if not 16 <= len(secret) <= 256:
        raise click.ClickException("the secret must be 16–256 characters")
    store.write_draft([], actor="cli", expected_revision=revision, action="set_secret", secrets={partner_id: secret})
    click.echo(f"Postback signing secret of {partner_id} set.")
    if generated:
        click.echo(f"  {secret}  (shown once; give it to the sender of the postbacks)")
