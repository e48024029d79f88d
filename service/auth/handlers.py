"""A ``langgraph_sdk.Auth`` object: loaded from ``auth.path``, called as the LangGraph Server calls it.

``authenticate`` gets, by the names of its parameters, what the LangGraph Server passes:
``authorization`` (the header), ``headers`` (bytes to bytes), ``path``, ``method``,
``query_params``, ``path_params``, ``scope`` and ``request``. It returns a user (a string, a dict
or object with ``identity``) and optionally permissions, or raises ``Auth.exceptions.HTTPException``.
The ``on`` handler for a resource and action is the most specific one registered: (resource,
action), (resource, ``*``), (``*``, action), (``*``, ``*``), then the global ``@auth.on``. It may
change the value (metadata on create, a store namespace) and return None/True (allowed), False
(403) or a filter (service.auth.filters).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from langgraph_sdk import Auth

from service.errors import ServiceError
from service.settings import ConfigError

SUPPORTED = ("request", "path", "method", "path_params", "query_params", "headers", "authorization", "scope")


class Denied(ServiceError):
    """An auth handler's answer: 401, 403 or another status it chose, with its detail."""

    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.headers = dict(headers) if headers else None
        self.title = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}.get(status, "Error")


class AuthUser(Mapping[str, Any]):
    """The authenticated user: attributes and mapping access, as the LangGraph Server's ProxyUser."""

    def __init__(self, data: Mapping[str, Any], original: Any = None) -> None:
        self._data = dict(data)
        self._original = original

    @property
    def identity(self) -> str:
        return str(self._data["identity"])

    @property
    def is_authenticated(self) -> bool:
        return bool(self._data.get("is_authenticated", True))

    @property
    def display_name(self) -> str:
        return str(self._data.get("display_name") or self.identity)

    @property
    def permissions(self) -> list[str]:
        return list(self._data.get("permissions") or [])

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("_data", {})
        if name in data:
            return data[name]
        original = self.__dict__.get("_original")
        if original is not None and not isinstance(original, Mapping | str):
            return getattr(original, name)
        raise AttributeError(name)

    def __getitem__(self, key: str) -> Any:
        return self.dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.dict())

    def __len__(self) -> int:
        return len(self.dict())

    def dict(self) -> dict[str, Any]:
        return {**self._data, "identity": self.identity, "is_authenticated": self.is_authenticated,
                "display_name": self.display_name}

    def __repr__(self) -> str:
        return f"AuthUser(identity={self.identity!r})"


def user_data(user: Any) -> dict[str, Any]:
    """Whatever ``authenticate`` returned as a user, as a dict with ``identity``."""
    if isinstance(user, str):
        return {"identity": user}
    if isinstance(user, Mapping):
        if "identity" not in user:
            raise ValueError("the user returned by authenticate has no identity")
        return dict(user)
    if not hasattr(user, "identity"):
        raise ValueError("the user returned by authenticate has no identity")
    dump = getattr(user, "model_dump", None) or getattr(user, "dict", None)
    data: dict[str, Any] = dict(dump()) if callable(dump) else {}
    data.setdefault("identity", user.identity)
    for name in ("display_name", "is_authenticated", "permissions"):
        if name not in data and hasattr(user, name):
            data[name] = getattr(user, name)
    return data


def normalize(result: Any) -> tuple[list[str], AuthUser]:
    """``authenticate``'s answer as (permissions, user), as the LangGraph Server reads it."""
    if isinstance(result, tuple):
        if len(result) != 2:
            raise ValueError("authenticate returned a tuple that is not (permissions, user)")
        permissions, user = result
    elif isinstance(result, Mapping) and "permissions" in result:
        permissions, user = result["permissions"], result
    elif hasattr(result, "permissions") and not isinstance(result, Mapping | str):
        permissions, user = result.permissions, result
    else:
        permissions, user = [], result
    return [str(p) for p in permissions or []], AuthUser(user_data(user), user)


