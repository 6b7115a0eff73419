"""Reconciling a partner's daily settlement file against our ledger."""
from datetime import date

import pytest

from wallet_market.domain.reconcile import (
    SettlementFileError,
    SettlementLine,
    parse_settlement_csv,
    reconcile,
    yuan_to_fen,
)

DAY = date(2025, 3, 14)


def line(event_id, amount_fen, type_="disbursed"):
    return SettlementLine(event_id, type_, amount_fen, DAY)


THEIR_FILE = """event_id,type,amount_fen,date
ev-1,disbursed,26000,2025-03-14
ev-2,approved,20000,2025-03-14
ev-3,disbursed,13000,2025-03-14
ev-4,reversed,-26000,2025-03-14
"""


def test_a_settlement_file_is_read_into_fen():
    assert parse_settlement_csv(THEIR_FILE) == [
        line("ev-1", 26_000),
        line("ev-2", 20_000, "approved"),
        line("ev-3", 13_000),
        line("ev-4", -26_000, "reversed"),
    ]


def test_a_file_in_yuan_is_converted_exactly_and_columns_may_come_in_any_order():
    text = "date,event_id,amount,type,partner_note\n2025-03-14,ev-1,260.00,disbursed,x\n2025-03-14,ev-2,0.1,approved,\n\n"
    assert parse_settlement_csv(text) == [line("ev-1", 26_000), line("ev-2", 10, "approved")]


@pytest.mark.parametrize(("text", "fen"), [("123.45", 12_345), ("-0.05", -5), ("7", 700), ("0.10", 10), ("19.9", 1_990)])
def test_yuan_amounts_become_fen_without_float_error(text, fen):
    assert yuan_to_fen(text) == fen


def test_every_bad_line_is_named_with_its_column():
    text = (
        "event_id,type,amount_fen,date\n"
        "ev-1,disbursed,12.50,2025-03-14\n"  # fen must be whole
        ",approved,100,2025-03-14\n"  # no event id
        "ev-3,disbursed,100,14/03/2025\n"  # not an ISO date
        "ev-1,disbursed,100,2025-03-14\n"  # the same event twice
        "ev-5,disbursed\n"  # short line
    )
    with pytest.raises(SettlementFileError) as error:
        parse_settlement_csv(text)
    assert error.value.errors == [
        {"line": 2, "column": "amount_fen", "message": "must be a whole number of fen"},
        {"line": 3, "column": "event_id", "message": "required"},
        {"line": 4, "column": "date", "message": "must be a date YYYY-MM-DD"},
        {"line": 5, "column": "event_id", "message": "duplicate event id ev-1 (first on line 2)"},
        {"line": 6, "column": None, "message": "expected 4 columns, got 2"},
    ]
    assert "line 4, column date: must be a date YYYY-MM-DD" in str(error.value)


def test_yuan_with_more_than_two_decimals_is_refused():
    with pytest.raises(SettlementFileError) as error:
        parse_settlement_csv("event_id,type,amount,date\nev-1,disbursed,1.005,2025-03-14\n")
    assert error.value.errors == [
        {"line": 2, "column": "amount", "message": "must be an amount in yuan with at most two decimals"}
    ]


def test_a_file_without_the_required_columns_is_refused():
    with pytest.raises(SettlementFileError) as error:
        parse_settlement_csv("id,kind,value\nev-1,disbursed,100\n")
    assert [(e["line"], e["column"]) for e in error.value.errors] == [
        (1, "event_id"),
        (1, "type"),
        (1, "date"),
        (1, "amount_fen"),
    ]
    with pytest.raises(SettlementFileError):
        parse_settlement_csv("")


def test_identical_sides_reconcile():
    ours = parse_settlement_csv(THEIR_FILE)
    result = reconcile(parse_settlement_csv(THEIR_FILE), ours)
    assert result.ok
    assert result.exit_status == 0
    assert len(result.matched) == 4
    # 26,000 + 20,000 + 13,000 − 26,000 = 33,000 fen on each side.
    assert (result.their_total_fen, result.our_total_fen, result.difference_fen) == (33_000, 33_000, 0)


def test_each_kind_of_difference_is_reported():
    theirs = parse_settlement_csv(THEIR_FILE)
    ours = [
        line("ev-1", 26_000),  # matched
        line("ev-2", 15_000, "approved"),  # they bill 200 RMB, we booked 150 RMB
        # ev-3 missing on our side, ev-4 (their reversal) missing too
        line("ev-9", 40_000),  # we booked it, they did not bill it
    ]
    result = reconcile(theirs, ours)
    assert not result.ok
    assert result.exit_status == 1
    assert [m.event_id for m in result.matched] == ["ev-1"]
    assert [m.event_id for m in result.missing_on_our_side] == ["ev-3", "ev-4"]
    assert [m.event_id for m in result.missing_on_their_side] == ["ev-9"]
    (mismatch,) = result.amount_mismatches
    assert (mismatch.ours.amount_fen, mismatch.theirs.amount_fen, mismatch.difference_fen) == (15_000, 20_000, 5_000)
    # Theirs 33,000; ours 26,000 + 15,000 + 40,000 = 81,000; difference −48,000 fen.
    assert (result.their_total_fen, result.our_total_fen, result.difference_fen) == (33_000, 81_000, -48_000)


def test_only_missing_on_one_side_is_not_ok():
    assert not reconcile([line("ev-1", 100)], []).ok
    assert not reconcile([], [line("ev-1", 100)]).ok
    assert reconcile([], []).ok


def test_the_report_as_json():
    result = reconcile([line("ev-1", 100), line("ev-2", 250)], [line("ev-1", 100), line("ev-2", 200)])
    assert result.to_dict() == {
        "ok": False,
        "matched": [{"event_id": "ev-1", "type": "disbursed", "amount_fen": 100, "date": "2025-03-14"}],
        "missing_on_our_side": [],
        "missing_on_their_side": [],
        "amount_mismatches": [
            {
                "event_id": "ev-2",
                "type": "disbursed",
                "date": "2025-03-14",
                "our_type": "disbursed",
                "our_date": "2025-03-14",
                "our_amount_fen": 200,
                "their_amount_fen": 250,
                "difference_fen": 50,
            }
        ],
        "totals": {"their_total_fen": 350, "our_total_fen": 300, "difference_fen": 50},
    }


def test_a_repeated_event_on_one_side_cannot_be_reconciled():
    with pytest.raises(ValueError, match="ev-1 appears twice on our side"):
        reconcile([line("ev-1", 100)], [line("ev-1", 100), line("ev-1", 100)])
