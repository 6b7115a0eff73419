"""Reconciliation of a partner's daily settlement file against our ledger.

A settlement file is CSV with the header ``event_id,type,amount_fen,date``:
the partner's event id (the same id its postbacks carry), the event type, the
amount in integer fen (negative for a claw-back) and the ISO date. A file in
yuan is accepted too, with the column ``amount`` instead of ``amount_fen`` and
at most two decimals (``123.45``); it is converted to fen exactly, never
through a float. Column order is free, extra columns are ignored, and blank
lines are skipped.

Lines are matched on event id. A matched pair whose amounts differ is an
amount mismatch; the type and date of both sides are carried into the report
so a clerk can see what the partner billed, but only the amount decides.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Sequence

REQUIRED_COLUMNS = ("event_id", "type", "date")
AMOUNT_FEN_COLUMN = "amount_fen"
AMOUNT_YUAN_COLUMN = "amount"
_YUAN = re.compile(r"^([+-]?)(\d+)(?:\.(\d{1,2}))?$", re.ASCII)
_FEN = re.compile(r"^[+-]?\d+$", re.ASCII)


@dataclass(frozen=True, slots=True)
class SettlementLine:
    """One settled event: the partner's event id, its type, the amount in fen and the day."""

    event_id: str
    type: str
    amount_fen: int
    date: date

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "amount_fen": self.amount_fen,
            "date": self.date.isoformat(),
        }


class SettlementFileError(ValueError):
    """A settlement file that cannot be read; ``errors`` lists ``{"line", "column", "message"}``."""

    def __init__(self, errors: list[dict[str, Any]]):
        self.errors = errors
        summary = "; ".join(
            f"line {e['line']}" + (f", column {e['column']}" if e.get("column") else "") + f": {e['message']}"
            for e in errors
        )
        super().__init__(f"invalid settlement file: {summary}")


def yuan_to_fen(text: str) -> int:
    """``"123.45"`` → 12345, exactly; at most two decimals."""
    match = _YUAN.match(text.strip())
    if match is None:
        raise ValueError("must be an amount in yuan with at most two decimals")
    sign, whole, decimals = match.groups()
    fen = int(whole) * 100 + int((decimals or "").ljust(2, "0"))
    return -fen if sign == "-" else fen


def fen_from_text(text: str) -> int:
    """``"-1250"`` → -1250; digits with an optional sign, nothing else."""
    if _FEN.match(text.strip()) is None:
        raise ValueError("must be a whole number of fen")
    return int(text)


