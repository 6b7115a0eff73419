"""Product managers' API (role ``pm``): catalogue, rule sets, preview, audit.

Writes go to the draft; ``publish`` freezes it as the next immutable version.
Each draft entity is answered with an ``ETag``; ``PUT``, ``PATCH`` (a JSON
merge patch) and ``DELETE`` honour ``If-Match`` (412 when it names an older
state; without it the write goes ahead).
"""
from __future__ import annotations

from flask import request
from flask.views import MethodView
from .bodies import Blueprint
from marshmallow import Schema, fields

from ..domain.catalogue import Page, Partner, Product, Rule
from ..services.catalogue_admin import ANY, entity_etag
from ..services.errors import ServiceError
from .auth import BEARER, actor, components, require
from .schemas import (
    EvaluateSchema,
    EvaluationSchema,
    ID,
    PageSchema,
    PartnerSchema,
    PreviewSchema,
    ProductSchema,
    PublishSchema,
    RollbackSchema,
    RuleSchema,
    path_id,
)

PM = "pm"
MERGE_PATCH = "application/merge-patch+json"
PATCH_TYPES = (MERGE_PATCH, "application/json")
ETAG_HEADER = {"ETag": {"description": "a hash of the entity as stored; send it back in If-Match", "schema": {"type": "string"}}}
IF_MATCH = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "schema": {"type": "string"},
    "description": "the ETag the change is based on; 412 when the entity has changed since (`*`: any)",
}


class BadBody(ServiceError):
    status = 400


class UnsupportedMediaType(ServiceError):
    status = 415


def if_match() -> list[str] | None:
    """The strong entity tags of ``If-Match`` (``["*"]`` for any), or None when it is absent."""
    if "If-Match" not in request.headers:
        return None
    tags = request.if_match
    return [ANY] if tags.star_tag else sorted(tag for tag in tags.as_set() if tag)


def tagged(entity_cls, stored: dict) -> tuple:
    """The entity for the schema and its ``ETag`` header."""
    return entity_cls.from_dict(stored), {"ETag": f'"{entity_etag(stored)}"'}


def merge_patch_body() -> dict:
    """The body of a ``PATCH``: a JSON object sent as merge patch (or plain JSON)."""
    if request.mimetype not in PATCH_TYPES:
        raise UnsupportedMediaType(
            f"send the patch as {MERGE_PATCH} or application/json",
            {"Content-Type": [f"must be {' or '.join(PATCH_TYPES)}"]},
        )
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadBody("the body must be a JSON object (a merge patch)", {"json": {"_schema": ["expected an object"]}})
    return body

RESOURCES = (
    ("partners", "partner_id", PartnerSchema, Partner, "Partner lenders and card issuers."),
    ("products", "product_id", ProductSchema, Product, "Loan and card products with their economics."),
    ("pages", "page_id", PageSchema, Page, "Pages of the wallet app and their slots."),
    ("rules", "rule_id", RuleSchema, Rule, "Placement rules: pin, exclude, boost or damp, floor, partner share cap."),
)


def _crud_blueprint(kind: str, id_field: str, schema, entity_cls, description: str) -> Blueprint:
    blp = Blueprint(kind, __name__, url_prefix=f"/admin/v1/{kind}", description=description)
    singular = kind[:-1]

    @blp.route("")
    class Collection(MethodView):
        decorators = [require(PM)]

        @blp.doc(security=BEARER)
        @blp.response(200, schema(many=True))
        def get(self):
            """List the draft's entities"""
            return [entity_cls.from_dict(e) for e in components().admin.list(kind)]

        @blp.doc(security=BEARER)
        @blp.arguments(schema)
        @blp.response(201, schema, headers=ETAG_HEADER)
        def post(self, data):
            """Create an entity in the draft

            Refused with 422 naming the field when it breaks a guard of docs/guards.md
            or references something that does not exist.
            """
            return tagged(entity_cls, components().admin.create(kind, data, actor()))

    @blp.route(f"/<{id_field}>", parameters=[path_id(id_field, ID, f"the {singular}'s id")])
    class Item(MethodView):
        decorators = [require(PM)]

        @blp.doc(security=BEARER)
        @blp.response(200, schema, headers=ETAG_HEADER)
        def get(self, **ids):
            """Read one draft entity"""
            return tagged(entity_cls, components().admin.get(kind, ids[id_field]))

        @blp.doc(security=BEARER, parameters=[IF_MATCH])
        @blp.arguments(schema)
        @blp.response(200, schema, headers=ETAG_HEADER)
        def put(self, data, **ids):
            """Replace one draft entity

            Every field is sent (a missing optional field takes its default);
            to change a few fields, use `PATCH`. A partner's `signing_secret`
            is kept when the body leaves it out.
            """
            stored = components().admin.update(kind, ids[id_field], data, actor(), if_match=if_match())
            return tagged(entity_cls, stored)

        @blp.doc(
            security=BEARER,
            parameters=[IF_MATCH],
            requestBody={
                "required": True,
                "content": {
                    content_type: {"schema": {"type": "object", "description": f"the fields of the {singular} to change"}}
                    for content_type in PATCH_TYPES
                },
            },
        )
        @blp.response(200, schema, headers=ETAG_HEADER)
        def patch(self, **ids):
            """Change some fields of one draft entity (JSON merge patch, RFC 7396)

            The patch is merged into the stored entity (an object merges key by
            key, `null` removes a field, a list replaces the list), and the
            result is validated exactly as a `PUT` body: a 422 names the field,
            and nothing is written unless the whole result is valid.
            """
            stored = components().admin.patch(kind, ids[id_field], merge_patch_body(), actor(), if_match=if_match())
            return tagged(entity_cls, stored)

        @blp.doc(security=BEARER, parameters=[IF_MATCH])
        @blp.response(204)
        def delete(self, **ids):
            """Delete one draft entity"""
            components().admin.delete(kind, ids[id_field], actor(), if_match=if_match())

    Collection.__name__ = f"{kind.title()}"
    Item.__name__ = f"{singular.title()}ById"
    return blp


