"""The partner gateway: pre-screens in layouts, joint login, the data-share log, settlement pulls.

The partner client, pre-screens (the layout's ``before_place`` hook) and
joint-login links (its ``action_url`` hook) are wired in
:mod:`wallet_market.composition`. This module serves:

- ``POST /partner/v1/joint-login/exchange`` (partner, HMAC-signed);
- ``GET /admin/v1/data-shares?user_id=`` (role ``pm``).
"""
from __future__ import annotations

from flask import request
from flask.views import MethodView
from .bodies import Blueprint
from marshmallow import RAISE, ValidationError

from ..services.errors import Invalid
from .auth import BEARER, components, require
from .bodies import json_body, read_body
from .schemas import DataShareQueryArgsSchema, DataSharesSchema, JointLoginAnswerSchema, JointLoginExchangeSchema

SIGNED_HEADERS = [
    {"in": "header", "name": name, "required": True, "schema": {"type": "string"}, "description": text}
    for name, text in (
        ("X-Partner-Id", "the partner's id"),
        ("X-Timestamp", "epoch seconds; refused outside the replay window"),
        ("X-Signature", 'hex HMAC-SHA256 of timestamp + "." + body with the partner\'s secret'),
    )
]

joint_login = Blueprint(
    "joint_login",
    __name__,
    url_prefix="/partner/v1/joint-login",
    description="Joint login: partners exchange a one-time token for the user's consented data.",
)


@joint_login.route("/exchange")
class JointLoginExchange(MethodView):
    @joint_login.doc(
        security=[],
        parameters=SIGNED_HEADERS,
        requestBody={"required": True, "content": {"application/json": {"schema": JointLoginExchangeSchema}}},
    )
    @joint_login.response(200, JointLoginAnswerSchema)
    @joint_login.alt_response(401, description="Missing, stale or wrong signature, or an unknown partner")
    @joint_login.alt_response(403, description="Token forged, expired, used, for another partner, or no consent")
    def post(self):
        """Exchange a one-time joint-login token

        Signed like postbacks: `X-Partner-Id`, `X-Timestamp` and `X-Signature`
        (hex HMAC-SHA256 of `timestamp + "." + body` with the partner's secret).
        The answer carries only what the user consents to share with this
        partner: `user_ref` (a pseudonymous id for this partner only) and, when
        the profile has them, `phone_sha256`, `age_band` and `region`; `fields`
        lists them. A token works once and for about a minute; every answered
        exchange is recorded in the data-share log.
        """
        service = components().joint_login
        body = read_body(request)
        partner_id = service.authenticate(request.headers, body)
        try:
            data = JointLoginExchangeSchema().load(json_body(request))
        except ValidationError as exc:
            raise Invalid("the body does not have the expected shape", {"json": exc.messages}) from None
        return service.exchange(partner_id, data["token"])


data_shares = Blueprint(
    "data_shares",
    __name__,
    url_prefix="/admin/v1/data-shares",
    description="The log of every send of user data to a partner.",
)


@data_shares.route("")
class DataShares(MethodView):
    decorators = [require("pm")]

    @data_shares.doc(security=BEARER)
    @data_shares.arguments(DataShareQueryArgsSchema, location="query", unknown=RAISE)
    @data_shares.response(200, DataSharesSchema)
    def get(self, args):
        """Every send of a user's data to a partner

        Newest first: the partner, the fields sent, the purpose (`prescreen` or
        `joint_login`), when it was recorded (just before the data left), the
        consent it relied on with the user's consents at that moment, and what
        came of it (`outcome`).
        """
        shares = components().profiles.data_shares(args["user_id"], limit=args["limit"])
        return {"user_id": args["user_id"], "shares": [share.to_dict() for share in shares]}


def blueprints() -> list[Blueprint]:
    return [joint_login, data_shares]
