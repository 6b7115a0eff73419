"""Money counters are a low and a high field, so that no sum outgrows 64 bits; reading joins them exactly."""
from wallet_market.domain.funnel import HIGH_UNIT, ledger_adds, revenue_rows, split_micro

FIELD = "cps|lender_a|cps_loan|home|top|A|"


def test_a_delta_splits_into_whole_units_of_ten_to_the_twelve_and_the_rest_of_the_same_sign():
    assert HIGH_UNIT == 10**12
    assert split_micro(999_999_999_999) == (0, 999_999_999_999)
    assert split_micro(6_016_666_666_666_666) == (6_016, 666_666_666_666)  # the largest one event adds
    assert split_micro(3_000_007_000_000) == (3, 7_000_000)
    assert split_micro(-3_000_007_000_000) == (-3, -7_000_000)
    assert split_micro(0) == (0, 0)


def test_money_measures_get_a_high_field_and_counts_do_not():
    adds = ledger_adds({FIELD + "loans": 1, FIELD + "disbursed_fen": 2_000_000,
                        FIELD + "platform_revenue_micro_fen": 60_000_000_000_000})
    assert adds == [
        (FIELD + "loans", 1, None, 0),
        (FIELD + "disbursed_fen", 2_000_000, FIELD + "disbursed_fen_e12", 0),
        (FIELD + "platform_revenue_micro_fen", 0, FIELD + "platform_revenue_micro_fen_e12", 60),
    ]


def test_reading_joins_the_two_fields_before_rounding_once():
    counters = {
        FIELD + "loans": 3,
        FIELD + "disbursed_fen": 5,
        FIELD + "disbursed_fen_e12": 2,
        FIELD + "platform_revenue_micro_fen": 500_000,  # half a fen
        FIELD + "platform_revenue_micro_fen_e12": 7,  # 7 × 10^12 micro-fen = 7,000,000 fen
    }
    (row,) = revenue_rows([("20260101", counters)], "product")
    assert row["loans"] == 3
    assert row["disbursed_fen"] == 2 * 10**12 + 5
    assert row["platform_revenue_fen"] == 7_000_001  # 7,000,000.5 fen, half-up
