"""Our side of a reconciliation: the payouts of the postbacks the ledger accepted, by partner and day."""
from datetime import timedelta

from tests.finance_ledger import (
    XINGYUN_DAY_LINES,
    at,
    impression_token,
    post_postback,
    publish_demo,
    record_xingyun_day,
    settlement_day,
)
from wallet_market.services.ledger_worker import LedgerWorker
from wallet_market.services.reconciliation import ledger_settlement_lines


def _as_tuples(lines):
    return [(line.event_id, line.type, line.amount_fen) for line in lines]


def test_cps_payouts_on_disbursals_and_reversals_on_their_own_day(app, comps, client):
    version = publish_demo(comps)
    day = settlement_day()
    record_xingyun_day(comps, client, day, version)

    lines = ledger_settlement_lines(comps, "xingyun_cf", day)
    # 3% of 1,000,000 = 30,000; 3% of 1,234,567 = 37,037.01 → 37,037; the approval pays nothing under CPS;
    # x-4's 15,000 is taken back by its reversal x-5 on the same day.
    assert _as_tuples(lines) == list(XINGYUN_DAY_LINES)
    assert {line.date for line in lines} == {day}
    # The next day holds only x-6: 3% of 2,000,000.
    assert _as_tuples(ledger_settlement_lines(comps, "xingyun_cf", day + timedelta(days=1))) == [
        ("x-6", "disbursed", 60_000)
    ]
    # Another partner's postbacks are not xingyun_cf's, and a quiet day has no lines.
    assert ledger_settlement_lines(comps, "haoyue_mcl", day) == []
    assert ledger_settlement_lines(comps, "xingyun_cf", day - timedelta(days=1)) == []


def test_per_credit_line_pays_the_fee_on_approval_only(app, comps, client):
    version = publish_demo(comps)
    day = settlement_day()
    token = impression_token(comps, "haoyue_loan", "C", at(day, 8), version)
    for event_id, kind, amount in (("h-1", "applied", None), ("h-2", "approved", None), ("h-3", "disbursed", 300_000)):
        post_postback(
            client,
            "haoyue_mcl",
            {"event_id": event_id, "type": kind, "impression_token": token, "amount": amount, "occurred_at": at(day, 9)},
        )
    # haoyue_loan settles 150 RMB per approved credit line: only h-2 moves money.
    assert _as_tuples(ledger_settlement_lines(comps, "haoyue_mcl", day)) == [("h-2", "approved", 15_000)]


def test_our_lines_add_up_to_the_revenue_the_ledger_books(app, comps, client):
    version = publish_demo(comps)
    day = settlement_day()
    record_xingyun_day(comps, client, day, version)
    LedgerWorker(comps.redis, comps.keys, consumer="reconcile-test").run_until_idle()

    ours = sum(line.amount_fen for line in ledger_settlement_lines(comps, "xingyun_cf", day))
    response = client.get(
        f"/finance/v1/revenue?from={day.isoformat()}&to={day.isoformat()}&group_by=partner",
        headers={"Authorization": f"Bearer {comps.api_keys.create('finance', name='t')}"},
    )
    assert response.status_code == 200, response.get_json()
    [row] = [r for r in response.get_json()["rows"] if r["partner"] == "xingyun_cf"]
    # 30,000 + 37,037.01 + 15,000 − 15,000 = 67,037.01 → 67,037 in the ledger; 67,037 line by line.
    assert ours == row["platform_revenue_fen"] == 67_037


def test_a_reversal_that_arrives_before_its_event_is_priced_once_the_event_arrives(app, comps, client):
    version = publish_demo(comps)
    day = settlement_day()
    post_postback(client, "xingyun_cf", {"event_id": "r-1", "type": "reversed", "reverses": "d-1", "occurred_at": at(day, 16)})
    # Nothing to price it by yet: listed at 0 so that a claw-back the partner bills shows as a mismatch.
    assert _as_tuples(ledger_settlement_lines(comps, "xingyun_cf", day)) == [("r-1", "reversed", 0)]

    token = impression_token(comps, "xingyun_loan", "A", at(day, 8), version)
    post_postback(
        client,
        "xingyun_cf",
        {"event_id": "d-1", "type": "disbursed", "impression_token": token, "amount": 800_000, "occurred_at": at(day, 9)},
    )
    # 3% of 800,000 = 24,000, taken back by the reversal.
    assert _as_tuples(ledger_settlement_lines(comps, "xingyun_cf", day)) == [
        ("d-1", "disbursed", 24_000),
        ("r-1", "reversed", -24_000),
    ]
