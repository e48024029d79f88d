"""Store: put (with TTL), get, delete, search (filter, semantic query), list namespaces.

The LangGraph Server's ``/store`` routes over the process's one ``AsyncPostgresStore``, with
the request and response shapes the ``langgraph-sdk`` client's ``client.store`` uses: a GET's
namespace is dot-joined (``?namespace=users.u1``), a missing item reads as ``null``, searches
answer ``{"items": [...]}`` and namespace listings ``{"namespaces": [...]}``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from langgraph.store.base import InvalidNamespaceError
from litestar import Response, delete, get, post, put
from litestar.openapi import ResponseSpec

from service.app_types import ResourcesT
from service.auth.gate import authorize
from service.errors import PROBLEM_JSON, BadRequest, Unprocessable
from service.validation import storable

MAX_LIMIT = 1000


class PutItem(msgspec.Struct, kw_only=True):
    namespace: list[str]
    key: str
    value: dict[str, Any]
    index: bool | list[str] | None = None
    ttl: float | None = None


class DeleteItem(msgspec.Struct, kw_only=True):
    key: str
    namespace: list[str] = msgspec.field(default_factory=list)


class SearchItems(msgspec.Struct, kw_only=True):
    namespace_prefix: list[str] | None = None
    filter: dict[str, Any] | None = None
    limit: int = 10
    offset: int = 0
    query: str | None = None
    refresh_ttl: bool | None = None


class ListNamespaces(msgspec.Struct, kw_only=True):
    prefix: list[str] | None = None
    suffix: list[str] | None = None
    max_depth: int | None = None
    limit: int = 100
    offset: int = 0


def _labels(namespace: list[str] | tuple[str, ...], where: str, *, empty_ok: bool = False) -> tuple[str, ...]:
    if not namespace and not empty_ok:
        raise Unprocessable(f"{where}: a namespace needs at least one label")
    for label in namespace:
        if not label or "." in label:
            raise Unprocessable(f"{where}: label {label!r} must be a non-empty string without periods")
    storable(list(namespace), where)
    return tuple(namespace)


async def _authorized(action: str, value: dict[str, Any], where: str, *, empty_ok: bool = True) -> tuple[str, ...]:
    """Run the store handler (it may rewrite the namespace, or deny); the namespace to use."""
    await authorize("store", action, value)
    return _labels(list(value.get("namespace") or ()), where, empty_ok=empty_ok)


def _page(limit: int, offset: int) -> None:
    if limit < 0 or offset < 0:
        raise Unprocessable("limit and offset must not be negative")
    if limit > MAX_LIMIT:
        raise Unprocessable(f"limit must be at most {MAX_LIMIT}")


def _store_error(exc: Exception) -> Unprocessable:
    return Unprocessable((str(exc).splitlines() or [type(exc).__name__])[0][:300])


@put("/store/items", status_code=204)
async def put_item(data: PutItem, resources: ResourcesT) -> None:
    namespace = _labels(data.namespace, "namespace")
    storable([data.key, data.value], "item")
    if data.index is True:
        raise Unprocessable("index must be false, a list of field paths, or null")
    if data.ttl is not None and data.ttl <= 0:
        raise Unprocessable("ttl must be a positive number of minutes, or null for no expiry")
    value: dict[str, Any] = {"namespace": namespace, "key": data.key, "value": data.value, "index": data.index,
                             "ttl": data.ttl}
    namespace = await _authorized("put", value, "namespace", empty_ok=False)
    index: Any = value["index"]
    try:
        await resources.store.aput(namespace, value["key"], value["value"], index=index, ttl=value["ttl"])
    except (InvalidNamespaceError, NotImplementedError, ValueError) as exc:
        raise _store_error(exc) from None


@get("/store/items", responses={400: ResponseSpec(data_container=dict[str, Any], media_type=PROBLEM_JSON,
                                                  description="No key was given (as the LangGraph Server answers)")})
async def get_item(resources: ResourcesT, key: str | None = None, namespace: list[str] | None = None,
                   refresh_ttl: bool | None = None) -> Response[Any]:
    if not key:
        raise BadRequest("key is required")
    labels = namespace or []
    if len(labels) == 1:  # the SDK joins the labels with periods
        labels = labels[0].split(".") if labels[0] else []
    ns = _labels(labels, "namespace", empty_ok=True)
    storable(key, "key")
    ns = await _authorized("get", {"namespace": ns, "key": key, "refresh_ttl": refresh_ttl}, "namespace")
    try:
        item = await resources.store.aget(ns, key, refresh_ttl=refresh_ttl)
    except (InvalidNamespaceError, ValueError) as exc:
        raise _store_error(exc) from None
    return Response(item.dict() if item is not None else None)


@delete("/store/items", status_code=204)
async def delete_item(data: DeleteItem, resources: ResourcesT) -> None:
    namespace = _labels(data.namespace, "namespace", empty_ok=True)
    storable(data.key, "key")
    namespace = await _authorized("delete", {"namespace": namespace, "key": data.key}, "namespace")
    try:
        await resources.store.adelete(namespace, data.key)
    except (InvalidNamespaceError, ValueError) as exc:
        raise _store_error(exc) from None


@post("/store/items/search", status_code=200)
async def search_items(data: SearchItems, resources: ResourcesT) -> dict[str, Any]:
    _page(data.limit, data.offset)
    prefix = _labels(data.namespace_prefix or [], "namespace_prefix", empty_ok=True)
    storable([data.filter, data.query], "search")
    prefix = await _authorized("search", {"namespace": prefix, "filter": data.filter, "limit": data.limit,
                                          "offset": data.offset, "query": data.query}, "namespace_prefix")
    try:
        items = await resources.store.asearch(prefix, query=data.query, filter=data.filter, limit=data.limit,
                                              offset=data.offset, refresh_ttl=data.refresh_ttl)
    except (InvalidNamespaceError, ValueError, TypeError) as exc:
        raise _store_error(exc) from None
    return {"items": [item.dict() for item in items]}


@post("/store/namespaces", status_code=200)
async def list_namespaces(data: ListNamespaces, resources: ResourcesT) -> dict[str, Any]:
    _page(data.limit, data.offset)
    if data.max_depth is not None and data.max_depth < 1:
        raise Unprocessable("max_depth must be at least 1")
    prefix = _labels(data.prefix, "prefix", empty_ok=True) if data.prefix else None
    suffix = _labels(data.suffix, "suffix", empty_ok=True) if data.suffix else None
    value = {"namespace": prefix or (), "suffix": suffix, "max_depth": data.max_depth, "limit": data.limit,
             "offset": data.offset}
    prefix = await _authorized("list_namespaces", value, "prefix") or None
    namespaces = await resources.store.alist_namespaces(prefix=prefix, suffix=suffix, max_depth=data.max_depth,
                                                        limit=data.limit, offset=data.offset)
    return {"namespaces": [list(ns) for ns in namespaces]}


ROUTES = [put_item, get_item, delete_item, search_items, list_namespaces]
