"""Catalogue administration: draft writes, publish, rollback, load and export.

Every write is validated against the guards of docs/guards.md on the draft as it
would be after the write; an invalid write is refused whole (nothing is kept)
with the offending fields named.

Each draft entity has an entity tag (:func:`entity_etag`, a hash of the entity
as stored). A write given ``if_match`` tags lands only while the stored entity
still has one of them, checked inside the write's own transaction, so a change
made from a stale read is refused rather than lost. A merge patch
(:meth:`CatalogueAdmin.patch`, RFC 7396) is applied to the stored entity and
the result validated exactly like a replacement.
"""
from __future__ import annotations

import builtins
import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Callable, Collection, Mapping

from marshmallow import Schema, ValidationError

from ..domain import guards
from ..domain.catalogue import Catalogue, Page, Partner, Product, Rule
from ..store.catalogue import CatalogueStore, ConcurrentChange, UnknownVersion
from .catalogue_schemas import PageSchema, PartnerSchema, ProductSchema, RuleSchema
from .errors import Conflict, Invalid, NotFound, PreconditionFailed

ENTITIES: dict[str, tuple[type[Partner | Product | Page | Rule], str]] = {
    "partners": (Partner, "partner_id"),
    "products": (Product, "product_id"),
    "pages": (Page, "page_id"),
    "rules": (Rule, "rule_id"),
}
SCHEMAS: Mapping[str, type[Schema]] = {
    "partners": PartnerSchema,
    "products": ProductSchema,
    "pages": PageSchema,
    "rules": RuleSchema,
}
WRITE_ATTEMPTS = 5
ANY = "*"


