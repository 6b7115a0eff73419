"""What each funnel event adds to the ledger, and how finance reads it back (pure domain)."""
import tomllib
from pathlib import Path

import pytest

from wallet_market.domain.catalogue import Catalogue
from wallet_market.domain.funnel import (
    GROUP_BY,
    LedgerEvent,
    app_event_key,
    counter_deltas,
    day_of,
    event_measures,
    learning_deltas,
    paced_lead_allowance,
    parse_counter_field,
    revenue_rows,
    reversal_deltas,
)

CATALOGUE_FILE = Path(__file__).resolve().parent.parent / "funnel_catalogue.toml"
NOON = 1_767_268_800  # 2026-01-01 12:00:00 UTC


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue.from_dict(tomllib.loads(CATALOGUE_FILE.read_text(encoding="utf-8")), version=3)


def event(kind, product, *, slot="top", tier="A", amount=0, source="app", event_id="", at=NOON):
    return LedgerEvent(
        type=kind,
        occurred_at=at,
        source=source,
        decision_id="d1",
        page_id="home",
        slot_id=slot,
        product_id=product,
        ruleset_version=3,
        user_id="u1",
        risk_tier=tier,
        event_id=event_id,
        amount_fen=amount,
    )


def test_each_settlement_model_earns_on_its_own_event(catalogue):
    # per_click: a click earns the 1 RMB fee = 100 fen = 100,000,000 micro-fen
    assert event_measures(event("click", "click_loan"), catalogue) == {
        "clicks": 1,
        "platform_revenue_micro_fen": 100_000_000,
        "group_contribution_micro_fen": 100_000_000,
    }
    # per_application: 30 RMB per application
    assert event_measures(event("applied", "app_loan", source="lender_e"), catalogue) == {
        "applications": 1,
        "platform_revenue_micro_fen": 3_000_000_000,
        "group_contribution_micro_fen": 3_000_000_000,
    }
    # per_credit_line: 200 RMB per approved credit line
    assert event_measures(event("approved", "line_loan", source="bank_b"), catalogue) == {
        "approvals": 1,
        "platform_revenue_micro_fen": 20_000_000_000,
        "group_contribution_micro_fen": 20_000_000_000,
    }
    # per_card: 150 RMB per approved card
    assert event_measures(event("approved", "gold_card", source="card_c"), catalogue)["platform_revenue_micro_fen"] == (
        15_000_000_000
    )
    # cps: 3% of 12,345.67 RMB = 37,037.01 fen (exact: 1,234,567 × 0.03)
    assert event_measures(event("disbursed", "cps_loan", amount=1_234_567, source="lender_a"), catalogue) == {
        "loans": 1,
        "disbursed_fen": 1_234_567,
        "platform_revenue_micro_fen": 37_037_010_000,
        "group_contribution_micro_fen": 37_037_010_000,
    }


def test_a_self_lent_loan_books_the_transfer_price_for_the_platform_and_its_contribution_for_the_group(catalogue):
    # 8,000 RMB lent to a tier-B user over 12 months:
    # platform: 1% transfer price = 80 RMB = 8,000 fen
    # group: 800,000 × 13/24 × (18 − 3 − 4 − 2 − 1.5)% = 800,000 × 13/24 × 7.5% = 32,500 fen (the 325 RMB example of docs/economics.md)
    measures = event_measures(event("disbursed", "own_loan", tier="B", amount=800_000, source="in_house"), catalogue)
    assert measures == {
        "loans": 1,
        "disbursed_fen": 800_000,
        "platform_revenue_micro_fen": 8_000 * 1_000_000,
        "group_contribution_micro_fen": 32_500 * 1_000_000,
    }


def test_events_a_model_does_not_pay_on_are_counted_without_revenue(catalogue):
    assert event_measures(event("click", "cps_loan"), catalogue) == {"clicks": 1}
    assert event_measures(event("approved", "cps_loan", source="lender_a"), catalogue) == {"approvals": 1}
    assert event_measures(event("rejected", "line_loan", source="bank_b"), catalogue) == {"rejections": 1}
    assert event_measures(event("disbursed", "line_loan", amount=500_000, source="bank_b"), catalogue) == {
        "loans": 1,
        "disbursed_fen": 500_000,
    }


def test_an_impression_adds_the_models_expected_revenue_at_its_slot_and_tier(catalogue):
    # cps_loan in the mid slot (weight 60%) for tier A: 136.08 fen × 0.6 = 81.648 fen = 81,648,000 micro-fen
    assert event_measures(event("impression", "cps_loan", slot="mid"), catalogue) == {
        "impressions": 1,
        "expected_platform_revenue_micro_fen": 81_648_000,
        "expected_group_contribution_micro_fen": 81_648_000,
    }
    # own_loan on top for tier A: platform 10.5 fen, group 51.1875 fen (see the catalogue's header)
    assert event_measures(event("impression", "own_loan"), catalogue) == {
        "impressions": 1,
        "expected_platform_revenue_micro_fen": 10_500_000,
        "expected_group_contribution_micro_fen": 51_187_500,
    }


def test_counters_are_attributed_to_channel_partner_product_slot_and_tier(catalogue):
    deltas = counter_deltas(event("click", "click_loan", slot="mid", tier="C"), catalogue)
    where, measure = parse_counter_field(next(iter(deltas)))
    assert (where.channel, where.partner, where.product, where.page, where.slot, where.risk_tier) == (
        "per_click", "lender_f", "click_loan", "home", "mid", "C",
    )
    assert measure == "clicks"
    visitor = counter_deltas(event("impression", "own_loan", tier=None), catalogue)
    assert all(parse_counter_field(name)[0].risk_tier == "-" for name in visitor)


