"""marshmallow schemas of the catalogue's entities: partners, products, pages and rules.

Shape validation only: types, ranges, enumerations, required fields. Business
guards (APR cap, short-term loans, card disclosure, references) are the domain's
(:mod:`wallet_market.domain.guards`) and run in the catalogue administration.
The admin API and catalogue files share these schemas.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..domain import bounds
from ..domain.catalogue import (
    LICENCE_TYPES,
    PARTNER_STATUSES,
    PRODUCT_KINDS,
    PRODUCT_STATUSES,
    RISK_TIERS,
    RULE_ACTIONS,
    SETTLEMENT_MODELS,
)
from ..domain import ids

# The largest amount of money (fen) and count an input may carry: far above any real
# loan, cap or fee, and far inside the 64-bit integers Redis and the JSON encoder hold.
MAX_FEN = 10**12
MAX_COUNT = 10**9
MAX_DAYS = 36_500


class FullMatch(validate.Regexp):
    """A pattern the whole value must match (``$`` alone would accept a trailing newline).

    Documented in OpenAPI as ``^pattern$`` (where ``$`` is the end of the value).
    """

    def __init__(self, pattern: str, error: str):
        super().__init__(f"^{pattern}$", error=error)
        self._whole = re.compile(pattern)

    def __call__(self, value: Any) -> Any:  # str in, str out; anything else is refused
        if not isinstance(value, str) or self._whole.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


ID = FullMatch(ids.ENTITY_ID_PATTERN, ids.ENTITY_ID_RULE)
USER_ID = FullMatch(ids.USER_ID_PATTERN, ids.USER_ID_RULE)
EVENT_ID = FullMatch(ids.EVENT_ID_PATTERN, ids.EVENT_ID_RULE)
NON_NEGATIVE = validate.Range(min=0, max=MAX_COUNT)
MONEY = validate.Range(min=0, max=MAX_FEN)
DAYS = validate.Range(min=0, max=MAX_DAYS)
NOT_BLANK = validate.Length(min=1)


def Int(**kwargs: Any) -> fields.Integer:
    """An integer field that refuses anything but a JSON/TOML integer (``99.99`` and ``"99"`` are errors)."""
    return fields.Integer(strict=True, **kwargs)


class Bool(fields.Boolean):
    """A boolean field that takes only ``true`` and ``false`` (not ``0``, ``1``, ``"yes"``)."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def HttpUrl(**kwargs: Any) -> fields.Url:
    """An ``http://`` or ``https://`` URL (a partner's endpoint)."""
    return fields.Url(schemes={"http", "https"}, require_tld=False, metadata={"pattern": "^https?://"}, **kwargs)


def within(bound: bounds.Bound, low: int | None = None) -> validate.Range:
    """A marshmallow range for a bound of :mod:`wallet_market.domain.bounds` (``low`` raises its floor)."""
    return validate.Range(min=bound.low if low is None else low, max=bound.high)


BPS_RANGE = within(bounds.RATE_BPS)
LOAN_FEN = within(bounds.LOAN_FEN)
FEE_FEN = within(bounds.FEE_FEN)
TERM_DAYS = within(bounds.TERM_DAYS)
DAILY_CAP = within(bounds.DAILY_CAP)


