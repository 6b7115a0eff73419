"""The wallet app's API (role ``app``) and profile facts from internal systems (role ``internal``)."""
from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

import orjson
from flask import Response, request
from flask.views import MethodView
from .bodies import Blueprint
from flask_smorest.error_handler import ErrorSchema
from marshmallow import EXCLUDE, ValidationError
from werkzeug.wrappers import Request

from .. import metrics
from ..domain.users import UserProfile
from ..services.errors import Invalid
from ..services.layouts import LayoutRequest
from ..services.profiles import checked_user_id
from .auth import BEARER, components, require
from .schemas import USER_ID, LayoutQueryArgsSchema, LayoutSchema, UserProfileSchema, path_id

DEVICE_ID_MAX = 128
# One schema instance for the hot path (webargs would build one per request from a class).
LAYOUT_QUERY = LayoutQueryArgsSchema()
# The wallet app asks with a handful of distinct query strings (page x device x app version), so
# each one is validated once per process: its checked arguments are kept, keyed by the raw query
# string. Refused strings are never kept, and the memo is emptied when it reaches its bound.
LAYOUT_QUERY_MEMO_SIZE = 4096
_layout_queries: dict[bytes, Mapping[str, Any]] = {}


def layout_query_args(req: Request) -> Mapping[str, Any]:
    """The checked layout query arguments of ``req``; its query string is parsed only when not yet known."""
    query_string = req.query_string
    known = _layout_queries.get(query_string)
    if known is not None:
        return known
    try:
        checked = LAYOUT_QUERY.load(req.args.to_dict(), unknown=EXCLUDE)
    except ValidationError as exc:
        raise Invalid("invalid query arguments", {"query": exc.messages}) from None
    if len(_layout_queries) >= LAYOUT_QUERY_MEMO_SIZE:
        _layout_queries.clear()
    known = _layout_queries[query_string] = MappingProxyType(checked)
    return known


layout = Blueprint("layout", __name__, url_prefix="/v1", description="Page layouts for the wallet app.")


@layout.route("/layout")
class Layout(MethodView):
    # The query is documented here and read in the view rather than through
    # ``@arguments``: the hottest call of the service skips webargs' machinery.
    @layout.doc(
        security=[{"bearerAuth": [], "userToken": []}, {"bearerAuth": []}],
        parameters=[
            {"in": "query", "schema": LayoutQueryArgsSchema},
            {
                "in": "header",
                "name": "X-Device-Id",
                "required": False,
                "schema": {"type": "string", "maxLength": DEVICE_ID_MAX},
                "description": "a visitor's stable device id: the experiments' randomisation unit when nobody is logged in",
            },
        ],
    )
    @layout.alt_response(200, schema=LayoutSchema, success=True, description="The layout")
    @layout.alt_response(422, schema=ErrorSchema, description="A query argument is missing or invalid")
    def get(self):
        """Which product fills each slot of a page

        A logged-in user is named by `X-User-Token` (none: a visitor; a bad or
        expired token: 401). Each slot carries a signed impression token naming
        the decision, slot, product, rule-set version and user.
        """
        args = layout_query_args(request)
        device_id = request.headers.get("X-Device-Id") or None
        if device_id is not None and (len(device_id) > DEVICE_ID_MAX or not device_id.isprintable()):
            raise Invalid("invalid X-Device-Id", {"X-Device-Id": [f"must be 1–{DEVICE_ID_MAX} printable characters"]})
        comps = components()
        result = comps.layouts.layout(
            LayoutRequest(
                api_key=comps.access.bearer(request.headers.get("Authorization")),
                user_token=request.headers.get("X-User-Token"),
                page=args["page"],
                device_model=args.get("device_model"),
                app_version=args.get("app_version"),
                region=args.get("region"),
                device_id=device_id,
            )
        )
        for slot in result.decision.slots:
            metrics.count_decision(result.decision.page_id, slot.slot_id, slot.product_id)
        if result.degraded:
            metrics.DEGRADED_LAYOUTS.inc()
        return Response(orjson.dumps(result.body), mimetype="application/json")


users = Blueprint("users", __name__, url_prefix="/v1/users", description="User profile facts from internal systems.")


@users.route("/<user_id>", parameters=[path_id("user_id", USER_ID, "the user's id")])
class UserById(MethodView):
    decorators = [require("internal")]

    @users.doc(security=BEARER)
    @users.arguments(UserProfileSchema)
    @users.response(200, UserProfileSchema)
    def put(self, data, user_id):
        """Replace a user's profile facts

        Risk tier, in-house decision, consents, age, region and the SHA-256 of
        the phone number — never the number itself (an unknown field such as
        `phone` is refused).
        """
        checked_user_id(user_id)
        decision = data.get("in_house_decision") or {}
        body = {
            **data,
            "in_house_decision": {
                "status": decision.get("status", "none"),
                "decided_at": decision["decided_at"].isoformat() if decision.get("decided_at") else None,
            },
        }
        profile = UserProfile.from_dict(body, user_id=user_id)
        return _for_schema(components().profiles.put(profile))

    @users.doc(security=BEARER)
    @users.response(200, UserProfileSchema)
    def get(self, user_id):
        """Read a user's profile facts"""
        return _for_schema(components().profiles.get(user_id))


def _for_schema(profile: dict) -> dict:
    from datetime import date

    decision = dict(profile.get("in_house_decision") or {})
    if decision.get("decided_at"):
        decision["decided_at"] = date.fromisoformat(decision["decided_at"])
    return {**profile, "in_house_decision": decision}


def blueprints() -> list[Blueprint]:
    return [layout, users]