def test_a_reversal_takes_back_exactly_what_the_event_added_and_counts_itself(catalogue):
    original = counter_deltas(event("disbursed", "cps_loan", amount=1_000_000, source="lender_a"), catalogue)
    undo = reversal_deltas(original)
    for name, value in original.items():
        assert undo[name] == -value
    reversals = [name for name in undo if name.endswith("|reversals")]
    assert len(reversals) == 1 and undo[reversals[0]] == 1
    assert reversal_deltas({}) == {}


def test_learning_counts_weigh_impressions_by_slot_position(catalogue):
    assert learning_deltas(event("impression", "gold_card", slot="low"), catalogue) == {
        "gold_card|A|imp": 1,
        "gold_card|A|wimp": 3000,
    }
    assert learning_deltas(event("click", "gold_card", slot="low"), catalogue) == {"gold_card|A|clk": 1}
    assert learning_deltas(event("rejected", "gold_card", source="card_c"), catalogue) == {}


def test_an_event_survives_the_trip_through_the_stream():
    original = event("disbursed", "cps_loan", amount=42, source="lender_a", event_id="e-1")
    assert LedgerEvent.from_dict(original.to_dict()) == original
    visitor = LedgerEvent(type="impression", occurred_at=NOON, source="app", product_id="own_loan", user_id=None)
    assert LedgerEvent.from_dict(visitor.to_dict()) == visitor


def test_app_events_are_identified_by_decision_slot_and_type():
    assert app_event_key("d1", "top", "click") != app_event_key("d1", "top", "impression")
    assert app_event_key("d1", "top", "click") != app_event_key("d1", "mid", "click")
    assert app_event_key("d1", "top", "click") == app_event_key("d1", "top", "click")


def test_days_are_utc():
    assert day_of(NOON) == "20260101"
    assert day_of(NOON + 12 * 3600) == "20260102"  # midnight UTC starts the next day


def test_revenue_rows_sum_micro_fen_and_round_half_up_once_on_read():
    # three CPS disbursals of 50 fen at 1% earn 0.5 fen each: 1.5 fen in all, read as 2 fen
    # (rounding each event first would have given 3 × 1 = 3 fen).
    field = "cps|lender_a|cps_loan|home|top|A|"
    day = {
        field + "loans": 3,
        field + "disbursed_fen": 150,
        field + "platform_revenue_micro_fen": 1_500_000,
        field + "group_contribution_micro_fen": 1_500_000,
        "self|in_house|own_loan|home|top|-|impressions": 7,
        "self|in_house|own_loan|home|top|-|expected_group_contribution_micro_fen": 2_499_999,
    }
    rows = revenue_rows([("20260101", day)], "channel")
    assert rows == [
        {
            "channel": "cps", "impressions": 0, "clicks": 0, "applications": 0, "approvals": 0, "loans": 3,
            "disbursed_fen": 150, "platform_revenue_fen": 2, "group_contribution_fen": 2,
            "expected_platform_revenue_fen": 0, "expected_group_contribution_fen": 0,
        },
        {
            "channel": "self", "impressions": 7, "clicks": 0, "applications": 0, "approvals": 0, "loans": 0,
            "disbursed_fen": 0, "platform_revenue_fen": 0, "group_contribution_fen": 0,
            "expected_platform_revenue_fen": 0, "expected_group_contribution_fen": 2,  # 2.499999 fen
        },
    ]


def test_revenue_rows_group_by_every_dimension():
    day1 = {"cps|lender_a|cps_loan|home|top|A|clicks": 2, "per_card|card_c|gold_card|home|low|-|clicks": 1}
    day2 = {"cps|lender_a|cps_loan|home|mid|B|clicks": 5}
    days = [("20260101", day1), ("20260102", day2)]
    clicks = {g: {row[g]: row["clicks"] for row in revenue_rows(days, g)} for g in GROUP_BY}
    assert clicks["channel"] == {"cps": 7, "per_card": 1}
    assert clicks["partner"] == {"lender_a": 7, "card_c": 1}
    assert clicks["product"] == {"cps_loan": 7, "gold_card": 1}
    assert clicks["slot"] == {"home/top": 2, "home/low": 1, "home/mid": 5}
    assert clicks["risk_tier"] == {"A": 2, "B": 5, None: 1}
    assert clicks["day"] == {"2026-01-01": 3, "2026-01-02": 5}
    with pytest.raises(ValueError):
        revenue_rows(days, "colour")


def test_lead_pace_spreads_the_cap_over_the_day_with_a_small_burst():
    # cap 50,000, burst 2% = 1,000
    assert paced_lead_allowance(50_000, 0) == 1_000
    assert paced_lead_allowance(50_000, 6 * 3600) == 12_500 + 1_000
    assert paced_lead_allowance(50_000, 9 * 3600) == 18_750 + 1_000  # not exhausted by 9 am
    assert paced_lead_allowance(50_000, 23.9 * 3600) == 50_000  # never above the cap
    assert paced_lead_allowance(10, 0) == 1  # the burst is at least one lead
    assert paced_lead_allowance(0, 12 * 3600) == 0
