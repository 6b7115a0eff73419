"""Settings: ``config/default.toml`` + ``config/<WALLET_MARKET_ENV>.toml`` + ``WALLET_MARKET_*``.

Read once at start-up into one frozen :class:`Settings`; a bad value stops
start-up with a :class:`SettingsError` naming the key, and so does a
``WALLET_MARKET_*`` variable that names no setting (a typo must not go
unnoticed). Production refuses to start without its secret from the
environment, and without ``WALLET_MARKET_REDIS_URL`` unless the embedded Redis
is asked for by name. Nothing here runs at import time.
"""
from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Mapping, TypeAlias

ENV_PREFIX = "WALLET_MARKET_"
ENVIRONMENTS = ("development", "testing", "production")
DEV_SECRET = "dev-only-secret-change-me"
# Settings that hold secrets: in production they may come only from the environment.
SECRET_KEYS = ("secret_key",)
# Variables read directly (not settings): where the configuration lives, the test suite's Redis,
# a postback secret handed to ``wallet-market postback-secret``.
OTHER_VARIABLES = frozenset(ENV_PREFIX + name for name in ("CONFIG_DIR", "TEST_REDIS_URL", "POSTBACK_SECRET"))


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the key."""


def _spec(
    default: Any,
    *,
    choices: tuple[str, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    help: str = "",
) -> Any:
    return field(default=default, metadata={"choices": choices, "min": min, "max": max, "help": help})


@dataclass(frozen=True)
class Settings:
    env: str = _spec("development", choices=ENVIRONMENTS)
    redis_url: str | None = _spec(None, help="redis://, rediss:// or redis+cluster://; unset: embedded Redis")
    allow_embedded_redis: bool = _spec(False, help="production only: run on the embedded Redis when redis_url is unset")
    embedded_redis_path: str = _spec("var/wallet_market.db", help="data file of the embedded Redis, under the working directory")
    key_prefix: str = _spec("wm")
    secret_key: str = _spec(DEV_SECRET, help="signs user tokens and impression tokens")
    user_token_ttl_seconds: int = _spec(3600, min=60, max=30 * 86400)
    impression_token_ttl_seconds: int = _spec(86400, min=60, max=90 * 86400)
    placement_view: str = _spec("group", choices=("group", "platform"))
    apr_cap_bps: int = _spec(2400, min=0, max=2400, help="all-in APR cap; never above 24%")
    decline_cooldown_days: int = _spec(90, min=0, max=3650)
    demo_catalogue: str = _spec("config/demo_catalogue.toml")
    snapshot_poll_seconds: float = _spec(5.0, min=0, max=3600, help="fallback poll when a publish message is missed")
    rate_limit_per_minute: int = _spec(60000, min=0, help="requests per minute per API key; 0: no limit")
    api_key_outage_grace_seconds: int = _spec(
        300, min=0, max=3600, help="while Redis is unreachable, accept a key verified this recently"
    )
    max_request_bytes: int = _spec(1_048_576, min=1024, max=64 * 1_048_576, help="largest request body; larger is a 413")
    metrics_require_key: bool = _spec(False, help="true: /metrics needs an API key of role internal")
    log_level: str = _spec("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    console_session_hours: float = _spec(8.0, min=0.01, max=24 * 30, help="how long a console sign-in lasts")
    # funnel tracking
    max_event_batch: int = _spec(500, min=1, max=10000)
    postback_replay_window_seconds: int = _spec(300, min=1, max=3600)
    suppression_cooldown_days: int = _spec(30, min=0, max=3650)
    prior_strength: int = _spec(200, min=0, help="pseudo-impressions the catalogue prior is worth")
    exploration_bps: int = _spec(200, min=0, max=10000, help="probability per slot of showing one of its best alternatives")
    exploration_top_k: int = _spec(3, min=1, max=20, help="the alternatives an explored slot picks among")
    learning_refresh_seconds: float = _spec(30.0, min=0.1, max=86400)
    learning_half_life_days: int = _spec(
        30, min=0, max=3650, help="days after which observed funnel counts weigh half; 0: no decay"
    )
    # evidence: the analysis log, experiments and off-policy evaluation
    analysis_dir: str = _spec("var/analysis", help="where the worker exports decisions and outcomes as Parquet")
    analysis_export_seconds: float = _spec(5.0, min=0.1, max=3600, help="how often the worker exports")
    # partner gateway
    prescreen_ttl_new_seconds: int = _spec(3600, min=1)
    prescreen_ttl_existing_seconds: int = _spec(30 * 86400, min=1)
    joint_login_ttl_seconds: int = _spec(60, min=5, max=600)
    partner_rate_limit_per_minute: int = _spec(
        6000, min=1, help="signed calls (postbacks, joint-login exchanges) per partner per clock minute"
    )
    breaker_fail_max: int = _spec(5, min=1)
    breaker_reset_seconds: int = _spec(30, min=1)

    @property
    def is_production(self) -> bool:
        return self.env == "production"


def find_config_dir() -> Path:
    """``WALLET_MARKET_CONFIG_DIR``, else ``./config``, else the ``config/`` beside the package."""
    explicit = os.environ.get(ENV_PREFIX + "CONFIG_DIR")
    if explicit:
        return Path(explicit)
    here = Path.cwd() / "config"
    if (here / "default.toml").exists():
        return here
    return Path(__file__).resolve().parent.parent / "config"


def _coerce(name: str, raw: Any, type_hint: str) -> Any:
    optional = "None" in type_hint
    if raw is None or (optional and isinstance(raw, str) and raw == ""):
        if optional:
            return None
        raise SettingsError(f"setting {name!r}: a value is required")
    base = type_hint.replace(" | None", "").strip()
    try:
        if base == "int":
            if isinstance(raw, bool):
                raise ValueError
            return int(raw)
        if base == "float":
            return float(raw)
        if base == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return str(raw)
    except (TypeError, ValueError):
        raise SettingsError(f"setting {name!r}: expected {base}, got {raw!r}") from None


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path.name}: {exc}") from None


# One layer of settings, as ``(key, raw value, where it came from)`` triples.
Layer: TypeAlias = Iterator[tuple[str, Any, str]]


def load_settings(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    config_dir: Path | None = None,
) -> Settings:
    """Build and validate the settings; raise :class:`SettingsError` naming the bad key."""
    environ = os.environ if environ is None else environ
    overrides = overrides or {}
    config_dir = config_dir or find_config_dir()
    known = {f.name: f for f in fields(Settings)}
    env_name = _env_name(environ, overrides)
    values, sources = _merge_layers(
        _file_layer(config_dir / "default.toml", known),
        _file_layer(config_dir / f"{env_name}.toml", known),
        _environment_layer(environ, known),
        _overrides_layer(overrides, known),
    )
    values["env"] = env_name
    settings = Settings(**{key: _checked(known[key], raw) for key, raw in values.items()})
    _validate(settings, sources)
    return settings


def _env_name(environ: Mapping[str, str], overrides: Mapping[str, Any]) -> str:
    """The environment named by the overrides or ``WALLET_MARKET_ENV`` (default ``development``)."""
    env_name = overrides.get("env") or environ.get(ENV_PREFIX + "ENV") or "development"
    if env_name not in ENVIRONMENTS:
        raise SettingsError(f"setting 'env': {env_name!r} is not one of {', '.join(ENVIRONMENTS)}")
    return env_name


def _file_layer(path: Path, known: Mapping[str, Field[Any]]) -> Layer:
    """The settings of one TOML file (none when it does not exist); a key not known is refused."""
    for key, raw in _read_toml(path).items():
        if key not in known:
            raise SettingsError(f"setting {key!r} in {path.name} is not a known setting")
        yield key, raw, path.name


def _environment_layer(environ: Mapping[str, str], known: Mapping[str, Field[Any]]) -> Layer:
    """The ``WALLET_MARKET_<KEY>`` variables; one that names no setting (nor a variable read
    elsewhere) is refused, with the closest known names."""
    for env_key, raw in environ.items():
        if not env_key.startswith(ENV_PREFIX) or env_key in OTHER_VARIABLES:
            continue
        key = env_key[len(ENV_PREFIX):].lower()
        if key not in known:
            raise SettingsError(_unknown_variable(env_key, known))
        yield key, raw, "environment"


def _unknown_variable(variable: str, known: Mapping[str, Field[Any]]) -> str:
    names = sorted([ENV_PREFIX + name.upper() for name in known] + list(OTHER_VARIABLES))
    close = difflib.get_close_matches(variable, names, n=2, cutoff=0.75)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; known variables: {', '.join(names)}"
    return f"environment variable {variable} is not a known setting{hint}"


def _overrides_layer(overrides: Mapping[str, Any], known: Mapping[str, Field[Any]]) -> Layer:
    """The caller's overrides; a key not known is refused."""
    for key, raw in overrides.items():
        if key not in known:
            raise SettingsError(f"setting {key!r} is not a known setting")
        yield key, raw, "overrides"


