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


def _parse(path: Path) -> Any:
    """The file's data; a file that cannot be read or parsed is one :class:`CatalogueFileError` saying where."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise CatalogueFileError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CatalogueFileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if path.suffix == ".json":
        try:
            # orjson, like the API: no lone surrogates, no NaN, no integers beyond 64 bits.
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise CatalogueFileError(f"{path}: not valid JSON: {exc.msg} (at line {exc.lineno}, column {exc.colno})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
        raise CatalogueFileError(f"{path}: not valid TOML: {exc}") from None


def _shape_problems(data: Any, schemas: dict[str, Schema]) -> list[str]:
    """What keeps ``data`` from being four lists of tables, as phrases."""
    if not isinstance(data, dict):
        return ["the file must hold the lists partners, products, pages and rules"]
    problems = []
    unknown = set(data) - set(schemas)
    if unknown:
        problems.append(f"unknown top-level keys {sorted(unknown)} (expected {', '.join(schemas)})")
    for kind in schemas:
        value = data.get(kind)
        if value is None:
            continue
        if not isinstance(value, list):
            problems.append(f"{kind} must be a list of tables ([[{kind}]] in TOML), not {type(value).__name__}")
            continue
        problems.extend(f"{kind}[{i}] must be a table" for i, item in enumerate(value) if not isinstance(item, dict))
    return problems


def read_catalogue_file(path: Path) -> dict[str, Any]:
    """Read a catalogue (TOML, or JSON by its ``.json`` suffix) and validate each entity's shape."""
    data = _parse(path)
    schemas = _schemas()
    problems = _shape_problems(data, schemas)
    if problems:
        raise CatalogueFileError(f"{path.name}: {'; '.join(problems)}")
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
