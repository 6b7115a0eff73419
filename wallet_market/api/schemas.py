"""marshmallow schemas of the outside contract (DESIGN §7).

Shape validation only: types, ranges, enumerations, required fields. Business
guards (APR cap, short-term loans, card disclosure, references) are the domain's
(:mod:`wallet_market.domain.guards`) and run in the services.
"""
from __future__ import annotations

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


class TieredBps(fields.Field):
    """A rate in basis points, or an object of rates by risk tier (``{"A": 4000, "B": 3000}``)."""

    default_error_messages = {
        "invalid": "must be an integer 0–10000 or an object of such integers by risk tier (A–D, default)",
    }

    def _deserialize(self, value, attr, data, **kwargs):
        def one(v):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 10_000:
                raise self.make_error("invalid")
            return v

        if isinstance(value, dict):
            if not value or any(k not in (*RISK_TIERS, "default") for k in value):
                raise self.make_error("invalid")
            return {k: one(v) for k, v in value.items()}
        return one(value)

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class WindowSchema(Schema):
    starts_at = fields.AwareDateTime(load_default=None, allow_none=True, format="iso")
    ends_at = fields.AwareDateTime(load_default=None, allow_none=True, format="iso")

    @validates_schema
    def _ordered(self, data, **kwargs):
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
    def _ranges(self, data, **kwargs):
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
    def _unique_slots(self, data, **kwargs):
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


class PublishSchema(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=500))


class RollbackSchema(Schema):
    version = fields.Integer(required=True, validate=validate.Range(min=1))
    note = fields.String(load_default="", validate=validate.Length(max=500))


class InHouseDecisionSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(("none", "approved", "declined")))
    decided_at = fields.Date(load_default=None, allow_none=True)


class ConsentsSchema(Schema):
    personalized = fields.Boolean(load_default=True)
    share_with_partners = fields.List(fields.String(validate=ID), load_default=list)


class UserProfileSchema(Schema):
    risk_tier = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(RISK_TIERS))
    in_house_decision = fields.Nested(InHouseDecisionSchema, load_default=lambda: {"status": "none", "decided_at": None})
    consents = fields.Nested(ConsentsSchema, load_default=lambda: {"personalized": True, "share_with_partners": []})
    age = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=0, max=130))
    region = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=32))
    phone_sha256 = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(r"^[0-9a-f]{64}$", error="must be the lowercase hex SHA-256 of the phone number"),
    )


class UserContextSchema(UserProfileSchema):
    """A profile plus request context, for previews."""

    user_id = fields.String(load_default=None, allow_none=True)
    logged_in = fields.Boolean(load_default=True)
    device_model = fields.String(load_default=None, allow_none=True)
    app_version = fields.String(load_default=None, allow_none=True)
    new_user = fields.Boolean(load_default=False)
    experiment_arm = fields.String(load_default=None, allow_none=True)
    impressions_today = fields.Dict(keys=fields.String(), values=fields.Integer(), load_default=dict)
    prescreen = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    at = fields.AwareDateTime(load_default=None, allow_none=True)


class PreviewSchema(Schema):
    page = fields.String(required=True)
    user = fields.Nested(UserContextSchema, load_default=dict)
    draft = fields.Boolean(load_default=False, metadata={"description": "preview the draft instead of the served version"})


class LayoutQueryArgsSchema(Schema):
    page = fields.String(required=True, validate=validate.Length(min=1, max=64))
    device_model = fields.String(load_default=None, validate=validate.Length(max=64))
    app_version = fields.String(load_default=None, validate=validate.Regexp(r"^\d+(\.\d+){0,3}$"))
    region = fields.String(load_default=None, validate=validate.Length(max=32))


class CardSchema(Schema):
    product_id = fields.String()
    owner = fields.String()
    kind = fields.String()
    title = fields.String()
    apr_min_bps = fields.Integer()
    apr_max_bps = fields.Integer()
    apr_text = fields.String()
    lender_name = fields.String()
    licence_id = fields.String()
    limit_min_fen = fields.Integer()
    limit_max_fen = fields.Integer()
    term_min_days = fields.Integer()
    term_max_days = fields.Integer()
    promo = fields.String()
    disclosure = fields.String()
    action_url = fields.String()


class LayoutSlotSchema(Schema):
    slot = fields.String()
    position = fields.Integer()
    product = fields.Nested(CardSchema)
    impression_token = fields.String()


