"""The console's blueprint: session and CSRF set-up, page errors as HTML, security headers."""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from fractions import Fraction

import redis
from flask import Blueprint, Flask, g, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from ..domain.economics import round_half_up
from ..services.errors import ServiceError
from ..reports.finance import percent, yuan
from . import auth
from .wiring import console_services

log = logging.getLogger(__name__)

console = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
csrf = CSRFProtect()

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'"
)


@console.before_request
def _check_csrf():
    """Every state-changing request of the console carries the session's CSRF token."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


@console.after_request
def _headers(response):
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
        if request.method == "GET" and request.headers.get("HX-Request") and response.status_code == 200:
            # htmx followed a redirect or loaded a page in place: show its address in the location bar
            response.headers.setdefault("HX-Push-Url", request.full_path.rstrip("?"))
    return response


@console.app_template_filter("yuan")
def _yuan(fen):
    return yuan(fen)


@console.app_template_filter("percent")
def _percent(bps):
    return percent(bps)


@console.app_template_filter("micro_fen")
def _micro_fen(micro: int | None) -> str:
    """Micro-fen as fen with two decimals, rounded half-up: 136080000 → ``136.08``."""
    if micro is None:
        return "–"
    hundredths = round_half_up(Fraction(int(micro), 10_000))
    whole, rest = divmod(abs(hundredths), 100)
    return f"{'-' if hundredths < 0 else ''}{whole:,}.{rest:02d}"


@console.app_template_filter("timestamp")
def _timestamp(value) -> str:
    """A time as the services give it (ISO 8601, an aware datetime, or epoch seconds) shown to the second in UTC."""
    if value in (None, ""):
        return "–"
    if isinstance(value, datetime):
        moment = value.astimezone(timezone.utc)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
    else:
        moment = datetime.fromtimestamp(float(value), tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@console.context_processor
def _viewer():
    return {"viewer": g.get("viewer"), "role_names": auth.ROLE_NAMES}


def _error_page(status: int, title: str, message: str, errors=None):
    return render_template("console/error.html", status=status, title=title, message=message, errors=errors or {}), status


@console.errorhandler(CSRFError)
def _csrf_refused(exc: CSRFError):
    return _error_page(403, "Refused", f"This form was refused: {exc.description} Reload the page and try again.")


@console.errorhandler(ServiceError)
def _service_error(exc: ServiceError):
    return _error_page(exc.status, "Not done", exc.message, exc.errors)


@console.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    titles = {403: "Not for this role", 404: "Not found", 405: "Not allowed"}
    return _error_page(exc.code or 500, titles.get(exc.code or 500, exc.name), exc.description or exc.name)


@console.errorhandler(redis.RedisError)
def _storage_down(exc: redis.RedisError):
    log.warning("Redis unavailable: %s", exc)
    page, status = _error_page(503, "Storage unavailable", "The store cannot be reached right now; retry shortly.")
    return page, status, {"Retry-After": "1"}


@console.errorhandler(Exception)
def _unexpected(exc: Exception):
    log.exception("unhandled error in the console")
    return _error_page(500, "Something went wrong", "The page could not be shown; the error is logged.")


def install(app: Flask) -> None:
    from . import views_catalogue, views_common, views_evidence, views_finance  # noqa: F401  (routes register on import)

    settings = console_services(app).settings
    app.secret_key = auth.session_secret(settings.secret_key)
    auth.configure(app, settings.console_session_hours, settings.is_production)
    csrf.init_app(app)
    app.register_blueprint(console)
