"""Catalogue files (TOML or JSON) and the demo catalogue.

A catalogue file has four lists, ``partners``, ``products``, ``pages`` and
``rules``, each entity shaped as the admin API takes it. Reading one checks
every entity's shape and names each bad field; the business guards run when
the catalogue administration loads it.
"""
from __future__ import annotations

import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable

import orjson
from marshmallow import Schema, ValidationError

from ..settings import Settings
from ..store.access import ApiKeyStore
from .catalogue_admin import CatalogueAdmin
from .catalogue_schemas import PageSchema, PartnerSchema, ProductSchema, RuleSchema
from .errors import Invalid

KINDS = ("partners", "products", "pages", "rules")
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
DEMO_ROLES = ("app", "pm", "finance", "internal")


class CatalogueFileError(Invalid):
    """A catalogue file that cannot be used; ``errors`` maps ``kind[id]`` to what is wrong."""


def _schemas() -> dict[str, Schema]:
    return {"partners": PartnerSchema(), "products": ProductSchema(), "pages": PageSchema(), "rules": RuleSchema()}


def read_catalogue_file(path: Path) -> dict[str, Any]:
    """Read a catalogue (TOML, or JSON by its ``.json`` suffix) and validate each entity's shape."""
    text = path.read_bytes()
    try:
        # orjson, like the API: no lone surrogates, no NaN, integers beyond 64 bits become floats (refused).
        data = orjson.loads(text) if path.suffix == ".json" else tomllib.loads(text.decode())
    except (orjson.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise CatalogueFileError(f"{path.name} is not valid {kind}", {"_file": [str(exc)]}) from None
    if not isinstance(data, dict):
        raise CatalogueFileError(f"{path.name} is not a catalogue", {"_file": ["expected a table of partners, products, pages and rules"]})
    schemas = _schemas()
    unknown = set(data) - set(schemas)
    if unknown:
        raise CatalogueFileError(f"{path.name}: unknown top-level keys {sorted(unknown)}")
    out: dict[str, Any] = {}
    errors: dict[str, Any] = {}
    for kind, schema in schemas.items():
        out[kind] = []
        for i, entity in enumerate(data.get(kind) or []):
            try:
                loaded = schema.load(entity)
            except ValidationError as exc:
                name = entity.get(schema.fields[next(iter(schema.fields))].name, i) if isinstance(entity, dict) else i
                errors[f"{kind}[{name}]"] = exc.messages
                continue
            out[kind].append(_plain(loaded))
    if errors:
        raise CatalogueFileError(f"{path.name} is not a valid catalogue", errors)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def without_nulls(value: Any) -> Any:
    """``value`` with every ``None`` left out (TOML has no null)."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def demo_catalogue_path(settings: Settings) -> Path:
    """The configured demo catalogue; a relative path that does not exist here is taken beside the package."""
    path = Path(settings.demo_catalogue)
    if not path.is_absolute() and not path.exists():
        path = PACKAGE_ROOT / settings.demo_catalogue
    return path


def load_demo(admin: CatalogueAdmin, settings: Settings) -> int:
    """Load and publish the demo catalogue; returns the published version."""
    result = admin.load(read_catalogue_file(demo_catalogue_path(settings)), actor="system:demo", publish=True)
    return int(result["version"])


def load_demo_if_empty(
    admin: CatalogueAdmin, api_keys: ApiKeyStore, settings: Settings, echo: Callable[[str], None]
) -> bool:
    """On an empty store: load and publish the demo catalogue and print one demo key per role."""
    if admin.store.current_version() != 0:
        return False
    version = load_demo(admin, settings)
    echo(f"Loaded the demo catalogue ({demo_catalogue_path(settings).name}) as rule-set version {version}.")
    if api_keys.count() == 0:
        echo("Demo API keys (shown once):")
        for role in DEMO_ROLES:
            echo(f"  {role:<9} {api_keys.create(role, name=f'demo-{role}')}")
    return True
