"""marshmallow schemas of the catalogue's entities: partners, products, pages and rules.

Shape validation only: types, ranges, enumerations, required fields. Business
guards (APR cap, short-term loans, card disclosure, references) are the domain's
(:mod:`wallet_market.domain.guards`) and run in the catalogue administration.
The admin API and catalogue files share these schemas.
"""
from __future__ import annotations

from typing import Any, Mapping

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..domain.catalogue import (
    LICENCE_TYPES,
    PARTNER_STATUSES,
    PRODUCT_KINDS,
    PRODUCT_STATUSES,
    RISK_TIERS,
    RULE_ACTIONS,
    SETTLEMENT_MODELS,
)

ID = validate.Regexp(r"^[a-z0-9][a-z0-9_\-]{0,63}$", error="must be 1–64 characters of a-z, 0-9, _ or -")
BPS_RANGE = validate.Range(min=0, max=10_000)
NON_NEGATIVE = validate.Range(min=0)
NOT_BLANK = validate.Length(min=1)


class TieredBps(fields.Field[int | dict[str, int]]):
    """A rate in basis points, or an object of rates by risk tier (``{"A": 4000, "B": 3000}``)."""

    default_error_messages = {
        "invalid": "must be an integer 0–10000 or an object of such integers by risk tier (A–D, default)",
    }

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> int | dict[str, int]:
        def one(v: Any) -> int:
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 10_000:
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
    whitelisted = fields.Boolean(load_default=True)
    status = fields.String(load_default="active", validate=validate.OneOf(PARTNER_STATUSES))
    signing_secret = fields.String(load_only=True, validate=validate.Length(min=16, max=256))
    prescreen_url = fields.Url(load_default=None, allow_none=True, require_tld=False)
    joint_login_url = fields.Url(load_default=None, allow_none=True, require_tld=False)
    settlement_url = fields.Url(load_default=None, allow_none=True, require_tld=False)
    timeout_ms = fields.Integer(load_default=300, validate=validate.Range(min=10, max=10_000))
    daily_lead_cap = fields.Integer(load_default=None, allow_none=True, validate=NON_NEGATIVE)
    daily_approval_cap = fields.Integer(load_default=None, allow_none=True, validate=NON_NEGATIVE)


class SettlementSchema(Schema):
    model = fields.String(required=True, validate=validate.OneOf(SETTLEMENT_MODELS))
    cps_rate_bps = fields.Integer(load_default=0, validate=BPS_RANGE)
    fee_fen = fields.Integer(load_default=0, validate=NON_NEGATIVE)
    transfer_price_bps = fields.Integer(load_default=0, validate=BPS_RANGE)


class FunnelSchema(Schema):
    ctr_bps = fields.Integer(required=True, validate=BPS_RANGE)
    apply_rate_bps = fields.Integer(required=True, validate=BPS_RANGE)
    approval_rate_bps = TieredBps(required=True)
    draw_rate_bps = fields.Integer(load_default=0, validate=BPS_RANGE)
    new_customer_rate_bps = fields.Integer(load_default=10_000, validate=BPS_RANGE)
    avg_loan_fen = fields.Integer(load_default=0, validate=NON_NEGATIVE)
    term_months = fields.Integer(load_default=12, validate=validate.Range(min=1, max=360))


class LendingSchema(Schema):
    apr_bps = fields.Integer(required=True, validate=BPS_RANGE)
    cost_of_funds_bps = fields.Integer(required=True, validate=BPS_RANGE)
    annual_loss_bps = TieredBps(required=True)
    opex_bps = fields.Integer(required=True, validate=BPS_RANGE)
    capital_charge_bps = fields.Integer(required=True, validate=BPS_RANGE)


class EligibilitySchema(Schema):
    risk_tiers = fields.List(fields.String(validate=validate.OneOf(RISK_TIERS)), load_default=list(RISK_TIERS))
    age_min = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=18, max=120))
    age_max = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=18, max=120))
    regions = fields.List(fields.String(), load_default=list)


class ProductSchema(Schema):
    product_id = fields.String(required=True, validate=ID)
    owner = fields.String(required=True, validate=ID)
    kind = fields.String(required=True, validate=validate.OneOf(PRODUCT_KINDS))
    title = fields.String(required=True, validate=validate.Length(min=1, max=80))
    lender_name = fields.String(required=True, validate=NOT_BLANK)
    licence_id = fields.String(required=True, validate=NOT_BLANK)
    limit_min_fen = fields.Integer(required=True, validate=NON_NEGATIVE)
    limit_max_fen = fields.Integer(required=True, validate=NON_NEGATIVE)
    apr_min_bps = fields.Integer(required=True, validate=BPS_RANGE)
    apr_max_bps = fields.Integer(required=True, validate=BPS_RANGE)
    term_min_days = fields.Integer(required=True, validate=NON_NEGATIVE)
    term_max_days = fields.Integer(required=True, validate=NON_NEGATIVE)
    promo = fields.String(load_default="", validate=validate.Length(max=120))
    disclosure = fields.String(required=True, validate=NOT_BLANK)
    requires_login = fields.Boolean(load_default=False)
    settlement = fields.Nested(SettlementSchema, required=True)
    funnel = fields.Nested(FunnelSchema, required=True)
    lending = fields.Nested(LendingSchema, load_default=None, allow_none=True)
    eligibility = fields.Nested(EligibilitySchema, load_default=dict)
    schedule = fields.Nested(WindowSchema, load_default=dict)
    status = fields.String(load_default="active", validate=validate.OneOf(PRODUCT_STATUSES))
    action_url = fields.String(load_default="")
    daily_impression_cap = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1))

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
    position_weight_bps = fields.Integer(load_default=10_000, validate=validate.Range(min=1, max=10_000))
    accepts = fields.List(fields.String(validate=validate.OneOf(PRODUCT_KINDS)), load_default=list(PRODUCT_KINDS))
    visible_to_visitors = fields.Boolean(load_default=True)
    fallback_product_id = fields.String(load_default=None, allow_none=True)


class PageSchema(Schema):
    page_id = fields.String(required=True, validate=ID)
    title = fields.String(load_default="")
    slots = fields.List(fields.Nested(SlotSchema), required=True, validate=validate.Length(min=1, max=50))
    editorial_order = fields.List(fields.String(), load_default=list)

    @validates_schema
    def _unique_slots(self, data: dict[str, Any], **kwargs: Any) -> None:
        ids = [s["slot_id"] for s in data.get("slots", [])]
        if len(ids) != len(set(ids)):
            raise ValidationError("slot ids must be unique on a page", "slots")


class RuleSchema(Schema):
    rule_id = fields.String(required=True, validate=ID)
    action = fields.String(required=True, validate=validate.OneOf(RULE_ACTIONS))
    condition = fields.Dict(keys=fields.String(), load_default=dict)
    priority = fields.Integer(load_default=100, validate=validate.Range(min=0, max=1_000_000))
    enabled = fields.Boolean(load_default=True)
    window = fields.Nested(WindowSchema, load_default=dict)
    product_id = fields.String(load_default=None, allow_none=True)
    slot_id = fields.String(load_default=None, allow_none=True)
    page_id = fields.String(load_default=None, allow_none=True)
    partner_id = fields.String(load_default=None, allow_none=True)
    factor_bps = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=0, max=1_000_000))
    floor_rpm_fen = fields.Integer(load_default=None, allow_none=True, validate=NON_NEGATIVE)
    max_slots = fields.Integer(load_default=None, allow_none=True, validate=NON_NEGATIVE)
    description = fields.String(load_default="")