class TieredBps(fields.Field[int | dict[str, int]]):
    """A rate in basis points, or an object of rates by risk tier (``{"A": 4000, "B": 3000}``)."""

    default_error_messages = {
        "invalid": "must be an integer 0–10000 or an object of such integers by risk tier (A–D, default)",
    }

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int | dict[str, int]:
        def one(v: Any) -> int:
            if not bounds.RATE_BPS.holds(v):
                raise self.make_error("invalid")
            return v

        if isinstance(value, dict):
            if not value or any(k not in (*RISK_TIERS, "default") for k in value):
                raise self.make_error("invalid")
            return {k: one(v) for k, v in value.items()}
        return one(value)

    def _serialize(self, value: int | dict[str, int] | None, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value


class WindowSchema(Schema):
    starts_at = fields.AwareDateTime(load_default=None, allow_none=True, format="iso")
    ends_at = fields.AwareDateTime(load_default=None, allow_none=True, format="iso")

    @validates_schema
    def _ordered(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("starts_at") and data.get("ends_at") and data["ends_at"] <= data["starts_at"]:
            raise ValidationError("must be after starts_at", "ends_at")


class PartnerSchema(Schema):
    partner_id = fields.String(required=True, validate=ID)
    legal_name = fields.String(required=True, validate=NOT_BLANK)
    licence_type = fields.String(required=True, validate=validate.OneOf(LICENCE_TYPES))
    licence_id = fields.String(required=True, validate=NOT_BLANK)
    licence_expires_on = fields.Date(required=True)
    whitelisted = Bool(load_default=True)
    status = fields.String(load_default="active", validate=validate.OneOf(PARTNER_STATUSES))
    signing_secret = fields.String(load_only=True, validate=validate.Length(min=16, max=256))
    prescreen_url = HttpUrl(load_default=None, allow_none=True)
    joint_login_url = HttpUrl(load_default=None, allow_none=True)
    settlement_url = HttpUrl(load_default=None, allow_none=True)
    timeout_ms = Int(load_default=300, validate=within(bounds.TIMEOUT_MS))
    daily_lead_cap = Int(load_default=None, allow_none=True, validate=DAILY_CAP)
    daily_approval_cap = Int(load_default=None, allow_none=True, validate=DAILY_CAP)


class SettlementSchema(Schema):
    model = fields.String(required=True, validate=validate.OneOf(SETTLEMENT_MODELS))
    cps_rate_bps = Int(load_default=0, validate=BPS_RANGE)
    fee_fen = Int(load_default=0, validate=FEE_FEN)
    transfer_price_bps = Int(load_default=0, validate=BPS_RANGE)


class FunnelSchema(Schema):
    ctr_bps = Int(required=True, validate=BPS_RANGE)
    apply_rate_bps = Int(required=True, validate=BPS_RANGE)
    approval_rate_bps = TieredBps(required=True)
    draw_rate_bps = Int(load_default=0, validate=BPS_RANGE)
    new_customer_rate_bps = Int(load_default=10_000, validate=BPS_RANGE)
    avg_loan_fen = Int(load_default=0, validate=LOAN_FEN)
    term_months = Int(load_default=12, validate=within(bounds.TERM_MONTHS, low=1))


class LendingSchema(Schema):
    apr_bps = Int(required=True, validate=BPS_RANGE)
    cost_of_funds_bps = Int(required=True, validate=BPS_RANGE)
    annual_loss_bps = TieredBps(required=True)
    opex_bps = Int(required=True, validate=BPS_RANGE)
    capital_charge_bps = Int(required=True, validate=BPS_RANGE)


class EligibilitySchema(Schema):
    risk_tiers = fields.List(fields.String(validate=validate.OneOf(RISK_TIERS)), load_default=list(RISK_TIERS))
    age_min = Int(load_default=None, allow_none=True, validate=validate.Range(min=18, max=120))
    age_max = Int(load_default=None, allow_none=True, validate=validate.Range(min=18, max=120))
    regions = fields.List(fields.String(), load_default=list)


class ProductSchema(Schema):
    product_id = fields.String(required=True, validate=ID)
    owner = fields.String(required=True, validate=ID)
    kind = fields.String(required=True, validate=validate.OneOf(PRODUCT_KINDS))
    title = fields.String(required=True, validate=validate.Length(min=1, max=80))
    lender_name = fields.String(required=True, validate=NOT_BLANK)
    licence_id = fields.String(required=True, validate=NOT_BLANK)
    limit_min_fen = Int(required=True, validate=LOAN_FEN)
    limit_max_fen = Int(required=True, validate=LOAN_FEN)
    apr_min_bps = Int(required=True, validate=BPS_RANGE)
    apr_max_bps = Int(required=True, validate=BPS_RANGE)
    term_min_days = Int(required=True, validate=TERM_DAYS)
    term_max_days = Int(required=True, validate=TERM_DAYS)
    promo = fields.String(load_default="", validate=validate.Length(max=120))
    disclosure = fields.String(required=True, validate=NOT_BLANK)
    requires_login = Bool(load_default=False)
    settlement = fields.Nested(SettlementSchema, required=True)
    funnel = fields.Nested(FunnelSchema, required=True)
    lending = fields.Nested(LendingSchema, load_default=None, allow_none=True)
    eligibility = fields.Nested(EligibilitySchema, load_default=dict)
    schedule = fields.Nested(WindowSchema, load_default=dict)
    status = fields.String(load_default="active", validate=validate.OneOf(PRODUCT_STATUSES))
    action_url = fields.String(load_default="")
    daily_impression_cap = Int(load_default=None, allow_none=True, validate=within(bounds.DAILY_CAP, low=1))

    @validates_schema
    def _ranges(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors = {}
        for low, high in (("limit_min_fen", "limit_max_fen"), ("apr_min_bps", "apr_max_bps"), ("term_min_days", "term_max_days")):
            if low in data and high in data and data[high] < data[low]:
                errors[high] = [f"must not be below {low}"]
        if errors:
            raise ValidationError(errors)


class SlotSchema(Schema):
    slot_id = fields.String(required=True, validate=ID)
    position_weight_bps = Int(load_default=10_000, validate=within(bounds.RATE_BPS, low=1))
    accepts = fields.List(fields.String(validate=validate.OneOf(PRODUCT_KINDS)), load_default=list(PRODUCT_KINDS))
    visible_to_visitors = Bool(load_default=True)
    fallback_product_id = fields.String(load_default=None, allow_none=True, validate=ID)


class PageSchema(Schema):
    page_id = fields.String(required=True, validate=ID)
    title = fields.String(load_default="")
    slots = fields.List(
        fields.Nested(SlotSchema), required=True, validate=validate.Length(min=1, max=bounds.MAX_SLOT_COUNT)
    )
    editorial_order = fields.List(fields.String(validate=ID), load_default=list)

    @validates_schema
    def _unique_slots(self, data: dict[str, Any], **kwargs: Any) -> None:
        ids = [s["slot_id"] for s in data.get("slots", [])]
        if len(ids) != len(set(ids)):
            raise ValidationError("slot ids must be unique on a page", "slots")


class RuleSchema(Schema):
    rule_id = fields.String(required=True, validate=ID)
    action = fields.String(required=True, validate=validate.OneOf(RULE_ACTIONS))
    condition = fields.Dict(keys=fields.String(), load_default=dict)
    priority = Int(load_default=100, validate=within(bounds.RULE_PRIORITY))
    enabled = Bool(load_default=True)
    window = fields.Nested(WindowSchema, load_default=dict)
    product_id = fields.String(load_default=None, allow_none=True, validate=ID)
    slot_id = fields.String(load_default=None, allow_none=True, validate=ID)
    page_id = fields.String(load_default=None, allow_none=True, validate=ID)
    partner_id = fields.String(load_default=None, allow_none=True, validate=ID)
    factor_bps = Int(load_default=None, allow_none=True, validate=within(bounds.FACTOR_BPS))
    floor_rpm_fen = Int(load_default=None, allow_none=True, validate=within(bounds.FLOOR_RPM_FEN))
    max_slots = Int(load_default=None, allow_none=True, validate=within(bounds.SLOT_COUNT))
    description = fields.String(load_default="")
