"""The partner gateway: pre-screens in layouts, joint login, the data-share log, settlement pulls.

``install`` wires the outbound partner client, the pre-screen service (the
layout's ``before_place`` hook), joint-login links (the layout's ``action_url``
hook) and the settlement client into the components, and registers:

- ``POST /partner/v1/joint-login/exchange`` (partner, HMAC-signed);
- ``GET /admin/v1/data-shares?user_id=`` (role ``pm``).
"""
from __future__ import annotations

import orjson
from flask import Flask, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint
from marshmallow import ValidationError

from ..domain.catalogue import Partner
from ..partners.client import PartnerClient, PartnerSecrets, redis_breaker_storage
from ..partners.joint_login import JointLogin, JointLoginTokens
from ..partners.prescreen import PrescreenService
from ..partners.settlement import SettlementClient
from ..services.errors import Invalid, NotFound, ServiceError
from ..store.data_shares import DataShareStore
from .auth import BEARER, components, require
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
        service: JointLogin = components().extra["joint_login"]
        body = request.get_data(cache=True)
        partner_id = service.authenticate(request.headers, body)
        try:
            data = JointLoginExchangeSchema().load(orjson.loads(body or b"null") or {})
        except orjson.JSONDecodeError:
            raise Invalid("the body is not JSON", {"json": ["not valid JSON"]}) from None
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
    @data_shares.arguments(DataShareQueryArgsSchema, location="query")
    @data_shares.response(200, DataSharesSchema)
    def get(self, args):
        """Every send of a user's data to a partner

        Newest first: the partner, the fields sent, the purpose (`prescreen` or
        `joint_login`), when it was recorded (just before the data left), the
        consent it relied on with the user's consents at that moment, and what
        came of it (`outcome`).
        """
        store: DataShareStore = components().extra["data_shares"]
        shares = store.list(args["user_id"], limit=args["limit"])
        return {"user_id": args["user_id"], "shares": [share.to_dict() for share in shares]}


def partner_lookup(comps):
    """Find a partner in the served catalogue, else in the draft (a partner may be removed after its last day)."""

    def lookup(partner_id: str) -> Partner | None:
        try:
            served = comps.layouts.serving().catalogue.partners.get(partner_id)
        except ServiceError:
            served = None
        if served is not None:
            return served
        try:
            return Partner.from_dict(comps.admin.get("partners", partner_id))
        except NotFound:
            return None

    return lookup


def install(app: Flask, api: Api, comps) -> None:
    """Wire the partner gateway into ``comps`` and register its blueprints."""
    settings = comps.settings
    client = PartnerClient(
        PartnerSecrets(comps.catalogue_store.partner_secrets),
        redis_breaker_storage(comps.redis, comps.keys),
        fail_max=settings.breaker_fail_max,
        reset_seconds=settings.breaker_reset_seconds,
    )
    shares = DataShareStore(comps.redis, comps.keys)
    prescreen = PrescreenService(
        client,
        shares,
        comps.redis,
        comps.keys,
        budget_ms=settings.prescreen_budget_ms,
        ttl_new_seconds=settings.prescreen_ttl_new_seconds,
        ttl_existing_seconds=settings.prescreen_ttl_existing_seconds,
        apr_cap_bps=settings.apr_cap_bps,
    )
    joint = JointLogin(
        JointLoginTokens(settings.secret_key, settings.joint_login_ttl_seconds),
        comps.redis,
        comps.keys,
        shares,
        comps.catalogue_store.partner_secret,
        ref_secret=settings.secret_key,
        replay_window_seconds=settings.postback_replay_window_seconds,
    )
    comps.extra.update(
        partner_client=client,
        data_shares=shares,
        prescreen=prescreen,
        joint_login=joint,
        settlement=SettlementClient(client, partner_lookup(comps)),
    )
    comps.layouts.before_place.append(prescreen.refine)
    comps.layouts.action_url = joint.action_url
    comps.closers.append(client.close)
    comps.closers.append(prescreen.close)

    api.register_blueprint(joint_login)
    api.register_blueprint(data_shares)
