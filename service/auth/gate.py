"""Who is asking, decided once per request before any handler; what they may do, asked per operation.

The guard runs on every route except the public ones (``/ok``, ``/ready``, ``/metrics``:
``opt={"public": True}``). A valid ``x-api-key`` (``API_KEYS``) makes the caller the operator, a
service-to-service client that no auth handler filters. Otherwise, with an ``Auth`` configured
(``auth.path`` or the built-in JWT), its ``authenticate`` handler must accept the request: 401 or
403 (problem+json) when it does not, and the handler is never reached. The principal lives in a
context variable for the rest of the request; :func:`authorize` runs the ``on`` handler for an
operation and returns the filter the storage applies in SQL.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langgraph_sdk import Auth
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from service.auth.apikeys import key_matches
from service.auth.handlers import AuthUser, Denied, arguments, dispatch, normalize, parameters
from service.errors import Unauthorized
from service.logging import get_logger

log = get_logger("service.auth")


@dataclass(frozen=True)
class Principal:
    """The caller: a user of ``auth`` (with permissions), or the operator (``user`` None)."""

    auth: Auth | None = None
    user: AuthUser | None = None
    permissions: list[str] = field(default_factory=list)


OPERATOR = Principal()
_CURRENT: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("langgraph_principal", default=None)


def current() -> Principal | None:
    return _CURRENT.get()


def use(principal: Principal | None) -> contextvars.Token[Principal | None]:
    return _CURRENT.set(principal)


class Gate:
    """The guard: API keys, then the ``Auth`` object's ``authenticate``."""

    def __init__(self, auth: Auth | None, api_keys: Sequence[str]) -> None:
        self.auth = auth
        self.keys = [k.encode() for k in api_keys]
        fn = auth._authenticate_handler if auth is not None else None
        self._authenticate = fn
        self._names = parameters(fn, "auth") if fn is not None else set()
        self._is_async = inspect.iscoroutinefunction(fn)

    async def __call__(self, connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if handler.opt.get("public"):
            return
        await self.authenticate(connection)

    async def authenticate(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
        """Who the request is (None: an open server), or 401/403; also set for the rest of the request."""
        principal = await self._principal(connection)
        _CURRENT.set(principal)
        return principal

    async def _principal(self, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
        given = connection.headers.get("x-api-key")
        if self.keys and given is not None and key_matches(given.encode(), self.keys):
            return OPERATOR
        if self._authenticate is None or self.auth is None:
            if self.keys:
                raise Unauthorized("a valid x-api-key header is required")
            return None
        args = arguments(self._names, connection.scope, connection)
        try:
            result: Any = self._authenticate(**args)
            if inspect.isawaitable(result):
                result = await result
        except Auth.exceptions.HTTPException as exc:
            status = exc.status_code if exc.status_code in (401, 403) else 403
            raise Denied(status, str(exc.detail or "Unauthorized"), exc.headers) from None
        except Exception as exc:  # e.g. the tutorial's ``assert authorization``: not authenticated, never a 500
            log.warning("authenticate_failed", error=type(exc).__name__)
            raise Denied(401, "authentication failed") from None
        try:
            permissions, user = normalize(result)
        except ValueError as exc:
            log.error("authenticate_invalid_user", error=str(exc))
            raise Denied(403, "Forbidden") from None
        return Principal(self.auth, user, permissions)


async def authorize(resource: str, action: str, value: Any) -> dict[str, Any] | None:
    """The ``on`` handler's filter for this operation (None: no filter); raises 403 when it denies."""
    principal = _CURRENT.get()
    if principal is None or principal.auth is None or principal.user is None:
        return None
    return await dispatch(principal.auth, principal.user, principal.permissions, resource, action, value)


def run_configurable() -> dict[str, Any]:
    """What the LangGraph Server puts in a run's ``configurable`` about its user (none for the operator)."""
    principal = _CURRENT.get()
    if principal is None or principal.user is None:
        return {}
    return {"langgraph_auth_user": principal.user.dict(), "langgraph_auth_user_id": principal.user.identity,
            "langgraph_auth_permissions": list(principal.permissions)}


def restricted() -> bool:
    """True when the caller is a user whose handlers may filter (not the operator, not an open server)."""
    principal = _CURRENT.get()
    return principal is not None and principal.user is not None
