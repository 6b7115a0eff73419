"""Finance API (role ``finance``): self-lending versus referral for a scenario.

``POST /finance/v1/compare`` takes a finance scenario (docs/api.md, the same
shape the CLI reads as TOML) and models it over the served catalogue. The body
is validated by the domain's scenario parser, so a 422 names the field the way
a finance user wrote it (``segments[1].risk_tier``,
``overrides.xingyun_loan.funnel.ctr_bps``). Earned revenue
(``GET /finance/v1/revenue``) lives with the funnel ledger.
"""
from __future__ import annotations

from flask import Response, request
from flask.views import MethodView
from .bodies import Blueprint
from marshmallow import Schema, fields, validate

from ..domain.catalogue import RISK_TIERS
from ..domain.finance import (
    APR_CAP_BPS,
    BPS,
    MAX_IMPRESSIONS,
    MAX_SCENARIO_FEN,
    MAX_SCENARIO_PRODUCTS,
    MAX_SEGMENTS,
    MAX_TERM_MONTHS,
    MIN_TERM_MONTHS,
    REFERRAL_MODELS,
    ScenarioError,
    compare,
    parse_scenario,
)
from ..services.errors import Invalid
from ..reports.finance import csv_text
from .auth import BEARER, components, require
from .bodies import json_body

FINANCE = "finance"

finance = Blueprint(
    "finance",
    __name__,
    url_prefix="/finance/v1",
    description="Finance: self-lending versus referral, modelled per segment, in the platform and group views.",
)


# -- the scenario (documentation of the body; the domain parser validates it) ----------


NAMED = validate.Regexp(r"\S", error="must not be blank")
RATE = validate.Range(min=0, max=BPS)
MONEY = validate.Range(min=0, max=MAX_SCENARIO_FEN)


class ScenarioSegmentSchema(Schema):
    name = fields.String(required=True, validate=NAMED, metadata={"description": "unique within the scenario"})
    risk_tier = fields.String(
        allow_none=True, validate=validate.OneOf(RISK_TIERS), metadata={"description": "omit for visitors"}
    )
    logged_in = fields.Boolean(required=True, metadata={"description": "false: only products needing no login"})
    impressions = fields.Integer(required=True, validate=validate.Range(min=0, max=MAX_IMPRESSIONS))
    in_house_declined = fields.Boolean(
        load_default=False, metadata={"description": "users the in-house lender declined: no in-house row"}
    )


class SettlementOverrideSchema(Schema):
    model = fields.String(
        validate=validate.OneOf((*REFERRAL_MODELS, "self")),
        metadata={"description": "a referral model for a partner's product; the in-house loan's stays self"},
    )
    cps_rate_bps = fields.Integer(validate=RATE)
    fee_fen = fields.Integer(validate=MONEY)
    transfer_price_bps = fields.Integer(validate=RATE)


class FunnelOverrideSchema(Schema):
    ctr_bps = fields.Integer(validate=RATE)
    apply_rate_bps = fields.Integer(validate=RATE)
    approval_rate_bps = fields.Raw(metadata={"description": "bps, or an object of bps by risk tier (A–D, default)"})
    draw_rate_bps = fields.Integer(validate=RATE)
    new_customer_rate_bps = fields.Integer(validate=RATE)
    avg_loan_fen = fields.Integer(validate=MONEY)
    term_months = fields.Integer(validate=validate.Range(min=MIN_TERM_MONTHS, max=MAX_TERM_MONTHS))


class LendingOverrideSchema(Schema):
    apr_bps = fields.Integer(validate=validate.Range(min=0, max=APR_CAP_BPS))
    cost_of_funds_bps = fields.Integer(validate=RATE)
    annual_loss_bps = fields.Raw(metadata={"description": "bps, or an object of bps by risk tier (A–D, default)"})
    opex_bps = fields.Integer(validate=RATE)
    capital_charge_bps = fields.Integer(validate=RATE)


class ProductOverrideSchema(Schema):
    settlement = fields.Nested(SettlementOverrideSchema)
    funnel = fields.Nested(FunnelOverrideSchema)
    lending = fields.Nested(LendingOverrideSchema)


class ScenarioSchema(Schema):
    name = fields.String(required=True, validate=NAMED)
    segments = fields.List(
        fields.Nested(ScenarioSegmentSchema), required=True, validate=validate.Length(min=1, max=MAX_SEGMENTS)
    )
    products = fields.List(
        fields.String(validate=validate.Length(min=1)),
        validate=validate.Length(max=MAX_SCENARIO_PRODUCTS),
        metadata={"description": "product ids to compare, each once; empty or absent: all"},
    )
    overrides = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(ProductOverrideSchema),
        metadata={
            "description": f"partial product economics by product id (at most {MAX_SCENARIO_PRODUCTS}); "
            "only the named fields change",
        },
    )
    discount_rate_bps = fields.Integer(
        load_default=0,
        validate=RATE,
        metadata={"description": "annual rate discounting the in-house contribution over each loan's term; 0: off"},
    )


# -- the answer ---------------------------------------------------------------------------