class LayoutSchema(Schema):
    page = fields.String()
    decision_id = fields.String()
    ruleset_version = fields.Integer()
    personalized = fields.Boolean()
    degraded = fields.Boolean()
    slots = fields.List(fields.Nested(LayoutSlotSchema))


class RevenueQueryArgsSchema(Schema):
    from_ = fields.Date(required=True, data_key="from")
    to = fields.Date(required=True)
    group_by = fields.String(
        load_default="channel",
        validate=validate.OneOf(("channel", "partner", "product", "slot", "risk_tier", "day")),
    )

    @validates_schema
    def _ordered(self, data, **kwargs):
        if "from_" in data and "to" in data and data["to"] < data["from_"]:
            raise ValidationError("must not be before from", "to")


# -- partner gateway ----------------------------------------------------------------
class JointLoginExchangeSchema(Schema):
    token = fields.String(
        required=True,
        validate=validate.Length(min=1, max=4096),
        metadata={"description": "the `token` parameter of the joint-login link the user followed"},
    )


class JointLoginAnswerSchema(Schema):
    partner_id = fields.String()
    product_id = fields.String(metadata={"description": "the product whose card the user tapped"})
    fields_ = fields.List(fields.String(), data_key="fields", attribute="fields",
                          metadata={"description": "the user-data fields this answer carries"})
    user_ref = fields.String(metadata={"description": "the user's pseudonymous id for this partner only"})
    phone_sha256 = fields.String(allow_none=True)
    age_band = fields.String(allow_none=True)
    region = fields.String(allow_none=True)


class DataShareQueryArgsSchema(Schema):
    user_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class DataShareSchema(Schema):
    share_id = fields.String()
    partner_id = fields.String()
    purpose = fields.String(metadata={"description": "prescreen or joint_login"})
    fields_ = fields.List(fields.String(), data_key="fields", attribute="fields")
    at = fields.String(metadata={"description": "when the send was recorded, just before it left (UTC)"})
    consent = fields.String(metadata={"description": "the consent the send relied on"})
    consents = fields.Dict(metadata={"description": "the user's consents at that moment"})
    request_id = fields.String()
    product_id = fields.String()
    outcome = fields.String(allow_none=True)
    outcome_at = fields.String(allow_none=True)


class DataSharesSchema(Schema):
    user_id = fields.String()
    shares = fields.List(fields.Nested(DataShareSchema))


# -- funnel tracking ---------------------------------------------------------------
class EpochTime(fields.Field):
    """A time as ISO 8601 (UTC when no offset is given) or epoch seconds; loads as epoch seconds."""

    default_error_messages = {"invalid": "must be an ISO-8601 time or epoch seconds"}

    def _deserialize(self, value, attr, data, **kwargs):
        from datetime import datetime, timezone

        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise self.make_error("invalid") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.timestamp()
        raise self.make_error("invalid")

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class AppEventSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(("impression", "click")))
    impression_token = fields.String(required=True, metadata={"description": "the slot's token from the layout"})
    occurred_at = EpochTime(load_default=None, allow_none=True, metadata={"description": "ISO 8601 or epoch seconds; default now"})


class EventBatchSchema(Schema):
    events = fields.List(fields.Nested(AppEventSchema), required=True, metadata={"description": "at most max_event_batch events"})


class EventRejectionSchema(Schema):
    index = fields.Integer()
    reason = fields.String(metadata={"description": "bad_signature, expired, malformed or occurred_in_future"})


class EventCountsSchema(Schema):
    accepted = fields.Integer()
    duplicate = fields.Integer()
    rejected = fields.Integer()
    rejections = fields.List(fields.Nested(EventRejectionSchema))


class PostbackSchema(Schema):
    event_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    type = fields.String(
        required=True, validate=validate.OneOf(("applied", "approved", "rejected", "disbursed", "reversed"))
    )
    impression_token = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=4096),
        metadata={"description": "the impression token of the layout slot that led to this event (optional for a reversal)"},
    )
    amount = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=validate.Range(min=0, max=10**12),
        metadata={"description": "fen; the amount lent for a disbursal"},
    )
    occurred_at = EpochTime(load_default=None, allow_none=True)
    reverses = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=128),
        metadata={"description": "for a reversal: the event_id it undoes"},
    )


class PostbackAnswerSchema(Schema):
    status = fields.String(metadata={"description": "accepted, or duplicate for an event_id seen before"})
    event_id = fields.String()

