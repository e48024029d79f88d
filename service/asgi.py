"""The process's ASGI entry: the API, and beside it the user's ``http.app`` (custom routes).

A request goes to the API when one of its routes matches the path (a path the API serves with
another method is still the API's: 405); every other request goes to the custom app when one is
configured, as the LangGraph Server mounts ``http.app`` beside its own routes. The lifespan runs
the API's, then the custom app's (when it speaks the lifespan protocol), and reports a start-up
failure to uvicorn as one line, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from litestar import Litestar
from litestar.connection import ASGIConnection
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.utils import normalize_path

from service.auth.gate import Gate
from service.errors import ServiceError
from service.graphs import import_object


def last_line(text: str) -> str:
    """The exception line of a formatted traceback, without the exception's module path."""
    lines = [line for line in str(text).splitlines() if line.strip(" |+-")]
    if not lines:
        return "start-up failed"
    line = lines[-1].strip()
    head, sep, rest = line.partition(": ")
    if sep and " " not in head and (head.endswith("Error") or head.endswith("Exception")):
        return rest
    return line


class _Lifespan:
    """Drives one ASGI app's lifespan protocol from the outside (startup, then shutdown)."""

    def __init__(self, app: ASGIApp, scope: Any) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.supported = True
        self.task = asyncio.create_task(self._run(app, scope), name="http-app-lifespan")

    async def _run(self, app: ASGIApp, scope: Any) -> None:
        try:
            await app(scope, self.inbox.get, self.outbox.put)  # type: ignore[arg-type]
        except BaseException as exc:  # an app without lifespan support raises on the scope type
            await self.outbox.put({"type": "app.error", "message": f"{type(exc).__name__}: {exc}"})
        else:
            await self.outbox.put({"type": "app.returned"})

    async def step(self, event: str) -> str | None:
        """Send ``lifespan.<event>``; None when it completed (or the app has no lifespan), else the failure."""
        if not self.supported:
            return None
        await self.inbox.put({"type": f"lifespan.{event}"})
        message = await self.outbox.get()
        kind = message["type"]
        if kind == f"lifespan.{event}.complete":
            return None
        if kind in ("app.error", "app.returned") and event == "startup":
            self.supported = False
            return None
        return last_line(message.get("message") or kind)


class ServiceASGI:
    """The API (Litestar) with an optional custom ASGI app for the paths the API does not serve."""

    def __init__(self, api: Litestar, custom: ASGIApp | None = None, gate: Gate | None = None) -> None:
        self.api = api
        self.custom = custom
        # http.enable_custom_route_auth: the custom app's requests pass the API's auth first.
        self.gate = gate

    @property
    def state(self) -> Any:
        return self.api.state

    def serves(self, scope: Scope) -> bool:
        """Whether an API route matches the request's path (any method)."""
        try:
            self.api.asgi_router.handle_routing(path=normalize_path(scope["path"]), method=scope.get("method"))
        except MethodNotAllowedException:
            return True
        except NotFoundException:
            return False
        return True

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif self.custom is not None and scope["type"] in ("http", "websocket") and not self.serves(scope):
            if self.gate is not None and not await self._authenticated(scope, receive, send):
                return
            await self.custom(scope, receive, send)
        else:
            await self.api(scope, receive, send)

    async def _authenticated(self, scope: Any, receive: Receive, send: Any) -> bool:
        """Run the API's auth for a custom route: the user in ``scope["user"]`` (as Starlette names it), or 401/403."""
        assert self.gate is not None
        try:
            principal = await self.gate.authenticate(ASGIConnection(scope, receive, send))
        except ServiceError as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return False
            body = json.dumps({"type": "about:blank", "title": exc.title, "status": exc.status,
                               "detail": exc.detail, "instance": scope.get("path")}).encode()
            headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
                       *((k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items())]
            await send({"type": "http.response.start", "status": exc.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return False
        if principal is not None and principal.user is not None:
            scope["user"], scope["auth"] = principal.user, principal.permissions
        return True

    async def _lifespan(self, scope: Any, receive: Receive, send: Send) -> None:
        custom = _Lifespan(self.custom, scope) if self.custom is not None else None

        async def api_send(message: Any) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete" and custom is not None:
                failure = await custom.step("startup")
                if failure is not None:
                    message = {"type": "lifespan.startup.failed", "message": f"http.app start-up failed: {failure}"}
            elif kind == "lifespan.shutdown.complete" and custom is not None:
                failure = await custom.step("shutdown")
                if failure is not None:
                    message = {"type": "lifespan.shutdown.failed", "message": f"http.app shutdown failed: {failure}"}
            elif kind.endswith(".failed"):
                known = getattr(self.api.state, "startup_error", None)
                message = {**message, "message": known or last_line(message.get("message", ""))}
            await send(message)

        try:
            await self.api(scope, receive, api_send)
        finally:
            if custom is not None and not custom.task.done():
                custom.task.cancel()


def create_asgi(api: Litestar, app_path: str | None, gate: Gate | None = None) -> ServiceASGI:
    """The entry uvicorn serves; a bad ``http.app`` path is a one-line ConfigError. ``gate``: the
    API's auth, run before the custom app too (``http.enable_custom_route_auth``)."""
    custom = import_object("http.app", app_path) if app_path else None
    if custom is not None and not callable(custom):
        from service.config import ConfigError

        raise ConfigError(f"http.app: {app_path} is a {type(custom).__name__}, not an ASGI application")
    return ServiceASGI(api, custom, gate)