def entity_etag(entity: Mapping[str, Any]) -> str:
    """The entity tag of a stored entity: a hash of its canonical JSON (unquoted)."""
    text = json.dumps(entity, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with a JSON merge patch applied (RFC 7396).

    An object merges key by key, recursively; ``null`` removes a key; anything
    else (a list, a string, a number) replaces the value whole.
    """
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def iso_utc(epoch_seconds: float | str) -> str:
    """Epoch seconds as an ISO 8601 UTC time to the millisecond: ``2025-03-01T08:00:00.000Z``."""
    moment = datetime.fromtimestamp(float(epoch_seconds), timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _with_iso_time(record: Mapping[str, Any], name: str) -> dict[str, Any]:
    out = dict(record)
    if isinstance(out.get(name), (int, float, str)) and out[name] != "":
        try:
            out[name] = iso_utc(out[name])
        except ValueError:
            pass  # already a formatted time
    return out


def _check_precondition(if_match: Collection[str] | None, kind: str, entity_id: str, stored: Mapping[str, Any]) -> None:
    """Refuse a write whose ``If-Match`` names none of the stored entity's tags."""
    if if_match is None or ANY in if_match:
        return
    current = entity_etag(stored)
    if current not in if_match:
        raise PreconditionFailed(
            f"{kind[:-1]} {entity_id!r} changed since it was read; read it again and retry",
            {"If-Match": [f'does not match the current ETag "{current}"']},
        )


def canonical(kind: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The stored form of an entity: through the domain class and back to plain JSON types."""
    cls, _ = ENTITIES[kind]
    return cls.from_dict(data).to_dict()


def violations_as_errors(violations: list[guards.Violation]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for v in violations:
        errors.setdefault(v.field, []).append(f"{v.message} ({v.guard})")
    return errors


class CatalogueAdmin:
    def __init__(self, store: CatalogueStore, apr_cap_bps: int):
        self.store = store
        self.apr_cap_bps = apr_cap_bps

    # -- reads -------------------------------------------------------------
    def list(self, kind: str) -> list[dict[str, Any]]:
        _, draft = self.store.read_draft()
        return [draft[kind][k] for k in sorted(draft[kind])]

    def get(self, kind: str, entity_id: str) -> dict[str, Any]:
        _, draft = self.store.read_draft()
        try:
            return draft[kind][entity_id]
        except KeyError:
            raise NotFound(f"{kind[:-1]} {entity_id!r} does not exist") from None

    def export(self) -> dict[str, builtins.list[dict[str, Any]]]:
        """The draft catalogue, secrets left out, in a stable order."""
        _, draft = self.store.read_draft()
        return {kind: [draft[kind][k] for k in sorted(draft[kind])] for kind in ENTITIES}

    # -- draft writes --------------------------------------------------------
    def create(self, kind: str, data: Mapping[str, Any], actor: str) -> dict[str, Any]:
        _, id_field = ENTITIES[kind]
        return self._write(kind, str(data[id_field]), lambda _stored: data, actor, must_exist=False)

    def update(
        self,
        kind: str,
        entity_id: str,
        data: Mapping[str, Any],
        actor: str,
        if_match: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """Replace a draft entity; a partner's signing secret is kept unless ``data`` sets a new one."""
        _, id_field = ENTITIES[kind]
        if data.get(id_field, entity_id) != entity_id:
            raise Invalid(f"{id_field} cannot be changed", {id_field: ["must match the id in the path"]})
        replacement = {**data, id_field: entity_id}
        return self._write(kind, entity_id, lambda _stored: replacement, actor, must_exist=True, if_match=if_match)

    def patch(
        self,
        kind: str,
        entity_id: str,
        patch: Any,
        actor: str,
        if_match: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """Apply a JSON merge patch to a draft entity, then validate it as a replacement would be.

        The shape errors of the patched entity are named under ``json`` as for a
        replacement; nothing is written unless the whole result is valid.
        """
        _, id_field = ENTITIES[kind]
        if not isinstance(patch, Mapping):
            raise Invalid("a merge patch must be a JSON object", {"json": {"_schema": ["expected an object"]}})
        if patch.get(id_field, entity_id) != entity_id:
            raise Invalid(f"{id_field} cannot be changed", {id_field: ["must match the id in the path"]})
        schema = SCHEMAS[kind]()

        def patched(stored: Mapping[str, Any] | None) -> Mapping[str, Any]:
            try:
                return schema.load(merge_patch(stored or {}, patch))
            except ValidationError as exc:
                raise Invalid(f"the patched {kind[:-1]} is not valid", {"json": exc.messages}) from None

        return self._write(kind, entity_id, patched, actor, must_exist=True, if_match=if_match)

    def delete(self, kind: str, entity_id: str, actor: str, if_match: Collection[str] | None = None) -> None:
        for _ in range(WRITE_ATTEMPTS):
            revision, draft = self.store.read_draft()
            if entity_id not in draft[kind]:
                raise NotFound(f"{kind[:-1]} {entity_id!r} does not exist")
            _check_precondition(if_match, kind, entity_id, draft[kind][entity_id])
            after = {k: dict(v) for k, v in draft.items()}
            del after[kind][entity_id]
            self._check(after, refusing=f"deleting {kind[:-1]} {entity_id!r}")
            secrets = {entity_id: None} if kind == "partners" else None
            try:
                self.store.write_draft(
                    [(kind, entity_id, None)], actor=actor, expected_revision=revision, action="delete", secrets=secrets
                )
                return
            except ConcurrentChange:
                continue
        raise Conflict("the draft kept changing; try again")

    def _write(
        self,
        kind: str,
        entity_id: str,
        make: Callable[[Mapping[str, Any] | None], Mapping[str, Any]],
        actor: str,
        must_exist: bool,
        if_match: Collection[str] | None = None,
    ) -> dict[str, Any]:
        """Write the entity ``make`` builds from the stored one (None when new), in one transaction.

        ``make`` runs again on every retry, so a patch always applies to the
        entity the write replaces.
        """
        _, id_field = ENTITIES[kind]
        for _ in range(WRITE_ATTEMPTS):
            revision, draft = self.store.read_draft()
            stored = draft[kind].get(entity_id)
            if must_exist and stored is None:
                raise NotFound(f"{kind[:-1]} {entity_id!r} does not exist")
            if not must_exist and stored is not None:
                raise Conflict(f"{kind[:-1]} {entity_id!r} already exists", {id_field: ["already exists"]})
            if stored is not None:
                _check_precondition(if_match, kind, entity_id, stored)
            data = dict(make(stored))
            # Omitted, the partner's signing secret stays as it is: it is never part of the entity.
            secret = data.pop("signing_secret", None) if kind == "partners" else None
            entity = canonical(kind, data)
            after = {k: dict(v) for k, v in draft.items()}
            after[kind][entity_id] = entity
            self._check(after, refusing=f"this {kind[:-1]}")
            try:
                self.store.write_draft(
                    [(kind, entity_id, entity)],
                    actor=actor,
                    expected_revision=revision,
                    action="update" if stored is not None else "create",
                    secrets={entity_id: secret} if secret else None,
                )
                return entity
            except ConcurrentChange:
                continue
        raise Conflict("the draft kept changing; try again")

    def _check(self, draft: Mapping[str, Mapping[str, dict]], refusing: str) -> Catalogue:
        catalogue = Catalogue.from_dict({kind: list(draft[kind].values()) for kind in ENTITIES})
        violations = guards.catalogue_violations(catalogue, self.apr_cap_bps)
        if violations:
            raise Invalid(f"refusing {refusing}: it breaks a guard or a reference", violations_as_errors(violations))
        return catalogue

    # -- rule sets -------------------------------------------------------------
    def publish(self, actor: str, note: str = "") -> dict[str, Any]:
        """Freeze the draft as the next immutable version and serve it everywhere.

        A draft equal to the version being served makes no new version: the
        answer has ``"published": false`` and says which version it equals.
        """
        for _ in range(WRITE_ATTEMPTS):
            revision, draft = self.store.read_draft()
            self._check(draft, refusing="to publish the draft")
            body = {kind: [draft[kind][k] for k in sorted(draft[kind])] for kind in ENTITIES}
            current = self.store.current_version()
            if current and self.store.load_version(current)["catalogue"] == body:
                return {
                    "version": current,
                    "published": False,
                    "message": f"the draft equals version {current}; nothing to publish",
                }
            try:
                # Compared with the version served now: one published meanwhile means compare again.
                version = self.store.publish(
                    body, actor=actor, expected_revision=revision, note=note, expected_version=current
                )
                return self._record(self.store.history()[-1]) | {"version": version, "published": True}
            except ConcurrentChange:
                continue
        raise Conflict("the draft kept changing; try again")

    def rollback(self, version: int, actor: str, note: str = "") -> dict[str, Any]:
        """Serve an earlier version again, as a new version number, and reset the draft to it."""
        try:
            earlier = self.store.load_version(version)
        except UnknownVersion:
            raise NotFound(f"rule-set version {version} does not exist", {"version": ["unknown version"]}) from None
        body = earlier["catalogue"]
        draft_shape = {kind: {self._id(kind, e): e for e in body.get(kind, [])} for kind in ENTITIES}
        self._check(draft_shape, refusing=f"to roll back to version {version}")
        for _ in range(WRITE_ATTEMPTS):
            revision, _ = self.store.read_draft()
            try:
                new_version = self.store.publish(
                    body, actor=actor, expected_revision=revision, note=note or f"rollback to {version}", rollback_of=version
                )
                return self._record(self.store.history()[-1]) | {"version": new_version, "published": True}
            except ConcurrentChange:
                continue
        raise Conflict("the draft kept changing; try again")

    def freeze_candidate(self, actor: str, note: str = "") -> dict[str, Any]:
        """Freeze the draft as the next numbered version, guard-checked, without serving it."""
        for _ in range(WRITE_ATTEMPTS):
            revision, draft = self.store.read_draft()
            self._check(draft, refusing="to freeze the draft")
            body = {kind: [draft[kind][k] for k in sorted(draft[kind])] for kind in ENTITIES}
            try:
                version = self.store.freeze_candidate(body, actor=actor, expected_revision=revision, note=note)
            except ConcurrentChange:
                continue
            return _with_iso_time(self.store.candidates()[-1], "frozen_at") | {"version": version}
        raise Conflict("the draft kept changing; try again")

    def draft_record(self) -> dict[str, Any]:
        """The draft as a rule-set record (version 0), guard-checked: what ``build_serving`` takes."""
        _, draft = self.store.read_draft()
        self._check(draft, refusing="to use the draft")
        return {"version": 0, "catalogue": {kind: [draft[kind][k] for k in sorted(draft[kind])] for kind in ENTITIES}}

    def version_record(self, version: int) -> dict[str, Any]:
        """A stored (published or candidate) version's record; 404 naming ``version`` when there is none."""
        try:
            return self.store.load_version(version)
        except UnknownVersion:
            raise NotFound(f"rule-set version {version} does not exist", {"version": ["unknown version"]}) from None

    def published(self) -> dict[str, Any] | None:
        """The served version's record and catalogue (``None`` before the first publish)."""
        return self.store.load_current()

    def versions(self) -> dict[str, Any]:
        history, candidates = self.stored_versions()
        return {"current": self.store.current_version(), "versions": history, "candidates": candidates}

    def stored_versions(self) -> tuple[builtins.list[dict[str, Any]], builtins.list[dict[str, Any]]]:
        """The published versions' records and the candidates, oldest first, with ISO 8601 times (one read)."""
        history, candidates = self.store.history_and_candidates()
        return [self._record(r) for r in history], [_with_iso_time(c, "frozen_at") for c in candidates]

    def candidates(self) -> builtins.list[dict[str, Any]]:
        """The versions frozen from the draft, oldest first, each ``frozen_at`` as ISO 8601 UTC (one read)."""
        return [_with_iso_time(c, "frozen_at") for c in self.store.candidates()]

    @staticmethod
    def _record(record: Mapping[str, Any]) -> dict[str, Any]:
        """A version's history record as answered: ``published_at`` as ISO 8601 UTC."""
        return _with_iso_time(record, "published_at")

    def load(
        self, catalogue: Mapping[str, builtins.list[dict[str, Any]]], actor: str, publish: bool = False
    ) -> dict[str, Any]:
        """Replace the draft with a whole catalogue (shape-validated by the caller), guard-checked first."""
        secrets: dict[str, str] = {}
        body: dict[str, builtins.list[dict[str, Any]]] = {}
        for kind in ENTITIES:
            body[kind] = []
            for given in catalogue.get(kind) or []:
                entity = dict(given)
                if kind == "partners" and entity.get("signing_secret"):
                    secrets[entity["partner_id"]] = entity.pop("signing_secret")
                body[kind].append(canonical(kind, entity))
        self._check({kind: {self._id(kind, e): e for e in body[kind]} for kind in ENTITIES}, refusing="this catalogue")
        revision, _ = self.store.read_draft()
        try:
            self.store.load_catalogue(body, secrets, actor=actor, expected_revision=revision)
        except ConcurrentChange:
            raise Conflict("the draft changed during the load; try again") from None
        result = {kind: len(body[kind]) for kind in ENTITIES}
        if publish:
            published = self.publish(actor, note="catalog load")
            result["version"] = published["version"]
            result["published"] = published["published"]
        return result

    def audit(self, count: int = 100) -> builtins.list[dict[str, Any]]:
        """The newest ``count`` audit records, newest first, each ``at`` as ISO 8601 UTC."""
        return [_with_iso_time(record, "at") for record in self.store.audit(count)]

    @staticmethod
    def _id(kind: str, entity: Mapping[str, Any]) -> str:
        return entity[ENTITIES[kind][1]]


