"""marshmallow schemas of the outside contract (docs/api.md).

Shape validation only: types, ranges, enumerations, required fields. Business
guards (APR cap, short-term loans, card disclosure, references) are the domain's
(:mod:`wallet_market.domain.guards`) and run in the services.
"""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..domain import bounds
from ..domain.catalogue import RISK_TIERS
from ..services.events import parse_time
from ..services.catalogue_schemas import (  # noqa: F401  (the admin API's entity schemas)
    BPS_RANGE,
    EVENT_ID,
    ID,
    MAX_COUNT,
    MAX_FEN,
    NON_NEGATIVE,
    NOT_BLANK,
    USER_ID,
    Bool,
    FullMatch,
    Int,
    PageSchema,
    PartnerSchema,
    ProductSchema,
    RuleSchema,
)

def path_id(name: str, pattern: FullMatch, description: str) -> dict:
    """The OpenAPI description of an id in the path, with the pattern it must match whole."""
    return {
        "in": "path",
        "name": name,
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern.regex.pattern},
    }


class PublishSchema(Schema):
    note = fields.String(load_default="", validate=validate.Length(max=500))


class RollbackSchema(Schema):
    version = Int(required=True, validate=validate.Range(min=1, max=MAX_COUNT))
    note = fields.String(load_default="", validate=validate.Length(max=500))


class DayOrTime(fields.Date):
    """A day (``2025-03-01``) or a full ISO 8601 time, kept as its UTC day (no offset: UTC)."""

    default_error_messages = {"invalid": "must be a date (YYYY-MM-DD) or an ISO 8601 time"}

    def _deserialize(self, value, attr, data, **kwargs):
        from datetime import datetime, timezone

        if isinstance(value, str) and "T" in value:
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise self.make_error("invalid") from None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            return moment.astimezone(timezone.utc).date()
        return super()._deserialize(value, attr, data, **kwargs)


class InHouseDecisionSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(("none", "approved", "declined")))
    decided_at = DayOrTime(
        load_default=None, allow_none=True, metadata={"description": "a date, or an ISO 8601 time (its UTC day is kept)"}
    )


class ConsentsSchema(Schema):
    personalized = Bool(load_default=True)
    share_with_partners = fields.List(fields.String(validate=ID), load_default=list)


class UserProfileSchema(Schema):
    risk_tier = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(RISK_TIERS))
    in_house_decision = fields.Nested(InHouseDecisionSchema, load_default=lambda: {"status": "none", "decided_at": None})
    consents = fields.Nested(ConsentsSchema, load_default=lambda: {"personalized": True, "share_with_partners": []})
    age = Int(load_default=None, allow_none=True, validate=validate.Range(min=0, max=130))
    region = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=32))
    phone_sha256 = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(r"^[0-9a-f]{64}$", error="must be the lowercase hex SHA-256 of the phone number"),
    )


class UserContextSchema(UserProfileSchema):
    """A profile plus request context, for previews."""

    user_id = fields.String(load_default=None, allow_none=True, validate=USER_ID)
    logged_in = Bool(load_default=True)
    device_model = fields.String(load_default=None, allow_none=True)
    app_version = fields.String(load_default=None, allow_none=True)
    new_user = Bool(load_default=False)
    experiment_arm = fields.String(load_default=None, allow_none=True)
    impressions_today = fields.Dict(keys=fields.String(), values=Int(validate=NON_NEGATIVE), load_default=dict)
    prescreen = fields.Dict(keys=fields.String(), values=fields.String(), load_default=dict)
    at = fields.AwareDateTime(load_default=None, allow_none=True)


class PreviewSchema(Schema):
    page = fields.String(required=True, validate=ID)
    user = fields.Nested(UserContextSchema, load_default=dict)
    draft = Bool(load_default=False, metadata={"description": "preview the draft instead of the served version"})


class LayoutQueryArgsSchema(Schema):
    page = fields.String(required=True, validate=ID)
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


class DayRangeSchema(Schema):
    """A schema with days ``from_`` (sent as ``from``) and ``to``: ``to`` must not be before ``from``."""

    @validates_schema
    def _ordered(self, data, **kwargs):
        if data.get("from_") and data.get("to") and data["to"] < data["from_"]:
            raise ValidationError("must not be before from", "to")


class RevenueQueryArgsSchema(DayRangeSchema):
    from_ = fields.Date(
        load_default=None, data_key="from", metadata={"description": "first UTC day; default: 6 days before to"}
    )
    to = fields.Date(load_default=None, metadata={"description": "last UTC day; default: today (UTC)"})
    group_by = fields.String(
        load_default="channel",
        validate=validate.OneOf(("channel", "partner", "product", "slot", "risk_tier", "day")),
    )


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
    user_id = fields.String(required=True, validate=USER_ID)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))  # a query string: "100"


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
        try:
            return parse_time(value)
        except ValueError:
            raise self.make_error("invalid") from None

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class AppEventSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(("impression", "click")))
    impression_token = fields.String(
        required=True, validate=validate.Length(min=1), metadata={"description": "the slot's token from the layout"}
    )
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
    event_id = fields.String(required=True, validate=EVENT_ID)
    type = fields.String(
        required=True, validate=validate.OneOf(("applied", "approved", "rejected", "disbursed", "reversed"))
    )
    impression_token = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(min=1, max=4096),
        metadata={"description": "the impression token of the layout slot that led to this event (optional for a reversal)"},
    )
    amount = Int(
        load_default=None, allow_none=True,
        validate=validate.Range(min=bounds.POSTBACK_AMOUNT_FEN.low, max=bounds.POSTBACK_AMOUNT_FEN.high),
        metadata={"description": "fen; the amount lent for a disbursal (at most 100,000,000: 1,000,000 RMB)"},
    )
    occurred_at = EpochTime(load_default=None, allow_none=True)
    reverses = fields.String(
        load_default=None, allow_none=True, validate=EVENT_ID,
        metadata={"description": "for a reversal: the event_id it undoes"},
    )


