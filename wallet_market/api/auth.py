"""Role checks for views: ``@require("pm")`` verifies the bearer API key and its role."""
from __future__ import annotations

from functools import wraps
from typing import TYPE_CHECKING, Any, Callable

from flask import current_app, g, request

if TYPE_CHECKING:
    from ..composition import Components


def components() -> Components:
    """The services of this process (built by the composition root)."""
    return current_app.extensions["wallet_market"]


def require(*roles: str):
    """Allow the view only to API keys of ``roles``: missing or unknown key 401, wrong role 403."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            g.principal = components().access.authenticate(request.headers.get("Authorization"), roles)
            return view(*args, **kwargs)

        wrapper._roles = roles
        return wrapper

    return decorate


def actor() -> str:
    """Who is making this change, for the audit log."""
    principal = g.get("principal")
    return f"{principal.role}:{principal.name}:{principal.key_id}" if principal else "system"


BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
