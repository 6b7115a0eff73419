"""Small valid catalogue entities for tests that need their own catalogue."""
from __future__ import annotations

import copy


def partner(partner_id="lender_a", **changes):
    body = {
        "partner_id": partner_id,
        "legal_name": f"{partner_id} Consumer Finance Co., Ltd.",
        "licence_type": "consumer_finance",
        "licence_id": f"CF-{partner_id}",
        "licence_expires_on": "2030-12-31",
        "whitelisted": True,
        "status": "active",
        "timeout_ms": 300,
    }
    body.update(changes)
    return body


def product(product_id="lender_a_loan", owner="lender_a", **changes):
    body = {
        "product_id": product_id,
        "owner": owner,
        "kind": "loan",
        "title": f"{product_id} cash loan",
        "lender_name": f"{owner} Consumer Finance Co., Ltd.",
        "licence_id": f"CF-{owner}",
        "limit_min_fen": 100_000,
        "limit_max_fen": 20_000_000,
        "apr_min_bps": 720,
        "apr_max_bps": 2400,
        "term_min_days": 90,
        "term_max_days": 360,
        "promo": "",
        "disclosure": "Loans are provided by the lender named above. Borrow responsibly.",
        "requires_login": owner != "in_house",
        "settlement": {"model": "cps", "cps_rate_bps": 200},
        "funnel": {
            "ctr_bps": 300,
            "apply_rate_bps": 2000,
            "approval_rate_bps": 3000,
            "draw_rate_bps": 5000,
            "new_customer_rate_bps": 7000,
            "avg_loan_fen": 800_000,
            "term_months": 12,
        },
    }
    if owner == "in_house":
        body["settlement"] = {"model": "self", "transfer_price_bps": 100}
        body["funnel"]["new_customer_rate_bps"] = 10_000
        body["lending"] = {
            "apr_bps": 1800,
            "cost_of_funds_bps": 300,
            "annual_loss_bps": {"A": 200, "B": 400, "C": 600, "D": 900},
            "opex_bps": 200,
            "capital_charge_bps": 150,
        }
    body.update(copy.deepcopy(changes))
    return body


def page(page_id="home", slots=None, **changes):
    body = {
        "page_id": page_id,
        "slots": slots
        or [
            {"slot_id": "top", "position_weight_bps": 10_000},
            {"slot_id": "second", "position_weight_bps": 5_000},
        ],
    }
    body.update(changes)
    return body


def catalogue():
    """Two partners' loans and an in-house loan on a two-slot home page."""
    return {
        "partners": [partner("lender_a"), partner("lender_b")],
        "products": [
            product("inhouse_loan", "in_house"),
            product("lender_a_loan", "lender_a"),
            product("lender_b_loan", "lender_b", settlement={"model": "per_credit_line", "fee_fen": 20_000}),
        ],
        "pages": [page()],
        "rules": [],
    }
