"""The web console at ``/console``: product managers' and finance's pages, served by the service.

Server-rendered Jinja pages enhanced with htmx; every asset (htmx, styles,
the Swagger UI of ``/docs``) is served from this package, never from a CDN.
"""
from __future__ import annotations

# Where flask-smorest's ``/docs`` page loads Swagger UI from: this package's static files.
SWAGGER_UI_URL = "/console/static/vendor/swagger-ui/"


def install(app) -> None:
    """Register the console's blueprint, its session cookie settings and CSRF protection on ``app``."""
    from .blueprint import install as _install

    _install(app)
