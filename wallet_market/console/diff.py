"""What the draft changes against the published rule set, entity by entity and field by field."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

KINDS = ("partners", "products", "pages", "rules")
ID_FIELDS = {"partners": "partner_id", "products": "product_id", "pages": "page_id", "rules": "rule_id"}


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any


@dataclass
class EntityChange:
    kind: str
    entity_id: str
    status: str  # added | removed | changed
    changes: list[FieldChange] = field(default_factory=list)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a JSON-like value by dotted path; lists of objects are keyed by their ``*_id``."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping) and value:
        for key, inner in value.items():
            out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        for index, inner in enumerate(value):
            key = next((inner[k] for k in inner if k.endswith("_id") and isinstance(inner[k], str)), None)
            out.update(flatten(inner, f"{prefix}[{key if key is not None else index}]"))
    else:
        out[prefix] = value
    return out


def entity_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[FieldChange]:
    old, new = flatten(before or {}), flatten(after or {})
    paths = list(dict.fromkeys([*new, *old]))  # in the order of the newer version
    return [FieldChange(p, old.get(p), new.get(p)) for p in paths if old.get(p) != new.get(p)]


def by_id(kind: str, entities: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {e[ID_FIELDS[kind]]: e for e in entities}


def catalogue_diff(published: Mapping[str, Iterable[Mapping]] | None, draft: Mapping[str, Iterable[Mapping]]) -> list[EntityChange]:
    """Every entity the draft adds, removes or changes against ``published`` (``None``: nothing published)."""
    out: list[EntityChange] = []
    for kind in KINDS:
        old = by_id(kind, (published or {}).get(kind) or [])
        new = by_id(kind, draft.get(kind) or [])
        for entity_id in sorted(set(old) | set(new)):
            if entity_id not in old:
                out.append(EntityChange(kind, entity_id, "added", entity_changes(None, new[entity_id])))
            elif entity_id not in new:
                out.append(EntityChange(kind, entity_id, "removed", entity_changes(old[entity_id], None)))
            else:
                changes = entity_changes(old[entity_id], new[entity_id])
                if changes:
                    out.append(EntityChange(kind, entity_id, "changed", changes))
    return out
