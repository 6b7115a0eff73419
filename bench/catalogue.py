"""The benchmark catalogue: 50 products, one page of 8 slots, 200 rules — all valid under the guards."""
from __future__ import annotations

import random

TIERS = ("A", "B", "C", "D")
REGIONS = ("guangdong", "beijing", "shanghai", "zhejiang", "sichuan", "hubei")
DEVICES = ("phone-a", "phone-b", "phone-c", "fold-1")


def build(seed: int = 7, products: int = 50, slots: int = 8, rules: int = 200) -> dict:
    rng = random.Random(seed)
    partners = []
    for i in range(12):
        partners.append(
            {
                "partner_id": f"partner_{i:02d}",
                "legal_name": f"Partner {i:02d} Finance Co., Ltd.",
                "licence_type": "card_issuer" if i >= 9 else "consumer_finance",
                "licence_id": f"LIC-{i:04d}",
                "licence_expires_on": "2031-12-31",
                "whitelisted": True,
                "status": "active",
                "timeout_ms": 300,
            }
        )
    catalogue_products = []
    for i in range(products):
        in_house = i < 2
        owner = "in_house" if in_house else partners[i % len(partners)]["partner_id"]
        card = not in_house and owner in ("partner_09", "partner_10", "partner_11")
        model = "self" if in_house else ("per_card" if card else rng.choice(["cps", "per_credit_line", "per_application", "per_click"]))
        settlement = {"model": model}
        if model == "self":
            settlement["transfer_price_bps"] = 150
        elif model == "cps":
            settlement["cps_rate_bps"] = rng.randint(50, 300)
        else:
            settlement["fee_fen"] = rng.randint(3_000, 40_000)
        product = {
            "product_id": f"product_{i:02d}",
            "owner": owner,
            "kind": "credit_card" if card else "loan",
            "title": f"Product {i:02d}",
            "lender_name": "In-house Consumer Finance Co., Ltd." if in_house else f"Partner {owner[-2:]} Finance Co., Ltd.",
            "licence_id": "LIC-HOUSE" if in_house else f"LIC-00{owner[-2:]}",
            "limit_min_fen": 100_000,
            "limit_max_fen": rng.choice([5_000_000, 20_000_000, 30_000_000]),
            "apr_min_bps": 720,
            "apr_max_bps": rng.choice([1800, 2000, 2400]),
            "term_min_days": 90,
            "term_max_days": 360,
            "disclosure": "Provided by the lender named above; borrow within your means.",
            "requires_login": not in_house,
            "settlement": settlement,
            "funnel": {
                "ctr_bps": rng.randint(100, 500),
                "apply_rate_bps": rng.randint(1000, 3000),
                "approval_rate_bps": {t: rng.randint(1000, 4500) for t in TIERS},
                "draw_rate_bps": rng.randint(1800, 6000),
                "new_customer_rate_bps": 10_000 if in_house else rng.randint(5000, 9000),
                "avg_loan_fen": rng.randint(300_000, 3_000_000),
                "term_months": rng.choice([3, 6, 12]),
            },
            "eligibility": {"risk_tiers": list(TIERS)},
        }
        if in_house:
            product["lending"] = {
                "apr_bps": 1800,
                "cost_of_funds_bps": 300,
                "annual_loss_bps": {"A": 200, "B": 400, "C": 600, "D": 800},
                "opex_bps": 200,
                "capital_charge_bps": 150,
            }
        catalogue_products.append(product)
    page_slots = [
        {
            "slot_id": f"slot_{s}",
            "position_weight_bps": max(1000, 10_000 - s * 1100),
            "accepts": ["loan", "credit_card"] if s % 3 else ["loan"],
            "visible_to_visitors": True,
            "fallback_product_id": "product_00",
        }
        for s in range(slots)
    ]
    catalogue_rules = []
    for r in range(rules):
        action = rng.choice(["boost", "boost", "exclude", "floor", "partner_share_cap", "pin"])
        rule = {"rule_id": f"rule_{r:03d}", "action": action, "priority": rng.randint(1, 1000), "page_id": "home"}
        condition = {}
        for field, values in (
            ("risk_tier", TIERS),
            ("region", REGIONS),
            ("device_model", DEVICES),
        ):
            if rng.random() < 0.5:
                condition[field] = rng.sample(values, 2)
        if rng.random() < 0.2:
            condition["app_version"] = {"min": f"5.{rng.randint(0, 9)}.0"}
        # Most rules target narrow audiences (as real campaigns do); a few apply widely.
        condition.setdefault("experiment_arm", [f"arm_{r % 20}"]) if rng.random() < 0.7 else None
        rule["condition"] = condition
        target = f"product_{rng.randint(2, products - 1):02d}"
        if action == "boost":
            rule.update(product_id=target, factor_bps=rng.choice([5000, 8000, 12000, 15000]))
        elif action == "exclude":
            rule.update(product_id=target)
        elif action == "floor":
            rule.update(floor_rpm_fen=rng.randint(1, 50))
        elif action == "partner_share_cap":
            rule.update(partner_id=partners[rng.randint(0, len(partners) - 1)]["partner_id"], max_slots=rng.randint(1, 3))
        else:
            rule.update(product_id=target, slot_id=f"slot_{rng.randint(1, slots - 1)}")
        catalogue_rules.append(rule)
    page = {"page_id": "home", "title": "Home", "slots": page_slots, "editorial_order": [p["product_id"] for p in catalogue_products]}
    return {"partners": partners, "products": catalogue_products, "pages": [page], "rules": catalogue_rules}