class ComparisonRowSchema(Schema):
    segment = fields.String()
    product_id = fields.String()
    owner = fields.String()
    settlement = fields.String()
    impressions = fields.Integer()
    clicks = fields.Integer()
    applications = fields.Integer()
    approvals = fields.Integer()
    loans = fields.Integer()
    disbursed_fen = fields.Integer()
    platform_revenue_fen = fields.Integer()
    group_contribution_fen = fields.Integer()
    rpm_platform_fen = fields.Integer(metadata={"description": "platform view per 1,000 impressions"})
    rpm_group_fen = fields.Integer(metadata={"description": "group view per 1,000 impressions"})


class SegmentSummarySchema(Schema):
    segment = fields.String()
    best_referral_product_id = fields.String(allow_none=True)
    self_product_id = fields.String(allow_none=True)
    winner_platform_view = fields.String(allow_none=True)
    winner_group_view = fields.String(allow_none=True)
    breakeven_annual_loss_bps = fields.Integer(
        allow_none=True, metadata={"description": "the tier's annual loss at which self-lending equals the best referral"}
    )
    breakeven_approval_rate_bps = fields.Integer(
        allow_none=True, metadata={"description": "the in-house approval rate at which self-lending equals the best referral"}
    )
    risk_tier = fields.String(allow_none=True)
    logged_in = fields.Boolean()
    in_house_declined = fields.Boolean()
    impressions = fields.Integer()
    best_referral_rpm_fen = fields.Integer(allow_none=True)
    self_rpm_platform_fen = fields.Integer(allow_none=True)
    self_rpm_group_fen = fields.Integer(allow_none=True)
    self_margin_over_referral_rpm_fen = fields.Integer(allow_none=True)
    runner_up_group_view = fields.String(allow_none=True)
    winner_margin_rpm_fen = fields.Integer(allow_none=True)


class SensitivityEntrySchema(Schema):
    segment = fields.String()
    product_id = fields.String()
    role = fields.String(metadata={"description": "winner or runner_up: whose parameter moves"})
    parameter = fields.String()
    base_value = fields.Integer()
    low_value = fields.Integer(metadata={"description": "the value at −20%"})
    high_value = fields.Integer(metadata={"description": "the value at +20%"})
    margin_low_rpm_fen = fields.Integer()
    margin_base_rpm_fen = fields.Integer()
    margin_high_rpm_fen = fields.Integer()
    winner_low = fields.String()
    winner_high = fields.String()
    flips = fields.Boolean()


class ComparisonNoteSchema(Schema):
    segment = fields.String()
    product_id = fields.String()
    note = fields.String(metadata={"description": "why the segment cannot be shown the product (so it has no row)"})


class ComparisonSchema(Schema):
    scenario = fields.String()
    ruleset_version = fields.Integer(metadata={"description": "the served catalogue version compared"})
    discount_rate_bps = fields.Integer()
    rows = fields.List(fields.Nested(ComparisonRowSchema))
    segments = fields.List(fields.Nested(SegmentSummarySchema))
    sensitivity = fields.List(fields.Nested(SensitivityEntrySchema))
    notes = fields.List(
        fields.Nested(ComparisonNoteSchema),
        metadata={"description": "one per product and segment without a row, saying why"},
    )


class CompareQueryArgsSchema(Schema):
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(("json", "csv")),
        metadata={"description": "csv: the rows only, with exactly the contract's columns"},
    )


@finance.route("/compare")
class Compare(MethodView):
    decorators = [require(FINANCE)]

    @finance.doc(
        security=BEARER,
        requestBody={"required": True, "content": {"application/json": {"schema": ScenarioSchema}}},
    )
    @finance.arguments(CompareQueryArgsSchema, location="query")
    @finance.response(200, ComparisonSchema)
    @finance.alt_response(
        200,
        schema={"type": "string"},
        content_type="text/csv",
        description="with ?format=csv: the rows as CSV",
        success=True,
    )
    def post(self, query):
        """Compare self-lending with referral for a scenario

        One row per segment and product, as if the product took all of the
        segment's impressions in a slot of position weight 1, in the platform
        and the group view; per segment the best referral, the in-house result,
        the winner in each view and the break-even annual loss and approval
        rate (null where none exists); and how the group-view winner's margin
        moves when each parameter moves by ±20%. A product a segment cannot be
        shown (a login it needs, a risk tier it does not serve) has no row in
        that segment and a note saying why. Modelled over the served
        catalogue. A bad scenario is a 422 naming the field.
        """
        body = json_body(request)
        catalogue = components().layouts.serving().catalogue
        try:
            scenario = parse_scenario(body, catalogue)
        except ScenarioError as exc:
            raise Invalid("invalid scenario", exc.errors) from None
        comparison = compare(catalogue, scenario)
        if query["format"] == "csv":
            return Response(
                csv_text(comparison),
                mimetype="text/csv",
                headers={"Content-Disposition": f'attachment; filename="{_file_name(scenario.name)}.csv"'},
            )
        return {"ruleset_version": catalogue.version, **comparison.to_dict()}


def _file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "comparison"


def blueprints() -> list[Blueprint]:
    return [finance]
