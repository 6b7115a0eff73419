"""``wallet-market ledger dead-letters``: the entries the ledger worker set aside, and their replay."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import click

from .context import components


@click.group("ledger")
def ledger_group() -> None:
    """The funnel ledger's event stream."""


@ledger_group.command("dead-letters")
@click.option("--replay", is_flag=True, help="Put the dead letters back on the event stream (after fixing the cause).")
@click.option("--id", "ids", multiple=True, metavar="ID", help="Only this dead letter (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100_000), help="At most this many.")
def dead_letters(replay: bool, ids: tuple[str, ...], as_json: bool, limit: int) -> None:
    """List the entries the worker set aside — id, reason, when, the event — or replay them.

    A replayed entry is appended to the event stream once and removed from the
    dead letters in the same step; the worker then applies it like any other.
    """
    ledger = components().ledger
    found = ledger.dead_letters(count=limit)
    if ids:
        unknown = set(ids) - {d.dead_letter_id for d in found}
        if unknown:
            raise click.BadParameter(f"no dead letter {', '.join(sorted(unknown))}", param_hint="--id")
        found = [d for d in found if d.dead_letter_id in ids]
    listed = [_as_dict(d) for d in found]
    if not replay:
        if as_json:
            click.echo(json.dumps(listed, ensure_ascii=False, indent=2))
            return
        click.echo(f"{len(listed)} dead letter{'' if len(listed) == 1 else 's'}")
        for d in listed:
            click.echo(
                f"{d['dead_letter_id']}  set aside {d['set_aside_at']} after {d['attempts']} "
                f"attempt{'' if d['attempts'] == 1 else 's'}  entry {d['entry_id']}"
            )
            click.echo(f"    reason: {d['reason']}")
            click.echo(f"    event:  {json.dumps(d['event'], ensure_ascii=False)}")
        return
    replayed = []
    for d in listed:
        new_id = ledger.replay_dead_letter(d["dead_letter_id"])
        if new_id is not None:  # None: replayed meanwhile by someone else
            replayed.append({"dead_letter_id": d["dead_letter_id"], "entry_id": d["entry_id"], "new_entry_id": new_id})
    if as_json:
        click.echo(json.dumps({"replayed": replayed}, indent=2))
        return
    click.echo(f"{len(replayed)} dead letter{'' if len(replayed) == 1 else 's'} replayed")
    for r in replayed:
        click.echo(f"{r['dead_letter_id']}  entry {r['entry_id']}  → {r['new_entry_id']}")


def _as_dict(dead) -> dict[str, Any]:
    payload = dead.fields.get("e")
    event: Any = dict(dead.fields) or None  # an entry without an event payload: show what it holds
    if payload is not None:
        try:
            event = json.loads(payload)
        except ValueError:
            event = payload
    when = datetime.fromtimestamp(dead.set_aside_at_ms / 1000, tz=timezone.utc)
    return {
        "dead_letter_id": dead.dead_letter_id,
        "entry_id": dead.entry_id,
        "reason": dead.reason,
        "attempts": dead.attempts,
        "set_aside_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "event": event,
    }


def register(main: click.Group) -> None:
    main.add_command(ledger_group)