def load(path: str, source: str) -> Auth:
    """The ``Auth`` object at ``path``: ``/abs/file.py:name`` or ``pkg.module:name``."""
    if ":" not in path:
        raise ConfigError(f"{source}: auth.path must be 'file.py:name' or 'module:name', got {path!r}")
    module_name, attr = path.rsplit(":", 1)
    try:
        if "/" in module_name or module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise ConfigError(f"{source}: auth.path: no file {module_name}")
            name = f"langgraph_auth_{abs(hash(str(file)))}"
            spec = importlib.util.spec_from_file_location(name, file)
            if spec is None or spec.loader is None:
                raise ConfigError(f"{source}: auth.path: cannot load {module_name}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as exc:  # the user's module: any error it raises is a configuration error
        raise ConfigError(f"{source}: auth.path {path!r} does not import: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") from None
    obj = getattr(module, attr, None)
    if not isinstance(obj, Auth):
        raise ConfigError(f"{source}: auth.path {path!r} is not a langgraph_sdk.Auth object")
    if obj._authenticate_handler is None:
        raise ConfigError(f"{source}: auth.path {path!r} has no @auth.authenticate handler")
    parameters(obj._authenticate_handler, source)
    return obj


def parameters(fn: Any, source: str) -> set[str]:
    names = set()
    for name, p in inspect.signature(fn).parameters.items():
        if name in SUPPORTED:
            names.add(name)
        elif p.default is p.empty:
            raise ConfigError(f"{source}: authenticate has an unsupported parameter {name!r}; "
                              f"use any of {', '.join(SUPPORTED)}")
    return names


def arguments(names: set[str], scope: Mapping[str, Any], request: Any) -> dict[str, Any]:
    """What ``authenticate`` asked for, from the ASGI scope (the LangGraph Server's names and types)."""
    raw_headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
    headers = dict(raw_headers)
    args: dict[str, Any] = {}
    if "request" in names:
        args["request"] = request
    if "scope" in names:
        args["scope"] = scope
    if "path" in names:
        args["path"] = scope.get("path", "")
    if "method" in names:
        args["method"] = scope.get("method", "GET")
    if "path_params" in names:
        args["path_params"] = dict(scope.get("path_params") or {})
    if "query_params" in names:
        args["query_params"] = dict(parse_qsl((scope.get("query_string") or b"").decode("latin-1")))
    if "headers" in names:
        args["headers"] = headers
    if "authorization" in names:
        value = headers.get(b"authorization")
        args["authorization"] = value.decode("latin-1") if value is not None else None
    return args


def handler_for(auth: Auth, resource: str, action: str) -> Any:
    for key in ((resource, action), (resource, "*"), ("*", action), ("*", "*")):
        if key in auth._handlers:
            return auth._handlers[key][-1]
    return auth._global_handlers[-1] if auth._global_handlers else None


async def dispatch(auth: Auth, user: AuthUser, permissions: list[str], resource: str, action: str,
                   value: Any) -> dict[str, Any] | None:
    """Run the handler for (resource, action) on ``value``; its filter, or None for no filter."""
    handler = handler_for(auth, resource, action)
    if handler is None:
        return None
    ctx = Auth.types.AuthContext(resource=resource, action=action, user=user,  # type: ignore[arg-type]
                                 permissions=permissions)
    try:
        result = await handler(ctx=ctx, value=value)
    except Auth.exceptions.HTTPException as exc:
        raise Denied(exc.status_code, str(exc.detail or "Forbidden"), exc.headers) from None
    except AssertionError as exc:
        raise Denied(403, str(exc) or "Forbidden") from None
    if result is None or result is True:
        return None
    if result is False:
        raise Denied(403, "Forbidden")
    if not isinstance(result, dict):
        raise ServiceError("the auth handler returned neither a filter, None nor a boolean")
    return result or None


def with_user(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config with its stored user (a dict) as an ``AuthUser``, as graphs get it from the LangGraph Server."""
    configurable = config.get("configurable") or {}
    user = configurable.get("langgraph_auth_user")
    if not isinstance(user, Mapping) or isinstance(user, AuthUser) or "identity" not in user:
        return config
    return {**config, "configurable": {**configurable, "langgraph_auth_user": AuthUser(user)}}
