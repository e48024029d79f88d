"""structlog set-up shared by the service and the migration job.

JSON lines on stdout unless stdout is a terminal; the standard library's loggers (uvicorn,
psycopg, psycopg.pool) go through the same processors, so every line has one shape.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from service.db import redact, scrub

_SECRET_KEYS = ("dsn", "database_url", "url", "conninfo")


def _redact_secrets(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Last line of defence: passwords in any field (a DSN, or one inside a message) are redacted."""
    for key, value in event_dict.items():
        if key.lower() == "password":
            event_dict[key] = "***"
        elif isinstance(value, str) and ("://" in value or "password" in value.lower()):
            event_dict[key] = redact(value) if key.lower() in _SECRET_KEYS else scrub(value)
    return event_dict


def configure(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog and the standard library's logging; safe to call more than once."""
    if json is None:
        json = not sys.stdout.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info if json else structlog.dev.set_exc_info,
        _redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        # filter_by_level first: a call below LOG_LEVEL returns before any processor runs.
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "psycopg", "psycopg.pool"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
