"""Funnel tracking over HTTP: app events, partner postbacks and earned revenue.

``install`` wires the funnel services into the application: the blueprints,
the learned-rates catalogue hook, the decision log on every layout, and (when
the app runs its background threads) the refreshers that keep them current.
"""
from __future__ import annotations

from dataclasses import dataclass

import orjson
import redis
from flask import Flask, Response, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint
from marshmallow import ValidationError

from ..services.decision_log import DecisionLog
from ..services.errors import Invalid, ServiceError
from ..services.events import EventIngestion, parse_batch
from ..services.learning import LearnedRates, LearningRefresher
from ..services.postbacks import PostbackService
from ..services.revenue import earned_revenue
from ..store.caps import LeadCaps
from ..store.ledger import CatalogueVersions, Ledger
from .auth import BEARER, components, require
from .schemas import (
    EventBatchSchema,
    EventCountsSchema,
    PostbackAnswerSchema,
    PostbackSchema,
    RevenueQueryArgsSchema,
)


class BadRequest(ServiceError):
    status = 400


@dataclass
class FunnelServices:
    """The funnel's services of one process (``components.extra["funnel"]``)."""

    ledger: Ledger
    lead_caps: LeadCaps
    versions: CatalogueVersions
    events: EventIngestion
    postbacks: PostbackService
    learned_rates: LearnedRates
    learning: LearningRefresher
    decision_log: DecisionLog


def funnel() -> FunnelServices:
    return components().extra["funnel"]


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
        try:
            body = orjson.loads(request.get_data(cache=False))
        except orjson.JSONDecodeError:
            raise BadRequest("the body is not valid JSON", {"_schema": ["expected {\"events\": [...]}"]}) from None
        services = funnel()
        batch = parse_batch(body, services.events.max_batch)
        return _json(services.events.ingest(batch).to_dict(), 202)


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
        body = request.get_data(cache=False)
        services = funnel()
        partner_id = services.postbacks.authenticate(request.headers, body)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BadRequest("the body is not valid JSON", {"_schema": ["not valid JSON"]}) from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object", {"_schema": ["expected an object"]})
        try:
            loaded = PostbackSchema().load(data)
        except ValidationError as exc:
            raise Invalid("the postback is malformed", exc.messages) from None
        answer = services.postbacks.accept(partner_id, loaded)
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

        `from` and `to` are UTC days, both included. Each row has the earned
        counts and money of DESIGN §7 and, beside them, the model's expected
        platform revenue and group contribution for the same impressions
        (`expected_platform_revenue_fen`, `expected_group_contribution_fen`).
        A `slot` is named `page/slot`; a `risk_tier` of null is visitors and
        users without one.
        """
        return _json(earned_revenue(funnel().ledger, args["from_"], args["to"], args["group_by"]), 200)


def install(app: Flask, api: Api, comps) -> None:
    """Register the funnel's blueprints and wire its services and hooks into ``comps``."""
    settings = comps.settings
    ledger = Ledger(comps.redis, comps.keys)
    lead_caps = LeadCaps(comps.redis, comps.keys)
    versions = CatalogueVersions(comps.catalogue_store)

    def current_catalogue():
        snapshot = comps.snapshots.current
        return snapshot.built.catalogue if snapshot is not None else None

    learned_rates = LearnedRates(settings.prior_strength)
    learning = LearningRefresher(
        ledger,
        learned_rates,
        comps.snapshots,
        interval_seconds=settings.learning_refresh_seconds,
    )
    services = FunnelServices(
        ledger=ledger,
        lead_caps=lead_caps,
        versions=versions,
        events=EventIngestion(
            ledger, lead_caps, comps.impression_tokens, versions, current_catalogue, settings.max_event_batch
        ),
        postbacks=PostbackService(
            comps.catalogue_store.partner_secret,
            ledger,
            comps.impression_tokens,
            versions,
            settings.postback_replay_window_seconds,
        ),
        learned_rates=learned_rates,
        learning=learning,
        decision_log=DecisionLog(comps.redis, comps.keys),
    )
    comps.extra["funnel"] = services
    comps.catalogue_hooks.append(learned_rates)
    comps.layouts.on_decision.append(services.decision_log.record)
    try:
        # The first snapshot of this process is built with what has been learned so far.
        learned_rates.update(ledger.learned_counts())
    except redis.RedisError as exc:
        app.logger.warning("learned rates not loaded at start-up: %s", exc)

    for blueprint in (events, partner, revenue):
        api.register_blueprint(blueprint)

    if app.config.get("WALLET_MARKET_START_BACKGROUND"):
        learning.start()
        services.decision_log.start()
        comps.closers.append(learning.stop)
        comps.closers.append(services.decision_log.stop)