rulesets = Blueprint("rulesets", __name__, url_prefix="/admin/v1/rulesets", description="Published rule-set versions.")


class VersionSchema(Schema):
    version = fields.Integer()
    published = fields.Boolean(metadata={"description": "false when the draft equalled the served version"})
    message = fields.String(metadata={"description": "why nothing was published"})
    published_at = fields.String(metadata={"description": "ISO 8601, UTC"})
    published_by = fields.String()
    note = fields.String()
    rollback_of = fields.Integer(allow_none=True)
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())


class CandidateSchema(Schema):
    version = fields.Integer(metadata={"description": "the number the frozen draft was given"})
    frozen_at = fields.String(metadata={"description": "ISO 8601, UTC"})
    frozen_by = fields.String()
    note = fields.String()
    draft_revision = fields.Integer(metadata={"description": "the draft revision that was frozen"})
    counts = fields.Dict(keys=fields.String(), values=fields.Integer())


class VersionsSchema(Schema):
    current = fields.Integer()
    versions = fields.List(fields.Nested(VersionSchema))
    candidates = fields.List(
        fields.Nested(CandidateSchema),
        metadata={"description": "versions frozen from the draft for experiments and evaluation, never served by publish"},
    )


@rulesets.route("")
class Rulesets(MethodView):
    decorators = [require(PM)]

    @rulesets.doc(security=BEARER)
    @rulesets.response(200, VersionsSchema)
    def get(self):
        """List published versions and the one being served"""
        return components().admin.versions()


@rulesets.route("/publish")
class Publish(MethodView):
    decorators = [require(PM)]

    @rulesets.doc(security=BEARER)
    @rulesets.arguments(PublishSchema)
    @rulesets.response(201, VersionSchema)
    @rulesets.alt_response(200, schema=VersionSchema, description="The draft equals the served version: nothing published")
    def post(self, data):
        """Publish the draft as the next immutable version (atomic)

        A draft equal to the served version makes no new version: the answer is
        200 with `"published": false` and the version it equals.
        """
        result = components().admin.publish(actor(), data.get("note", ""))
        return result, (201 if result["published"] else 200)


@rulesets.route("/candidates")
class Candidates(MethodView):
    decorators = [require(PM)]

    @rulesets.doc(security=BEARER)
    @rulesets.arguments(PublishSchema)
    @rulesets.response(201, CandidateSchema)
    def post(self, data):
        """Freeze the draft as a numbered candidate version without publishing it

        The candidate is guard-checked like a publish and stored beside the
        published versions; the served version does not change. Experiments
        take it as their treatment, evaluations as their candidate.
        """
        return components().admin.freeze_candidate(actor(), data.get("note", ""))


@rulesets.route("/evaluate")
class Evaluate(MethodView):
    decorators = [require(PM)]

    @rulesets.doc(security=BEARER)
    @rulesets.arguments(EvaluateSchema)
    @rulesets.response(200, EvaluationSchema)
    def post(self, data):
        """Estimate what a candidate would earn, from the logged decisions, before it serves anyone

        Every logged decision of the window (the Parquet analysis log the
        worker exports) is replayed through the placement engine over the
        candidate's catalogue — the draft or a stored version — given the
        context it logged. IPS, SNIPS, DM and DR estimate the candidate's
        revenue per 1,000 slot impressions with 95% intervals, beside what the
        logging policy earned; the effective sample size, the support and the
        warnings say how far to trust them.
        """
        return components().evaluation.evaluate(data["candidate"], data.get("from_"), data.get("to"), data["view"])


@rulesets.route("/rollback")
class Rollback(MethodView):
    decorators = [require(PM)]

    @rulesets.doc(security=BEARER)
    @rulesets.arguments(RollbackSchema)
    @rulesets.response(201, VersionSchema)
    def post(self, data):
        """Serve an earlier version again (as a new version number) and reset the draft to it"""
        return components().admin.rollback(data["version"], actor(), data.get("note", ""))


preview = Blueprint("preview", __name__, url_prefix="/admin/v1", description="What a user would see, and why.")


@preview.route("/preview")
class Preview(MethodView):
    decorators = [require(PM)]

    @preview.doc(security=BEARER)
    @preview.arguments(PreviewSchema)
    @preview.response(200)
    def post(self, data):
        """Preview a layout with the explanation of every candidate

        Each candidate is chosen (in which slot), lost (to which product, by how
        much expected revenue) or filtered (by which guard or rule).
        """
        return components().preview.preview(data)


audit = Blueprint("audit", __name__, url_prefix="/admin/v1", description="Who changed what.")


@audit.route("/audit")
class Audit(MethodView):
    decorators = [require(PM)]

    @audit.doc(security=BEARER)
    @audit.response(200)
    def get(self):
        """The newest catalogue changes, newest first"""
        return {"entries": components().admin.audit(200)}


def blueprints() -> list[Blueprint]:
    return [*(_crud_blueprint(*resource) for resource in RESOURCES), rulesets, preview, audit]
