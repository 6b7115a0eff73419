"""Catalogue administration: draft writes, publish, rollback, load and export.

Every write is validated against the guards of DESIGN §6 on the draft as it
would be after the write; an invalid write is refused whole (nothing is kept)
with the offending fields named.
"""
from __future__ import annotations

import builtins
from typing import Any, Mapping

from ..domain import guards
from ..domain.catalogue import Catalogue, Page, Partner, Product, Rule
from ..store.catalogue import CatalogueStore, ConcurrentChange, UnknownVersion
from .errors import Conflict, Invalid, NotFound

ENTITIES: dict[str, tuple[type[Partner | Product | Page | Rule], str]] = {
    "partners": (Partner, "partner_id"),
    "products": (Product, "product_id"),
    "pages": (Page, "page_id"),
    "rules": (Rule, "rule_id"),
}
WRITE_ATTEMPTS = 5


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
        return self._write(kind, data, actor, must_exist=False)

    def update(self, kind: str, entity_id: str, data: Mapping[str, Any], actor: str) -> dict[str, Any]:
        _, id_field = ENTITIES[kind]
        if data.get(id_field, entity_id) != entity_id:
            raise Invalid(f"{id_field} cannot be changed", {id_field: ["must match the id in the path"]})
        return self._write(kind, {**data, id_field: entity_id}, actor, must_exist=True)

    def delete(self, kind: str, entity_id: str, actor: str) -> None:
        for _ in range(WRITE_ATTEMPTS):
            revision, draft = self.store.read_draft()
            if entity_id not in draft[kind]:
                raise NotFound(f"{kind[:-1]} {entity_id!r} does not exist")
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

    def _write(self, kind: str, data: Mapping[str, Any], actor: str, must_exist: bool) -> dict[str, Any]:
        _, id_field = ENTITIES[kind]
        data = dict(data)
        secret = data.pop("signing_secret", None) if kind == "partners" else None
        entity = canonical(kind, data)
        entity_id = entity[id_field]
        for _ in range(WRITE_ATTEMPTS):
            revision, draft = self.store.read_draft()
            exists = entity_id in draft[kind]
            if must_exist and not exists:
                raise NotFound(f"{kind[:-1]} {entity_id!r} does not exist")
            if not must_exist and exists:
                raise Conflict(f"{kind[:-1]} {entity_id!r} already exists", {id_field: ["already exists"]})
            after = {k: dict(v) for k, v in draft.items()}
            after[kind][entity_id] = entity
            self._check(after, refusing=f"this {kind[:-1]}")
            try:
                self.store.write_draft(
                    [(kind, entity_id, entity)],
                    actor=actor,
                    expected_revision=revision,
                    action="update" if exists else "create",
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
        """Freeze the draft as the next immutable version and serve it everywhere."""
        for _ in range(WRITE_ATTEMPTS):
            revision, draft = self.store.read_draft()
            self._check(draft, refusing="to publish the draft")
            body = {kind: [draft[kind][k] for k in sorted(draft[kind])] for kind in ENTITIES}
            try:
                version = self.store.publish(body, actor=actor, expected_revision=revision, note=note)
                return self.store.history()[-1] | {"version": version}
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
                return self.store.history()[-1] | {"version": new_version}
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
            return self.store.candidates()[-1] | {"version": version}
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

    def versions(self) -> dict[str, Any]:
        return {
            "current": self.store.current_version(),
            "versions": self.store.history(),
            "candidates": self.store.candidates(),
        }

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
            result["version"] = self.publish(actor, note="catalog load")["version"]
        return result

    def audit(self, count: int = 100) -> builtins.list[dict[str, Any]]:
        return self.store.audit(count)

    @staticmethod
    def _id(kind: str, entity: Mapping[str, Any]) -> str:
        return entity[ENTITIES[kind][1]]


