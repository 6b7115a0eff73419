"""The catalogue: partners, products, pages with slots, and placement rules.

Plain frozen dataclasses built from plain dicts (the shapes of DESIGN §7). The
domain imports only the standard library; shape validation of incoming JSON is
the api layer's job, business guards live in :mod:`wallet_market.domain.guards`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Mapping

RISK_TIERS = ("A", "B", "C", "D")
SETTLEMENT_MODELS = ("self", "cps", "per_credit_line", "per_application", "per_click", "per_card")
PRODUCT_KINDS = ("loan", "credit_card")
LICENCE_TYPES = ("bank", "consumer_finance", "online_micro_lender", "card_issuer")
PARTNER_STATUSES = ("active", "paused")
PRODUCT_STATUSES = ("active", "paused")
RULE_ACTIONS = ("pin", "exclude", "boost", "floor", "partner_share_cap")
IN_HOUSE = "in_house"
BPS = 10_000  # basis points in one whole


def _tiered(value: int | Mapping[str, int]) -> int | dict[str, int]:
    if isinstance(value, Mapping):
        return {str(k): int(v) for k, v in value.items()}
    return int(value)


def by_tier(value: int | Mapping[str, int], risk_tier: str | None) -> int:
    """Resolve a value that may be given per risk tier.

    A tiered value without an entry for the tier (or without a tier, as for a
    visitor) falls back to its ``default`` entry, then to the mean of the tiers.
    """
    if not isinstance(value, Mapping):
        return int(value)
    if risk_tier is not None and risk_tier in value:
        return int(value[risk_tier])
    if "default" in value:
        return int(value["default"])
    tiers = [int(v) for v in value.values()]
    return sum(tiers) // len(tiers) if tiers else 0


@dataclass(frozen=True, slots=True)
class Partner:
    partner_id: str
    legal_name: str
    licence_type: str
    licence_id: str
    licence_expires_on: date
    whitelisted: bool = True
    status: str = "active"
    prescreen_url: str | None = None
    joint_login_url: str | None = None
    settlement_url: str | None = None
    timeout_ms: int = 300
    daily_lead_cap: int | None = None
    daily_approval_cap: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Partner":
        expires = d["licence_expires_on"]
        if isinstance(expires, str):
            expires = date.fromisoformat(expires)
        return cls(
            partner_id=d["partner_id"],
            legal_name=d["legal_name"],
            licence_type=d["licence_type"],
            licence_id=d["licence_id"],
            licence_expires_on=expires,
            whitelisted=bool(d.get("whitelisted", True)),
            status=d.get("status", "active"),
            prescreen_url=d.get("prescreen_url"),
            joint_login_url=d.get("joint_login_url"),
            settlement_url=d.get("settlement_url"),
            timeout_ms=int(d.get("timeout_ms", 300)),
            daily_lead_cap=d.get("daily_lead_cap"),
            daily_approval_cap=d.get("daily_approval_cap"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "partner_id": self.partner_id,
            "legal_name": self.legal_name,
            "licence_type": self.licence_type,
            "licence_id": self.licence_id,
            "licence_expires_on": self.licence_expires_on.isoformat(),
            "whitelisted": self.whitelisted,
            "status": self.status,
            "prescreen_url": self.prescreen_url,
            "joint_login_url": self.joint_login_url,
            "settlement_url": self.settlement_url,
            "timeout_ms": self.timeout_ms,
            "daily_lead_cap": self.daily_lead_cap,
            "daily_approval_cap": self.daily_approval_cap,
        }

    def may_be_placed(self, today: date) -> bool:
        """Guard 3: whitelisted, active, and licensed on ``today``."""
        return self.whitelisted and self.status == "active" and self.licence_expires_on >= today


@dataclass(frozen=True, slots=True)
class Settlement:
    model: str
    cps_rate_bps: int = 0
    fee_fen: int = 0
    transfer_price_bps: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Settlement":
        return cls(
            model=d["model"],
            cps_rate_bps=int(d.get("cps_rate_bps") or 0),
            fee_fen=int(d.get("fee_fen") or 0),
            transfer_price_bps=int(d.get("transfer_price_bps") or 0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "cps_rate_bps": self.cps_rate_bps,
            "fee_fen": self.fee_fen,
            "transfer_price_bps": self.transfer_price_bps,
        }


@dataclass(frozen=True, slots=True)
class Funnel:
    """Funnel rates of a product (DESIGN §5); ``approval_rate_bps`` may be per risk tier."""

    ctr_bps: int
    apply_rate_bps: int
    approval_rate_bps: int | Mapping[str, int]
    draw_rate_bps: int
    new_customer_rate_bps: int = BPS
    avg_loan_fen: int = 0
    term_months: int = 12

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Funnel":
        return cls(
            ctr_bps=int(d["ctr_bps"]),
            apply_rate_bps=int(d["apply_rate_bps"]),
            approval_rate_bps=_tiered(d["approval_rate_bps"]),
            draw_rate_bps=int(d.get("draw_rate_bps", 0)),
            new_customer_rate_bps=int(d.get("new_customer_rate_bps", BPS)),
            avg_loan_fen=int(d.get("avg_loan_fen", 0)),
            term_months=int(d.get("term_months", 12)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ctr_bps": self.ctr_bps,
            "apply_rate_bps": self.apply_rate_bps,
            "approval_rate_bps": dict(self.approval_rate_bps)
            if isinstance(self.approval_rate_bps, Mapping)
            else self.approval_rate_bps,
            "draw_rate_bps": self.draw_rate_bps,
            "new_customer_rate_bps": self.new_customer_rate_bps,
            "avg_loan_fen": self.avg_loan_fen,
            "term_months": self.term_months,
        }

    def approval_for(self, risk_tier: str | None) -> int:
        return by_tier(self.approval_rate_bps, risk_tier)


@dataclass(frozen=True, slots=True)
class Lending:
    """Economics of the in-house lender's loan; ``annual_loss_bps`` may be per risk tier."""

    apr_bps: int
    cost_of_funds_bps: int
    annual_loss_bps: int | Mapping[str, int]
    opex_bps: int
    capital_charge_bps: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Lending":
        return cls(
            apr_bps=int(d["apr_bps"]),
            cost_of_funds_bps=int(d["cost_of_funds_bps"]),
            annual_loss_bps=_tiered(d["annual_loss_bps"]),
            opex_bps=int(d["opex_bps"]),
            capital_charge_bps=int(d["capital_charge_bps"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "apr_bps": self.apr_bps,
            "cost_of_funds_bps": self.cost_of_funds_bps,
            "annual_loss_bps": dict(self.annual_loss_bps)
            if isinstance(self.annual_loss_bps, Mapping)
            else self.annual_loss_bps,
            "opex_bps": self.opex_bps,
            "capital_charge_bps": self.capital_charge_bps,
        }

    def annual_loss_for(self, risk_tier: str | None) -> int:
        return by_tier(self.annual_loss_bps, risk_tier)


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Hard eligibility: who may see the product at all."""

    risk_tiers: tuple[str, ...] = RISK_TIERS
    age_min: int | None = None
    age_max: int | None = None
    regions: tuple[str, ...] = ()  # empty: every region

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Eligibility":
        d = d or {}
        return cls(
            risk_tiers=tuple(d.get("risk_tiers") or RISK_TIERS),
            age_min=d.get("age_min"),
            age_max=d.get("age_max"),
            regions=tuple(d.get("regions") or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "risk_tiers": list(self.risk_tiers),
            "age_min": self.age_min,
            "age_max": self.age_max,
            "regions": list(self.regions),
        }


@dataclass(frozen=True, slots=True)
class Window:
    """An optional schedule window, ISO datetimes in UTC, either end open."""

    starts_at: datetime | None = None
    ends_at: datetime | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Window":
        d = d or {}
        return cls(starts_at=_parse_dt(d.get("starts_at")), ends_at=_parse_dt(d.get("ends_at")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "starts_at": self.starts_at.isoformat() if self.starts_at else None,
            "ends_at": self.ends_at.isoformat() if self.ends_at else None,
        }

    @property
    def is_open_ended(self) -> bool:
        return self.starts_at is None and self.ends_at is None

    def contains(self, now: datetime) -> bool:
        if self.starts_at is not None and now < self.starts_at:
            return False
        if self.ends_at is not None and now >= self.ends_at:
            return False
        return True


def _parse_dt(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        from datetime import timezone

        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    owner: str
    kind: str
    title: str
    lender_name: str
    licence_id: str
    limit_min_fen: int
    limit_max_fen: int
    apr_min_bps: int
    apr_max_bps: int
    term_min_days: int
    term_max_days: int
    settlement: Settlement
    funnel: Funnel
    disclosure: str
    promo: str = ""
    requires_login: bool = False
    lending: Lending | None = None
    eligibility: Eligibility = field(default_factory=Eligibility)
    schedule: Window = field(default_factory=Window)
    status: str = "active"
    action_url: str = ""
    daily_impression_cap: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Product":
        lending = d.get("lending")
        return cls(
            product_id=d["product_id"],
            owner=d["owner"],
            kind=d["kind"],
            title=d["title"],
            lender_name=d["lender_name"],
            licence_id=d["licence_id"],
            limit_min_fen=int(d["limit_min_fen"]),
            limit_max_fen=int(d["limit_max_fen"]),
            apr_min_bps=int(d["apr_min_bps"]),
            apr_max_bps=int(d["apr_max_bps"]),
            term_min_days=int(d["term_min_days"]),
            term_max_days=int(d["term_max_days"]),
            settlement=Settlement.from_dict(d["settlement"]),
            funnel=Funnel.from_dict(d["funnel"]),
            disclosure=d.get("disclosure", ""),
            promo=d.get("promo") or "",
            requires_login=bool(d.get("requires_login", False)),
            lending=Lending.from_dict(lending) if lending else None,
            eligibility=Eligibility.from_dict(d.get("eligibility")),
            schedule=Window.from_dict(d.get("schedule")),
            status=d.get("status", "active"),
            action_url=d.get("action_url") or "",
            daily_impression_cap=d.get("daily_impression_cap"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "owner": self.owner,
            "kind": self.kind,
            "title": self.title,
            "lender_name": self.lender_name,
            "licence_id": self.licence_id,
            "limit_min_fen": self.limit_min_fen,
            "limit_max_fen": self.limit_max_fen,
            "apr_min_bps": self.apr_min_bps,
            "apr_max_bps": self.apr_max_bps,
            "term_min_days": self.term_min_days,
            "term_max_days": self.term_max_days,
            "promo": self.promo,
            "disclosure": self.disclosure,
            "requires_login": self.requires_login,
            "settlement": self.settlement.to_dict(),
            "funnel": self.funnel.to_dict(),
            "lending": self.lending.to_dict() if self.lending else None,
            "eligibility": self.eligibility.to_dict(),
            "schedule": self.schedule.to_dict(),
            "status": self.status,
            "action_url": self.action_url,
            "daily_impression_cap": self.daily_impression_cap,
        }

    @property
    def is_in_house(self) -> bool:
        return self.owner == IN_HOUSE

    @property
    def partner_id(self) -> str | None:
        return None if self.is_in_house else self.owner

    def card(self) -> dict[str, Any]:
        """The card shown to users (guard 4): lender, licence, APR and term ranges, disclosure.

        The annualised APR range is the only rate on the card and comes first;
        the promotion text is checked at write time to carry no rate of its own.
        """
        return {
            "product_id": self.product_id,
            "owner": self.owner,
            "kind": self.kind,
            "title": self.title,
            "apr_min_bps": self.apr_min_bps,
            "apr_max_bps": self.apr_max_bps,
            "apr_text": f"年化利率(单利) {_pct(self.apr_min_bps)}–{_pct(self.apr_max_bps)}",
            "lender_name": self.lender_name,
            "licence_id": self.licence_id,
            "limit_min_fen": self.limit_min_fen,
            "limit_max_fen": self.limit_max_fen,
            "term_min_days": self.term_min_days,
            "term_max_days": self.term_max_days,
            "promo": self.promo,
            "disclosure": self.disclosure,
            "requires_login": self.requires_login,
            "action_url": self.action_url,
        }


def _pct(bps: int) -> str:
    whole, rest = divmod(bps, 100)
    return f"{whole}%" if rest == 0 else f"{whole}.{rest:02d}".rstrip("0") + "%"


@dataclass(frozen=True, slots=True)
class Slot:
    slot_id: str
    position_weight_bps: int = BPS
    accepts: tuple[str, ...] = PRODUCT_KINDS
    visible_to_visitors: bool = True
    fallback_product_id: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Slot":
        return cls(
            slot_id=d["slot_id"],
            position_weight_bps=int(d.get("position_weight_bps", BPS)),
            accepts=tuple(d.get("accepts") or PRODUCT_KINDS),
            visible_to_visitors=bool(d.get("visible_to_visitors", True)),
            fallback_product_id=d.get("fallback_product_id"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "slot_id": self.slot_id,
            "position_weight_bps": self.position_weight_bps,
            "accepts": list(self.accepts),
            "visible_to_visitors": self.visible_to_visitors,
            "fallback_product_id": self.fallback_product_id,
        }


@dataclass(frozen=True, slots=True)
class Page:
    """An ordered list of slots; ``editorial_order`` is the order used with personalisation off."""

    page_id: str
    slots: tuple[Slot, ...]
    editorial_order: tuple[str, ...] = ()
    title: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Page":
        return cls(
            page_id=d["page_id"],
            slots=tuple(Slot.from_dict(s) for s in d["slots"]),
            editorial_order=tuple(d.get("editorial_order") or ()),
            title=d.get("title", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "page_id": self.page_id,
            "title": self.title,
            "slots": [s.to_dict() for s in self.slots],
            "editorial_order": list(self.editorial_order),
        }


# Request-context fields a rule condition may test (DESIGN §3).
CONDITION_FIELDS = (
    "logged_in",
    "risk_tier",
    "in_house_decision",
    "age_band",
    "region",
    "device_model",
    "app_version",
    "new_user",
    "experiment_arm",
    "page",
)


@dataclass(frozen=True, slots=True)
class Rule:
    """A condition over the request context and one action.

    ``condition`` maps a context field to the list of values it matches (an
    absent field matches anything); ``app_version`` may instead hold
    ``{"min": "5.2.0"}``. Actions: ``pin`` (product to slot), ``exclude``
    (product), ``boost`` (product score × factor_bps/10000, a factor below 1
    damps), ``floor`` (minimum expected revenue per 1,000 impressions, fen),
    ``partner_share_cap`` (at most ``max_slots`` slots of the page for a partner).
    """

    rule_id: str
    action: str
    condition: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 100
    enabled: bool = True
    window: Window = field(default_factory=Window)
    product_id: str | None = None
    slot_id: str | None = None
    page_id: str | None = None
    partner_id: str | None = None
    factor_bps: int | None = None
    floor_rpm_fen: int | None = None
    max_slots: int | None = None
    description: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Rule":
        return cls(
            rule_id=d["rule_id"],
            action=d["action"],
            condition=dict(d.get("condition") or {}),
            priority=int(d.get("priority", 100)),
            enabled=bool(d.get("enabled", True)),
            window=Window.from_dict(d.get("window")),
            product_id=d.get("product_id"),
            slot_id=d.get("slot_id"),
            page_id=d.get("page_id"),
            partner_id=d.get("partner_id"),
            factor_bps=d.get("factor_bps"),
            floor_rpm_fen=d.get("floor_rpm_fen"),
            max_slots=d.get("max_slots"),
            description=d.get("description", ""),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "action": self.action,
            "condition": dict(self.condition),
            "priority": self.priority,
            "enabled": self.enabled,
            "window": self.window.to_dict(),
            "product_id": self.product_id,
            "slot_id": self.slot_id,
            "page_id": self.page_id,
            "partner_id": self.partner_id,
            "factor_bps": self.factor_bps,
            "floor_rpm_fen": self.floor_rpm_fen,
            "max_slots": self.max_slots,
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Everything placement needs, as one consistent published (or draft) rule set."""

    partners: Mapping[str, Partner]
    products: Mapping[str, Product]
    pages: Mapping[str, Page]
    rules: tuple[Rule, ...]
    version: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], version: int = 0) -> "Catalogue":
        partners = {p["partner_id"]: Partner.from_dict(p) for p in d.get("partners", [])}
        products = {p["product_id"]: Product.from_dict(p) for p in d.get("products", [])}
        pages = {p["page_id"]: Page.from_dict(p) for p in d.get("pages", [])}
        rules = tuple(
            sorted((Rule.from_dict(r) for r in d.get("rules", [])), key=lambda r: (r.priority, r.rule_id))
        )
        return cls(partners=partners, products=products, pages=pages, rules=rules, version=version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "partners": [self.partners[k].to_dict() for k in sorted(self.partners)],
            "products": [self.products[k].to_dict() for k in sorted(self.products)],
            "pages": [self.pages[k].to_dict() for k in sorted(self.pages)],
            "rules": [r.to_dict() for r in self.rules],
        }
