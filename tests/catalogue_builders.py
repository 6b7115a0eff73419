"""Catalogue builders for tests, as the plain dicts the admin API and catalogue files take (docs/api.md).

Two families: the domain builders (``partner``, ``product``, ``page``, ``slot``,
``catalogue`` → a :class:`Catalogue`) for placement and guard tests, and the
``admin_*`` bodies for tests that load a catalogue of their own through the
admin API, a file or the store.

Scores are easy to compute by hand with ``per_click`` products: expected
revenue per impression = ctr × position weight × fee, so with ``ctr_bps=1000``
(10%) a fee of F fen scores F/10 fen = F × 100,000 micro-fen per impression.
"""
from __future__ import annotations

import copy

import tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from wallet_market.domain.catalogue import Catalogue
from wallet_market.domain.placement import PlacementIndex, PlacementPolicy, RequestContext, UserState, place
from wallet_market.domain.users import UserProfile

NOW = datetime(2025, 6, 1, 8, 0, tzinfo=timezone.utc)
TODAY = NOW.date()
DEMO_CATALOGUE = Path(__file__).resolve().parents[1] / "config" / "demo_catalogue.toml"


def micro_fen_per_click_product(fee_fen: int, ctr_bps: int = 1000) -> int:
    """Score of a per_click product at weight 1: ctr × fee, in micro-fen."""
    return ctr_bps * fee_fen * 100


def partner(partner_id: str, **over: Any) -> dict[str, Any]:
    d = {
        "partner_id": partner_id,
        "legal_name": f"{partner_id} 金融有限公司",
        "licence_type": "consumer_finance",
        "licence_id": f"LIC-{partner_id}",
        "licence_expires_on": "2030-12-31",
        "whitelisted": True,
        "status": "active",
    }
    d.update(over)
    return d


def product(product_id: str, owner: str = "p1", kind: str = "loan", fee_fen: int = 1000, **over: Any) -> dict[str, Any]:
    """A valid product paid per click (score = fee_fen × 100,000 micro-fen with ctr 10%)."""
    d = {
        "product_id": product_id,
        "owner": owner,
        "kind": kind,
        "title": f"{product_id} 借款",
        "lender_name": f"{owner} 金融有限公司",
        "licence_id": f"LIC-{owner}",
        "limit_min_fen": 100_000,
        "limit_max_fen": 10_000_000,
        "apr_min_bps": 720,
        "apr_max_bps": 2400,
        "term_min_days": 90,
        "term_max_days": 360,
        "promo": "",
        "disclosure": "额度与利率以审批为准，年化利率为单利。",
        "requires_login": owner != "in_house",
        "settlement": {"model": "per_click", "fee_fen": fee_fen},
        "funnel": {
            "ctr_bps": 1000,
            "apply_rate_bps": 2000,
            "approval_rate_bps": 3000,
            "draw_rate_bps": 5000,
        },
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(d.get(key), dict):
            d[key] = {**d[key], **value}
        else:
            d[key] = value
    return d


def slot(
    slot_id: str, weight_bps: int = 10000, accepts: tuple[str, ...] = ("loan", "credit_card"), **over: Any
) -> dict[str, Any]:
    d = {"slot_id": slot_id, "position_weight_bps": weight_bps, "accepts": list(accepts), "visible_to_visitors": True}
    d.update(over)
    return d


def page(page_id: str, slots: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    d = {"page_id": page_id, "slots": slots}
    d.update(over)
    return d


def catalogue(
    products: list[dict[str, Any]],
    pages: list[dict[str, Any]] | None = None,
    rules: list[dict[str, Any]] | None = None,
    partners: list[dict[str, Any]] | None = None,
    version: int = 7,
) -> Catalogue:
    if partners is None:
        owners = sorted({p["owner"] for p in products if p["owner"] != "in_house"})
        partners = [partner(o) for o in owners]
    if pages is None:
        pages = [page("home", [slot("top", 10000), slot("second", 5000)])]
    raw = {"partners": partners, "products": products, "pages": pages, "rules": rules or []}
    return Catalogue.from_dict(raw, version)


def user(
    user_id: str = "u1", risk_tier: str | None = "A", consents: tuple[str, ...] = ("p1", "p2", "p3"), **over: Any
) -> UserProfile:
    fields: dict[str, Any] = {
        "user_id": user_id,
        "risk_tier": risk_tier,
        "share_with_partners": frozenset(consents),
        "age": 30,
    }
    fields.update(over)
    return UserProfile(**fields)


def layout(
    cat: Catalogue,
    who: UserProfile | None,
    page_id: str = "home",
    state: UserState | None = None,
    policy: PlacementPolicy | None = None,
    **ctx: Any,
):
    """Place ``page_id`` with explanations."""
    policy = policy or PlacementPolicy()
    index = PlacementIndex.build(cat, policy)
    context = RequestContext(page_id=page_id, now=ctx.pop("now", NOW), user=who, **ctx)
    return place(index, context, state or UserState(), policy, explain=True)


def slots_of(decision) -> dict[str, str]:
    return {s.slot_id: s.product_id for s in decision.slots}


def demo_catalogue() -> Catalogue:
    with DEMO_CATALOGUE.open("rb") as f:
        return Catalogue.from_dict(tomllib.load(f))


# -- bodies for the admin API, catalogue files and the store ---------------------------------


def admin_partner(partner_id="lender_a", **changes):
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


def admin_product(product_id="lender_a_loan", owner="lender_a", **changes):
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


def admin_page(page_id="home", slots=None, **changes):
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


def admin_catalogue():
    """Two partners' loans and an in-house loan on a two-slot home page."""
    return {
        "partners": [admin_partner("lender_a"), admin_partner("lender_b")],
        "products": [
            admin_product("inhouse_loan", "in_house"),
            admin_product("lender_a_loan", "lender_a"),
            admin_product("lender_b_loan", "lender_b", settlement={"model": "per_credit_line", "fee_fen": 20_000}),
        ],
        "pages": [admin_page()],
        "rules": [],
    }