def parse_settlement_csv(text: str) -> list[SettlementLine]:
    """Read a settlement file; every bad line and column is reported at once.

    Raises :class:`SettlementFileError`, naming the line number (the header is
    line 1) and the column of each problem, including a repeated event id.
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None:
        raise SettlementFileError([{"line": 1, "column": None, "message": "empty file: no header"}])
    columns = [name.strip() for name in header]
    errors: list[dict[str, Any]] = []
    for required in REQUIRED_COLUMNS:
        if required not in columns:
            errors.append({"line": 1, "column": required, "message": "missing column"})
    # The amount in fen, else in yuan.
    amount_column = next((name for name in (AMOUNT_FEN_COLUMN, AMOUNT_YUAN_COLUMN) if name in columns), None)
    if amount_column is None:
        errors.append({"line": 1, "column": AMOUNT_FEN_COLUMN, "message": "missing column (or amount in yuan)"})
    if errors or amount_column is None:
        raise SettlementFileError(errors)

    position = {name: columns.index(name) for name in (*REQUIRED_COLUMNS, amount_column)}
    lines: list[SettlementLine] = []
    first_seen: dict[str, int] = {}
    for cells in reader:
        line_number = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) < len(columns):
            errors.append(
                {"line": line_number, "column": None, "message": f"expected {len(columns)} columns, got {len(cells)}"}
            )
            continue
        value = {name: cells[index].strip() for name, index in position.items()}
        line_errors = len(errors)

        event_id = value["event_id"]
        if not event_id:
            errors.append({"line": line_number, "column": "event_id", "message": "required"})
        elif event_id in first_seen:
            errors.append(
                {
                    "line": line_number,
                    "column": "event_id",
                    "message": f"duplicate event id {event_id} (first on line {first_seen[event_id]})",
                }
            )
        else:
            first_seen[event_id] = line_number
        if not value["type"]:
            errors.append({"line": line_number, "column": "type", "message": "required"})
        amount_fen = 0
        try:
            to_fen = fen_from_text if amount_column == AMOUNT_FEN_COLUMN else yuan_to_fen
            amount_fen = to_fen(value[amount_column])
        except ValueError as exc:
            errors.append({"line": line_number, "column": amount_column, "message": str(exc)})
        try:
            day = date.fromisoformat(value["date"])
        except ValueError:
            errors.append({"line": line_number, "column": "date", "message": "must be a date YYYY-MM-DD"})
        if len(errors) == line_errors:
            lines.append(SettlementLine(event_id, value["type"], amount_fen, day))
    if errors:
        raise SettlementFileError(errors)
    return lines


@dataclass(frozen=True, slots=True)
class AmountMismatch:
    """The same event settled at different amounts; ``difference_fen`` is theirs minus ours."""

    ours: SettlementLine
    theirs: SettlementLine

    @property
    def difference_fen(self) -> int:
        return self.theirs.amount_fen - self.ours.amount_fen

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.theirs.event_id,
            "type": self.theirs.type,
            "date": self.theirs.date.isoformat(),
            "our_type": self.ours.type,
            "our_date": self.ours.date.isoformat(),
            "our_amount_fen": self.ours.amount_fen,
            "their_amount_fen": self.theirs.amount_fen,
            "difference_fen": self.difference_fen,
        }


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """The outcome of matching a partner's settlement lines with ours.

    ``missing_on_our_side``: billed by the partner, absent from our ledger.
    ``missing_on_their_side``: in our ledger, not billed by the partner.
    Totals are over every line of each side; ``difference_fen`` is theirs minus ours.
    """

    matched: tuple[SettlementLine, ...]
    missing_on_our_side: tuple[SettlementLine, ...]
    missing_on_their_side: tuple[SettlementLine, ...]
    amount_mismatches: tuple[AmountMismatch, ...]
    their_total_fen: int
    our_total_fen: int

    @property
    def difference_fen(self) -> int:
        return self.their_total_fen - self.our_total_fen

    @property
    def ok(self) -> bool:
        """True when every line is matched at the same amount on both sides."""
        return not (self.missing_on_our_side or self.missing_on_their_side or self.amount_mismatches)

    @property
    def exit_status(self) -> int:
        """0 when the file reconciles, 1 when a clerk has something to act on."""
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "matched": [line.to_dict() for line in self.matched],
            "missing_on_our_side": [line.to_dict() for line in self.missing_on_our_side],
            "missing_on_their_side": [line.to_dict() for line in self.missing_on_their_side],
            "amount_mismatches": [m.to_dict() for m in self.amount_mismatches],
            "totals": {
                "their_total_fen": self.their_total_fen,
                "our_total_fen": self.our_total_fen,
                "difference_fen": self.difference_fen,
            },
        }


def _by_event_id(lines: Sequence[SettlementLine], side: str) -> dict[str, SettlementLine]:
    indexed: dict[str, SettlementLine] = {}
    for line in lines:
        if line.event_id in indexed:
            raise ValueError(f"event id {line.event_id} appears twice on {side} side")
        indexed[line.event_id] = line
    return indexed


def reconcile(theirs: Sequence[SettlementLine], ours: Sequence[SettlementLine]) -> Reconciliation:
    """Match the partner's settlement lines with our ledger's on event id.

    Lists keep the partner's file order (ours for what only we have). An event
    id repeated within one side is a ``ValueError``: the file or the ledger
    export must be fixed before it can be reconciled.
    """
    their_index = _by_event_id(theirs, "their")
    our_index = _by_event_id(ours, "our")
    matched, missing_ours, mismatches = [], [], []
    for event_id, their_line in their_index.items():
        our_line = our_index.get(event_id)
        if our_line is None:
            missing_ours.append(their_line)
        elif our_line.amount_fen != their_line.amount_fen:
            mismatches.append(AmountMismatch(ours=our_line, theirs=their_line))
        else:
            matched.append(their_line)
    missing_theirs = [line for event_id, line in our_index.items() if event_id not in their_index]
    return Reconciliation(
        matched=tuple(matched),
        missing_on_our_side=tuple(missing_ours),
        missing_on_their_side=tuple(missing_theirs),
        amount_mismatches=tuple(mismatches),
        their_total_fen=sum(line.amount_fen for line in theirs),
        our_total_fen=sum(line.amount_fen for line in ours),
    )
