"""Every money, rate, term and count field has a realistic bound, refused by field when broken."""
import pytest

from wallet_market.domain import bounds
from wallet_market.domain.catalogue import Product
from wallet_market.domain.guards import catalogue_violations, product_violations

from tests.catalogue_builders import catalogue, page, partner, product, slot


def fields_of(violations, guard="bounds"):
    return {v.field for v in violations if v.guard == guard}


def test_the_bounds_a_real_lending_product_has():
    assert bounds.MAX_LOAN_FEN == 1_000_000 * 100  # a loan is never above 1,000,000 RMB
    assert bounds.MAX_FEE_FEN == 10_000 * 100  # a fee per approval, application, click or card: 10,000 RMB
    assert (bounds.MAX_RATE_BPS, bounds.MAX_TERM_MONTHS, bounds.MAX_DAILY_CAP) == (10_000, 360, 10**9)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"funnel": {"avg_loan_fen": 10**15}}, "funnel.avg_loan_fen"),
        ({"limit_max_fen": 100_000_001}, "limit_max_fen"),
        ({"term_max_days": 10_951}, "term_max_days"),
        ({"daily_impression_cap": 10**9 + 1}, "daily_impression_cap"),
        ({"fee_fen": 1_000_001}, "settlement.fee_fen"),
        ({"funnel": {"approval_rate_bps": {"A": 3000, "B": 10_001}}}, "funnel.approval_rate_bps.B"),
        ({"funnel": {"term_months": 361}}, "funnel.term_months"),
    ],
)
def test_a_field_beyond_its_bound_is_named(changes, field):
    found = product_violations(Product.from_dict(product("x", owner="p1", **changes)), 2400)
    assert fields_of(found) == {field}


def test_the_largest_values_within_the_bounds_are_accepted():
    biggest = product(
        "x", owner="p1", limit_min_fen=bounds.MAX_LOAN_FEN, limit_max_fen=bounds.MAX_LOAN_FEN,
        term_max_days=bounds.MAX_TERM_DAYS, fee_fen=bounds.MAX_FEE_FEN, daily_impression_cap=bounds.MAX_DAILY_CAP,
        funnel={"ctr_bps": 10_000, "apply_rate_bps": 10_000, "approval_rate_bps": 10_000,
                "avg_loan_fen": bounds.MAX_LOAN_FEN, "term_months": bounds.MAX_TERM_MONTHS},
    )
    assert product_violations(Product.from_dict(biggest), 2400) == []


def test_in_house_lending_rates_are_bounded_tier_by_tier():
    own = product("own", owner="in_house", settlement={"model": "self", "transfer_price_bps": 100}, lending={
        "apr_bps": 1800, "cost_of_funds_bps": 300, "annual_loss_bps": {"A": 200, "D": 12_000},
        "opex_bps": -1, "capital_charge_bps": 150,
    })
    found = fields_of(product_violations(Product.from_dict(own), 2400))
    assert found == {"lending.annual_loss_bps.D", "lending.opex_bps"}


def test_partner_caps_and_rule_parameters_are_bounded_in_the_catalogue():
    cat = catalogue(
        [product("x", owner="p1")],
        partners=[partner("p1", daily_lead_cap=10**9 + 1, timeout_ms=60_000)],
        pages=[page("home", [slot("top", 10000)])],
        rules=[
            {"rule_id": "lift", "action": "boost", "product_id": "x", "factor_bps": 1_000_001},
            {"rule_id": "floor", "action": "floor", "floor_rpm_fen": 10**12},
            {"rule_id": "share", "action": "partner_share_cap", "partner_id": "p1", "max_slots": 51},
        ],
    )
    assert fields_of(catalogue_violations(cat, 2400)) == {
        "partners[p1].daily_lead_cap",
        "partners[p1].timeout_ms",
        "rules[lift].factor_bps",
        "rules[floor].floor_rpm_fen",
        "rules[share].max_slots",
    }


def test_a_bound_speaks_in_the_fields_unit():
    assert bounds.LOAN_FEN.message("avg_loan_fen") == (
        "avg_loan_fen must be an integer from 0 to 100,000,000 fen (0–1,000,000 RMB)"
    )
    assert bounds.RATE_BPS.message("ctr_bps") == "ctr_bps must be an integer from 0 to 10,000 bps"
    assert not bounds.RATE_BPS.holds(True) and not bounds.RATE_BPS.holds(10_000.5)
