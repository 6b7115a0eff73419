"""HTTP: flask-smorest blueprints and marshmallow schemas, one module per audience."""
from __future__ import annotations

from flask_smorest import Blueprint


def blueprints() -> list[Blueprint]:
    """Every blueprint of the API, in the order the OpenAPI document lists them."""
    from . import admin, app_api, experiments, finance, funnel, ops, partner_gateway

    return [
        *admin.blueprints(),
        *experiments.blueprints(),
        *app_api.blueprints(),
        *ops.blueprints(),
        *funnel.blueprints(),
        *finance.blueprints(),
        *partner_gateway.blueprints(),
    ]
