"""Compliance guards of DESIGN §6, used both when the catalogue is written and at placement.

Write time: :func:`product_violations` and :func:`catalogue_violations` list
every reason a draft cannot be accepted, each naming the JSON path of the field.
Placement: the same product verdict is precomputed once per published rule set,
and :func:`partner_placeable` is asked for the request's date (a licence may be
stored after it expires, but nothing of that partner is placed).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any, Callable, Iterable, Iterator, Mapping

from .catalogue import (
    CONDITION_FIELDS,
    IN_HOUSE,
    PRODUCT_STATUSES,
    RULE_ACTIONS,
    SETTLEMENT_MODELS,
    BPS,
    Catalogue,
    Partner,
    Product,
    Rule,
)

# Guard 1: the all-in APR may never exceed 24%, whatever the deployment configures.
LEGAL_APR_CAP_BPS = 2400
# Guard 2: loans of 60 days or less (the "714" seven/fourteen-day loans) are banned.
SHORT_TERM_LOAN_MAX_DAYS = 60

FEE_MODELS = ("per_credit_line", "per_application", "per_click", "per_card")

# Guard 4: the card's title and promotion may not carry a rate of their own, so
# nothing on the card is more prominent than the annualised APR. A percent or
# per-mille figure, or a daily/monthly rate wording, is a rate.
_RATE_TEXT = re.compile(
    r"[%％‰]"
    r"|日利率|日息|日利息|日费率|月息|月利率|月利息|月费率|万分之|千分之"
    r"|利率\D{0,4}\d"
    r"|\d\s*厘"
    r"|\b(?:daily|monthly|weekly)\s+(?:interest\s+)?(?:rate|interest)\b"
    r"|\bper\s+(?:day|month)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Violation:
    """One reason a catalogue entry breaks a guard; ``field`` is its JSON path."""

    field: str
    guard: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "guard": self.guard, "message": self.message}


def effective_apr_cap_bps(apr_cap_bps: int) -> int:
    """The configured APR cap, never above the legal 24%."""
    return min(int(apr_cap_bps), LEGAL_APR_CAP_BPS)


def shows_a_rate(text: str) -> bool:
    """Whether ``text`` carries a rate figure or a daily/monthly rate wording (guard 4)."""
    return bool(_RATE_TEXT.search(text or ""))


def product_violations(product: Product, apr_cap_bps: int) -> list[Violation]:
    """Every guard (1, 2, 4 and settlement consistency) ``product`` breaks, in guard order.

    An empty list means the product may be stored and, as far as the product
    itself goes, placed.
    """
    cap = effective_apr_cap_bps(apr_cap_bps)
    out: list[Violation] = []

    # Guard 1: APR cap, on the card and on the in-house lending terms.
    if product.apr_max_bps > cap:
        message = f"APR up to {product.apr_max_bps} bps exceeds the cap of {cap} bps"
        out.append(Violation("apr_max_bps", "apr_cap", message))
    if product.apr_min_bps > cap:
        message = f"APR from {product.apr_min_bps} bps exceeds the cap of {cap} bps"
        out.append(Violation("apr_min_bps", "apr_cap", message))
    if product.lending is not None and product.lending.apr_bps > cap:
        message = f"lending APR {product.lending.apr_bps} bps exceeds the cap of {cap} bps"
        out.append(Violation("lending.apr_bps", "apr_cap", message))

    # Guard 2: no short-term ("714") loans.
    if product.kind == "loan" and product.term_min_days <= SHORT_TERM_LOAN_MAX_DAYS:
        out.append(
            Violation(
                "term_min_days",
                "short_term_loan",
                f"a loan term of {product.term_min_days} days is {SHORT_TERM_LOAN_MAX_DAYS} days or less",
            )
        )

    # Guard 4: the card discloses the lender, licence, APR range, term range and a disclosure line.
    for name in ("title", "lender_name", "licence_id", "disclosure"):
        if not str(getattr(product, name) or "").strip():
            out.append(Violation(name, "card_disclosure", f"{name} must be shown on the card and cannot be empty"))
    if product.apr_min_bps < 0 or product.apr_max_bps <= 0:
        out.append(Violation("apr_max_bps", "card_disclosure", "the card must show a positive annualised APR range"))
    elif product.apr_min_bps > product.apr_max_bps:
        out.append(Violation("apr_min_bps", "card_disclosure", "apr_min_bps is above apr_max_bps"))
    if product.lending is not None and not product.apr_min_bps <= product.lending.apr_bps <= product.apr_max_bps:
        message = "the lending APR lies outside the APR range shown on the card"
        out.append(Violation("lending.apr_bps", "card_disclosure", message))
    if product.term_min_days <= 0:
        out.append(Violation("term_min_days", "card_disclosure", "the card must show a positive term range"))
    elif product.term_max_days < product.term_min_days:
        out.append(Violation("term_max_days", "card_disclosure", "term_max_days is below term_min_days"))
    if product.limit_min_fen < 0 or product.limit_max_fen < product.limit_min_fen:
        out.append(Violation("limit_max_fen", "card_disclosure", "the limit range is empty or negative"))
    for name in ("title", "promo"):
        if shows_a_rate(getattr(product, name)):
            out.append(
                Violation(
                    name,
                    "card_disclosure",
                    f"{name} may not carry a rate of its own; the annualised APR is the only rate on the card",
                )
            )

    out.extend(_settlement_violations(product))

    if product.status not in PRODUCT_STATUSES:
        out.append(Violation("status", "status", f"status must be one of {', '.join(PRODUCT_STATUSES)}"))
    return out


def _settlement_violations(product: Product) -> Iterable[Violation]:
    settlement = product.settlement
    model = settlement.model
    if model not in SETTLEMENT_MODELS:
        message = f"settlement model must be one of {', '.join(SETTLEMENT_MODELS)}"
        yield Violation("settlement.model", "settlement", message)
        return
    if model == "cps" and settlement.cps_rate_bps <= 0:
        yield Violation("settlement.cps_rate_bps", "settlement", "a cps product needs cps_rate_bps above 0")
    if model in FEE_MODELS and settlement.fee_fen <= 0:
        yield Violation("settlement.fee_fen", "settlement", f"a {model} product needs fee_fen above 0")
    if model == "self":
        if product.owner != IN_HOUSE:
            yield Violation("settlement.model", "settlement", "only an in-house product can be self-lent")
        if product.lending is None:
            yield Violation("lending", "settlement", "a self-lent product needs its lending economics")
    for name in ("cps_rate_bps", "transfer_price_bps"):
        value = getattr(settlement, name)
        if not 0 <= value <= BPS:
            yield Violation(f"settlement.{name}", "settlement", f"{name} must be between 0 and {BPS}")
    if settlement.fee_fen < 0:
        yield Violation("settlement.fee_fen", "settlement", "fee_fen cannot be negative")
    funnel = product.funnel
    rates: list[tuple[str, Any]] = [
        ("ctr_bps", funnel.ctr_bps),
        ("apply_rate_bps", funnel.apply_rate_bps),
        ("draw_rate_bps", funnel.draw_rate_bps),
        ("new_customer_rate_bps", funnel.new_customer_rate_bps),
    ]
    approval = funnel.approval_rate_bps
    if isinstance(approval, dict):
        rates.extend((f"approval_rate_bps.{tier}", value) for tier, value in approval.items())
    else:
        rates.append(("approval_rate_bps", approval))
    for name, value in rates:
        if not 0 <= value <= BPS:
            yield Violation(f"funnel.{name}", "funnel", f"{name} must be between 0 and {BPS}")
    if funnel.avg_loan_fen < 0:
        yield Violation("funnel.avg_loan_fen", "funnel", "avg_loan_fen cannot be negative")
    if funnel.term_months < 0:
        yield Violation("funnel.term_months", "funnel", "term_months cannot be negative")


def partner_placeable(partner: Partner, today: date) -> str | None:
    """Guard 3: why none of ``partner``'s products may be placed on ``today``, or None.

    Reasons: ``not_whitelisted``, ``paused`` (any status but active), ``licence_expired``.
    """
    if not partner.whitelisted:
        return "not_whitelisted"
    if partner.status != "active":
        return "paused"
    if partner.licence_expires_on < today:
        return "licence_expired"
    return None


_RULE_TARGETS = ("product_id", "partner_id")


def catalogue_violations(catalogue: Catalogue, apr_cap_bps: int) -> list[Violation]:
    """Every reason ``catalogue`` cannot be published: product guards and cross references.

    Paths name the entry, e.g. ``products[xingyun_loan].apr_max_bps`` or
    ``rules[r12].product_id``.
    """
    out: list[Violation] = []
    partners = catalogue.partners
    products = catalogue.products
    pages = catalogue.pages

    for partner_id in sorted(partners):
        partner = partners[partner_id]
        for name in ("legal_name", "licence_id"):
            if not str(getattr(partner, name) or "").strip():
                out.append(
                    Violation(f"partners[{partner_id}].{name}", "card_disclosure", f"{name} cannot be empty")
                )

    for product_id in sorted(products):
        product = products[product_id]
        prefix = f"products[{product_id}]"
        if product.owner != IN_HOUSE and product.owner not in partners:
            message = f"owner {product.owner!r} is neither in_house nor a partner"
            out.append(Violation(f"{prefix}.owner", "unknown_reference", message))
        for v in product_violations(product, apr_cap_bps):
            out.append(Violation(f"{prefix}.{v.field}", v.guard, v.message))

    for page_id in sorted(pages):
        page = pages[page_id]
        seen: set[str] = set()
        for slot in page.slots:
            prefix = f"pages[{page_id}].slots[{slot.slot_id}]"
            if slot.slot_id in seen:
                out.append(Violation(f"{prefix}.slot_id", "duplicate_slot", f"slot {slot.slot_id!r} appears twice"))
            seen.add(slot.slot_id)
            if not 0 <= slot.position_weight_bps <= BPS:
                message = f"position_weight_bps must be between 0 and {BPS}"
                out.append(Violation(f"{prefix}.position_weight_bps", "slot", message))
            fallback = slot.fallback_product_id
            if fallback is not None:
                if fallback not in products:
                    out.append(
                        Violation(f"{prefix}.fallback_product_id", "unknown_reference", f"no product {fallback!r}")
                    )
                elif products[fallback].kind not in slot.accepts:
                    out.append(
                        Violation(
                            f"{prefix}.fallback_product_id",
                            "kind_not_accepted",
                            f"the slot does not accept {products[fallback].kind!r} products",
                        )
                    )
        for i, product_id in enumerate(page.editorial_order):
            if product_id not in products:
                path = f"pages[{page_id}].editorial_order[{i}]"
                out.append(Violation(path, "unknown_reference", f"no product {product_id!r}"))

    all_slots = {slot.slot_id for page in pages.values() for slot in page.slots}
    for rule in catalogue.rules:
        out.extend(_rule_violations(rule, catalogue, all_slots))
    return out


def _rule_violations(rule: Rule, catalogue: Catalogue, all_slots: set[str]) -> Iterator[Violation]:
    """Every reason ``rule`` cannot be published: its action, references, parameters and condition."""
    prefix = f"rules[{rule.rule_id}]"
    if rule.action not in RULE_ACTIONS:
        yield Violation(f"{prefix}.action", "rule_parameters", f"action must be one of {', '.join(RULE_ACTIONS)}")
    yield from _rule_reference_violations(rule, prefix, catalogue, all_slots)
    for name, broken, message in _RULE_PARAMETERS.get(rule.action, ()):
        if broken(rule):
            yield Violation(f"{prefix}.{name}", "rule_parameters", message)
    yield from _rule_condition_violations(rule, prefix)


def _rule_reference_violations(
    rule: Rule, prefix: str, catalogue: Catalogue, all_slots: set[str]
) -> Iterator[Violation]:
    """The page, product, partner and slot a rule names must exist (the slot on the rule's page, if any)."""
    known: tuple[tuple[str, str, Mapping[str, object]], ...] = (
        ("page_id", "page", catalogue.pages),
        ("product_id", "product", catalogue.products),
        ("partner_id", "partner", catalogue.partners),
    )
    for name, what, entries in known:
        value = getattr(rule, name)
        if value is not None and value not in entries:
            yield Violation(f"{prefix}.{name}", "unknown_reference", f"no {what} {value!r}")
    if rule.slot_id is not None:
        page = catalogue.pages.get(rule.page_id) if rule.page_id is not None else None
        slots = {s.slot_id for s in page.slots} if page is not None else all_slots
        if rule.slot_id not in slots:
            where = f"page {rule.page_id!r}" if page is not None else "any page"
            yield Violation(f"{prefix}.slot_id", "unknown_reference", f"no slot {rule.slot_id!r} on {where}")


def _whole_number(value: object, minimum: int) -> bool:
    """Whether ``value`` is an int (not a bool) of at least ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _targets_nothing(rule: Rule) -> bool:
    return rule.product_id is None and rule.partner_id is None


# The parameters each action needs: (field, whether the rule gets it wrong, message).
_RULE_PARAMETERS: dict[str, tuple[tuple[str, Callable[[Rule], bool], str], ...]] = {
    "pin": (
        ("product_id", lambda r: r.product_id is None, "a pin names the product_id to pin"),
        ("slot_id", lambda r: r.slot_id is None, "a pin names the slot_id to pin into"),
    ),
    "boost": (
        ("factor_bps", lambda r: not _whole_number(r.factor_bps, 1), "a boost needs factor_bps above 0"),
        ("product_id", _targets_nothing, "a boost names a product_id or a partner_id"),
    ),
    "floor": (
        ("floor_rpm_fen", lambda r: not _whole_number(r.floor_rpm_fen, 0), "a floor needs floor_rpm_fen of 0 or more"),
    ),
    "partner_share_cap": (
        ("partner_id", lambda r: r.partner_id is None, "a partner share cap names the partner_id"),
        ("max_slots", lambda r: not _whole_number(r.max_slots, 0), "a partner share cap needs max_slots of 0 or more"),
    ),
    "exclude": (
        ("product_id", _targets_nothing, "an exclude names a product_id or a partner_id"),
    ),
}


def _rule_condition_violations(rule: Rule, prefix: str) -> Iterator[Violation]:
    condition = rule.condition
    if not isinstance(condition, dict):
        yield Violation(f"{prefix}.condition", "rule_condition", "the condition is an object of field to values")
        return
    for name, accepted in condition.items():
        problem = _condition_problem(name, accepted)
        if problem is not None:
            yield Violation(f"{prefix}.condition.{name}", "rule_condition", problem)


def _condition_problem(name: str, accepted: object) -> str | None:
    """What is wrong with one field of a rule condition, or None."""
    if name not in CONDITION_FIELDS:
        return f"unknown condition field; use one of {', '.join(CONDITION_FIELDS)}"
    if name == "app_version" and isinstance(accepted, dict):
        minimum = accepted.get("min")
        if set(accepted) != {"min"} or not isinstance(minimum, str) or parse_version(minimum) is None:
            return 'app_version takes a list of versions or {"min": "x.y.z"}'
        return None
    if not isinstance(accepted, list):
        return "a condition field takes the list of values it accepts"
    return None


def parse_version(text: Any) -> tuple[int, ...] | None:
    """``"5.2.10"`` → ``(5, 2, 10)``; None when it is not a dotted version."""
    if not isinstance(text, str) or not text:
        return None
    parts: list[int] = []
    for piece in text.strip().split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            return None
        parts.append(int(digits))
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)
