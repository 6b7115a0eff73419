"""Funnel tracking over HTTP: app events, partner postbacks and earned revenue.

The services behind these views, and the hooks they add to every layout, are
wired in :mod:`wallet_market.composition`.
"""
from __future__ import annotations

import orjson
from flask import Response, request
from flask.views import MethodView
from .bodies import Blueprint
from marshmallow import ValidationError

from ..services.errors import Invalid
from ..services.events import parse_batch
from .auth import BEARER, components, require
from .bodies import BadRequest, parse_json, read_body
from .schemas import (
    EventBatchSchema,
    EventCountsSchema,
    PostbackAnswerSchema,
    PostbackSchema,
    RevenueQueryArgsSchema,
)


def _json(body, status: int) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


events = Blueprint("events", __name__, url_prefix="/v1", description="Impressions and clicks from the wallet app.")


@events.route("/events")
class Events(MethodView):
    decorators = [require("app")]

    @events.doc(
        security=BEARER,
        requestBody={"required": True, "content": {"application/json": {"schema": EventBatchSchema}}},
    )
    @events.alt_response(202, schema=EventCountsSchema, success=True, description="How the batch was counted")
    def post(self):
        """Report impressions and clicks

        Each event carries the `impression_token` of the layout slot it is
        about. A forged or expired token is counted as rejected with its reason;
        the same event twice (same decision, slot and type) is counted once.
        Everything answered 202 is kept; if storage is unreachable the answer is
        503 and the batch should be sent again.
        """
        body = parse_json(read_body(request))
        events_ = components().events
        batch = parse_batch(body, events_.max_batch)
        return _json(events_.ingest(batch).to_dict(), 202)


partner = Blueprint(
    "postbacks", __name__, url_prefix="/partner/v1", description="Conversion postbacks from partners (HMAC-signed)."
)


@partner.route("/postbacks")
class Postbacks(MethodView):
    @partner.doc(
        security=[],
        parameters=[
            {"in": "header", "name": name, "required": True, "schema": {"type": "string"}, "description": text}
            for name, text in (
                ("X-Partner-Id", "the partner's id (`in_house` for the in-house lender)"),
                ("X-Timestamp", "epoch seconds; refused outside the replay window"),
                ("X-Signature", "hex HMAC-SHA256 of timestamp + \".\" + body with the partner's secret"),
            )
        ],
        requestBody={"required": True, "content": {"application/json": {"schema": PostbackSchema}}},
    )
    @partner.alt_response(202, schema=PostbackAnswerSchema, success=True, description="Recorded")
    @partner.alt_response(200, schema=PostbackAnswerSchema, description="Already recorded (same event_id)")
    def post(self):
        """Report a conversion: applied, approved, rejected, disbursed or reversed

        Signed with the partner's secret; a timestamp outside the replay window,
        an unknown partner or a bad signature is a 401. Idempotent on
        `event_id`. `impression_token` names the layout slot that led here and
        must be of one of the partner's products. A `reversed` event names the
        `event_id` it undoes in `reverses` and takes back exactly its revenue,
        once.
        """
        body = read_body(request)
        postbacks = components().postbacks
        partner_id = postbacks.authenticate(request.headers, body)
        data = parse_json(body)
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object", {"json": ["expected an object"]})
        try:
            loaded = PostbackSchema().load(data)
        except ValidationError as exc:
            raise Invalid("the postback is malformed", exc.messages) from None
        answer = postbacks.accept(partner_id, loaded)
        return _json(answer.to_dict(), answer.http_status)


revenue = Blueprint("revenue", __name__, url_prefix="/finance/v1", description="Earned revenue from the ledger.")


@revenue.route("/revenue")
class Revenue(MethodView):
    decorators = [require("finance")]

    @revenue.doc(security=BEARER)
    @revenue.arguments(RevenueQueryArgsSchema, location="query")
    @revenue.alt_response(200, success=True, description="Rows by the chosen dimension")
    def get(self, args):
        """Earned revenue by channel, partner, product, slot, risk tier or day

        `from` and `to` are UTC days, both included; without them the answer
        covers the last 7 days and its `note` says so. Each row has the earned
        counts and money of docs/api.md and, beside them, the model's expected
        platform revenue and group contribution for the same impressions
        (`expected_platform_revenue_fen`, `expected_group_contribution_fen`).
        A `slot` is named `page/slot`; a `risk_tier` of null is visitors and
        users without one.
        """
        return _json(components().revenue.earned(args["from_"], args["to"], args["group_by"]), 200)


def blueprints() -> list[Blueprint]:
    return [events, partner, revenue]