def _merge_layers(*layers: Layer) -> tuple[dict[str, Any], dict[str, str]]:
    """The raw value of every key from the last layer that sets it, and the name of that layer."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        for key, raw, source in layer:
            values[key] = raw
            sources[key] = source
    return values, sources


def _checked(spec: Field[Any], raw: Any) -> Any:
    """``raw`` coerced to the setting's declared type and checked against its choices and bounds."""
    key = spec.name
    value = _coerce(key, raw, str(spec.type))
    meta = spec.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise SettingsError(f"setting {key!r}: {value!r} is not one of {', '.join(meta['choices'])}")
    if value is not None and meta.get("min") is not None and value < meta["min"]:
        raise SettingsError(f"setting {key!r}: {value!r} is below the minimum {meta['min']}")
    if value is not None and meta.get("max") is not None and value > meta["max"]:
        raise SettingsError(f"setting {key!r}: {value!r} is above the maximum {meta['max']}")
    return value


def _validate(settings: Settings, sources: Mapping[str, str]) -> None:
    """The checks across settings: production's secrets and Redis, the Redis URL's scheme."""
    if settings.is_production:
        for key in SECRET_KEYS:
            if sources.get(key) not in ("environment", "overrides"):
                raise SettingsError(f"setting {key!r}: in production it must come from {ENV_PREFIX}{key.upper()}")
        if settings.secret_key == DEV_SECRET or len(settings.secret_key) < 32:
            raise SettingsError("setting 'secret_key': production needs a random secret of 32 characters or more")
        if not settings.redis_url and not settings.allow_embedded_redis:
            raise SettingsError(
                f"setting 'redis_url': production needs {ENV_PREFIX}REDIS_URL "
                f"(or {ENV_PREFIX}ALLOW_EMBEDDED_REDIS=true to run on the embedded Redis)"
            )
    if settings.redis_url and not settings.redis_url.startswith(("redis://", "rediss://", "unix://", "redis+cluster://")):
        raise SettingsError(f"setting 'redis_url': {settings.redis_url!r} is not a redis://, rediss:// or unix:// URL")