class PostbackAnswerSchema(Schema):
    status = fields.String(metadata={"description": "accepted, or duplicate for an event_id seen before"})
    event_id = fields.String()



# -- evidence: experiments and off-policy evaluation --------------------------------
class ExperimentSchema(Schema):
    """A new experiment: a candidate rule-set version against the published rules on one page."""

    experiment_id = fields.String(required=True, validate=ID)
    page = fields.String(required=True, validate=ID, metadata={"description": "the page the experiment runs on"})
    treatment_version = fields.Integer(
        required=True, strict=True, validate=validate.Range(min=1),
        metadata={"description": "the rule-set version the treatment arm is served (POST /admin/v1/rulesets/candidates)"},
    )
    traffic_bps = fields.Integer(
        required=True, strict=True, validate=BPS_RANGE,
        metadata={"description": "share of units in the experiment; the rest are the holdout"},
    )
    treatment_bps = fields.Integer(
        required=True, strict=True, validate=BPS_RANGE,
        metadata={"description": "share of the experiment's units in the treatment arm"},
    )
    starts_at = fields.AwareDateTime(required=True)
    ends_at = fields.AwareDateTime(required=True)

    @validates_schema
    def _window(self, data, **kwargs):
        if "starts_at" in data and "ends_at" in data and data["ends_at"] <= data["starts_at"]:
            raise ValidationError("must be after starts_at", "ends_at")


class ExperimentRecordSchema(Schema):
    experiment_id = fields.String()
    page = fields.String()
    treatment_version = fields.Integer()
    traffic_bps = fields.Integer()
    treatment_bps = fields.Integer()
    starts_at = fields.AwareDateTime()
    ends_at = fields.AwareDateTime()
    status = fields.String(metadata={"description": "running, stopped or shipped"})
    control_version = fields.Integer(metadata={"description": "the published version when the experiment was created"})
    created_at = fields.String()
    created_by = fields.String()
    stopped_at = fields.String()
    stopped_by = fields.String()
    shipped_at = fields.String()
    shipped_by = fields.String()


class ArmResultSchema(Schema):
    arm = fields.String(metadata={"description": "control or treatment"})
    units = fields.Integer(metadata={"description": "randomisation units (users or devices) seen in the arm"})
    impressions = fields.Integer()
    clicks = fields.Integer()
    approvals = fields.Integer()
    loans = fields.Integer()
    platform_revenue_fen = fields.Integer()
    group_contribution_fen = fields.Integer()
    rpm_group_fen = fields.Integer(metadata={"description": "group revenue per 1,000 impressions"})
    rpm_platform_fen = fields.Integer(metadata={"description": "platform revenue per 1,000 impressions"})


class LiftSchema(Schema):
    metric = fields.String()
    estimate_bps = fields.Integer(allow_none=True, metadata={"description": "treatment / control − 1, in bps"})
    ci_low_bps = fields.Integer(allow_none=True)
    ci_high_bps = fields.Integer(allow_none=True)
    p_value = fields.Float(allow_none=True)


class ExperimentResultsSchema(Schema):
    experiment_id = fields.String()
    status = fields.String()
    arms = fields.List(fields.Nested(ArmResultSchema))
    lift = fields.Nested(LiftSchema)
    srm_p_value = fields.Float(allow_none=True, metadata={"description": "sample-ratio check; below 0.001 means the split is broken"})


class EvaluateSchema(DayRangeSchema):
    candidate = fields.String(
        required=True,
        validate=validate.Regexp(r"^(draft|[1-9][0-9]{0,8})\Z", error="must be draft or a rule-set version number"),
        metadata={"description": "draft, or the number of a stored (candidate or published) version"},
    )
    from_ = fields.Date(load_default=None, allow_none=True, data_key="from", metadata={"description": "first day (UTC) of the log"})
    to = fields.Date(load_default=None, allow_none=True, metadata={"description": "last day (UTC) of the log"})
    view = fields.String(load_default="group", validate=validate.OneOf(("group", "platform")))


class EstimateSchema(Schema):
    rpm_fen = fields.Integer(allow_none=True, metadata={"description": "revenue per 1,000 slot impressions"})
    ci_low_fen = fields.Integer(allow_none=True)
    ci_high_fen = fields.Integer(allow_none=True)


class LoggedValueSchema(Schema):
    rpm_fen = fields.Integer(allow_none=True)


class EstimatorsSchema(Schema):
    ips = fields.Nested(EstimateSchema)
    snips = fields.Nested(EstimateSchema)
    dm = fields.Nested(EstimateSchema)
    dr = fields.Nested(EstimateSchema)


class EvaluationSchema(Schema):
    candidate = fields.String()
    view = fields.String()
    decisions = fields.Integer(metadata={"description": "logged decisions replayed"})
    logged = fields.Nested(LoggedValueSchema, metadata={"description": "what the logging policy earned"})
    estimators = fields.Nested(EstimatorsSchema)
    effective_sample_size = fields.Float()
    support_bps = fields.Integer(allow_none=True, metadata={"description": "candidate's probability mass the log covers"})
    warnings = fields.List(fields.String())
