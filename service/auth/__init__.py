"""Authentication and authorization: API keys, a ``langgraph_sdk.Auth`` (own handlers or the built-in JWT).

``apikeys``: the service-to-service keys. ``handlers``: loading an ``Auth`` object and calling it
as the LangGraph Server does. ``jwt``: the built-in bearer-token ``Auth``. ``filters``: what the
handlers return, as SQL. ``gate``: the guard and the per-operation ``authorize``.
"""

from __future__ import annotations

from langgraph_sdk import Auth

from service.settings import ConfigError, Settings


def from_settings(settings: Settings) -> Auth | None:
    """The ``Auth`` object the settings name: ``auth.path`` (LANGGRAPH_AUTH), else the built-in JWT, else None."""
    path = (settings.auth or {}).get("path")
    if path is not None and settings.jwt is not None:
        raise ConfigError("auth.path (LANGGRAPH_AUTH) and AUTH_JWT_* are both set; choose one")
    if (path is not None or settings.jwt is not None) and settings.checkpointer == "memory":
        raise ConfigError("auth needs CHECKPOINTER=postgres (its filters are applied in SQL)")
    if path is not None:
        if not isinstance(path, str):
            raise ConfigError("auth.path must be a string 'file.py:name' or 'module:name'")
        from service.auth import handlers

        return handlers.load(path, settings.config_path or "LANGGRAPH_AUTH")
    if settings.jwt is not None:
        from service.auth import jwt

        return jwt.build(settings.jwt)
    return None
