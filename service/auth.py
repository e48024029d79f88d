"""Optional API keys: the ``x-api-key`` header, as langgraph-sdk sends it.

When ``API_KEYS`` is set, every route except the public ones (``/ok``, ``/ready``,
``/metrics``: handlers marked ``opt={"public": True}``) requires one of the keys. Keys are
compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from service.errors import Unauthorized

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def api_key_guard(keys: Sequence[str]) -> Guard:
    encoded = [k.encode() for k in keys]

    # A coroutine: Litestar would run a plain function in a worker thread on every request.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
        if not encoded or handler.opt.get("public"):
            return
        given = connection.headers.get("x-api-key", "").encode()
        # Compare with every key, always, so timing reveals neither which key nor how much matched.
        matched = False
        for key in encoded:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise Unauthorized("a valid x-api-key header is required")

    return guard
