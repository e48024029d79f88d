"""Assistants: create, get, patch, delete, versions, latest, search, count, graph, schemas, subgraphs."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, Literal

import msgspec
from litestar import Response, delete, get, patch, post

from service.app_types import ResourcesT
from service.assistants import Assistant, Change, Filters, introspect
from service.assistants.config import reconcile
from service.assistants.store import FIELDS, parse_id, select_fields
from service.auth.gate import authorize
from service.errors import BAD_REQUEST_RESPONSES, NotFound, Unprocessable
from service.graphs import GraphEntry
from service.threads import Filters as ThreadFilters
from service.validation import storable

MAX_LIMIT = 1000
SortBy = Literal["assistant_id", "created_at", "updated_at", "name", "graph_id"]
SelectField = Literal["assistant_id", "graph_id", "name", "description", "config", "context", "created_at",
                      "updated_at", "metadata", "version"]
assert set(SelectField.__args__) == set(FIELDS)  # type: ignore[attr-defined]


class AssistantCreate(msgspec.Struct, kw_only=True):
    graph_id: str
    assistant_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = None
    description: str | None = None


class AssistantPatch(msgspec.Struct, kw_only=True):
    graph_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None


class AssistantSearch(msgspec.Struct, kw_only=True):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = 10
    offset: int = 0
    sort_by: SortBy | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[SelectField] | None = None


class AssistantCount(msgspec.Struct, kw_only=True):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None


class VersionsSearch(msgspec.Struct, kw_only=True):
    metadata: dict[str, Any] | None = None
    limit: int = 10
    offset: int = 0


class VersionChange(msgspec.Struct, kw_only=True):
    version: int | None = None


def _graph(resources: ResourcesT, graph_id: str) -> GraphEntry:
    entry: GraphEntry | None = resources.graphs.get(graph_id)
    if entry is None:
        raise NotFound(f"graph {graph_id[:100]!r} not found; expected one of {sorted(resources.graphs)}")
    return entry


def _id(resources: ResourcesT, assistant_id: str) -> str:
    return parse_id(assistant_id, resources.graphs)


def _page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise Unprocessable(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise Unprocessable("offset must not be negative")


async def _filters(resources: ResourcesT, data: AssistantSearch | AssistantCount) -> Filters:
    storable([data.metadata, data.graph_id, data.name], "filter")
    if data.graph_id is not None:
        _graph(resources, data.graph_id)
    value: dict[str, Any] = {"graph_id": data.graph_id, "metadata": dict(data.metadata or {})}
    if isinstance(data, AssistantSearch):
        value.update(limit=data.limit, offset=data.offset)
    auth = await authorize("assistants", "search", value)
    return Filters(graph_id=data.graph_id, name=data.name, metadata=data.metadata, auth=auth)


async def visible(resources: ResourcesT, assistant_id: str, action: str = "read") -> Assistant:
    """The assistant, if the caller's auth handler lets them ``action`` it; 404 as if absent otherwise."""
    key = _id(resources, assistant_id)
    auth = await authorize("assistants", action, {"assistant_id": key})
    return await resources.assistants.get(key, auth)


@post("/assistants", status_code=200, responses=BAD_REQUEST_RESPONSES)
async def create_assistant(data: AssistantCreate, resources: ResourcesT) -> dict[str, Any]:
    storable([data.graph_id, data.assistant_id, data.config, data.context, data.metadata, data.name,
              data.description], "assistant")
    assistant_id = str(uuid.uuid4()) if data.assistant_id is None else _uuid(data.assistant_id)
    config, context = reconcile(data.config, data.context)
    _graph(resources, data.graph_id)
    value: dict[str, Any] = {"assistant_id": assistant_id, "graph_id": data.graph_id, "config": config,
                             "context": context, "metadata": dict(data.metadata or {}), "if_exists": data.if_exists,
                             "name": data.name or "Untitled"}
    await authorize("assistants", "create", value)
    assistant = Assistant(assistant_id=assistant_id, graph_id=data.graph_id, name=data.name or "Untitled",
                          description=data.description, config=config, context=context or {},
                          metadata=dict(value.get("metadata") or {}))
    read = await authorize("assistants", "read", {"assistant_id": assistant_id}) if data.if_exists == "do_nothing" \
        else None
    return (await resources.assistants.create(assistant, data.if_exists, read)).to_json()


def _uuid(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise Unprocessable("assistant_id must be a UUID") from None


@post("/assistants/search", status_code=200)
async def search_assistants(data: AssistantSearch, resources: ResourcesT) -> Response[list[dict[str, Any]]]:
    _page(data.limit, data.offset)
    found, more = await resources.assistants.search(await _filters(resources, data), data.limit, data.offset,
                                                    data.sort_by, data.sort_order)
    if more:
        headers = {"X-Pagination-Total": str(data.offset + data.limit + 1),
                   "X-Pagination-Next": str(data.offset + data.limit)}
    else:
        headers = {"X-Pagination-Total": str(data.offset + len(found))}
    return Response([select_fields(a.to_json(), data.select) for a in found], headers=headers)


@post("/assistants/count", status_code=200)
async def count_assistants(data: AssistantCount, resources: ResourcesT) -> int:
    return await resources.assistants.count(await _filters(resources, data))


@get("/assistants/{assistant_id:str}")
async def get_assistant(assistant_id: str, resources: ResourcesT) -> dict[str, Any]:
    return (await visible(resources, assistant_id)).to_json()


@patch("/assistants/{assistant_id:str}", responses=BAD_REQUEST_RESPONSES)
async def patch_assistant(assistant_id: str, data: AssistantPatch, resources: ResourcesT) -> dict[str, Any]:
    key = _id(resources, assistant_id)
    storable([data.graph_id, data.config, data.context, data.metadata, data.name, data.description], "assistant")
    config, context = reconcile(data.config, data.context)
    if data.graph_id is not None:
        _graph(resources, data.graph_id)
    value: dict[str, Any] = {"assistant_id": key, "graph_id": data.graph_id, "config": config, "context": context,
                             "metadata": dict(data.metadata or {}), "name": data.name}
    auth = await authorize("assistants", "update", value)
    change = Change(graph_id=data.graph_id, config=config, context=context,
                    metadata=value.get("metadata") if data.metadata is not None or value.get("metadata") else None,
                    name=data.name, description=data.description)
    return (await resources.assistants.patch(key, change, auth)).to_json()


@delete("/assistants/{assistant_id:str}", status_code=204)
async def delete_assistant(assistant_id: str, resources: ResourcesT, delete_threads: bool = False) -> None:
    """Delete the assistant and its versions; with ``delete_threads``, its threads (metadata.assistant_id) too."""
    key = _id(resources, assistant_id)
    auth = await authorize("assistants", "delete", {"assistant_id": key})
    await resources.assistants.get(key, auth)  # 404 before any thread goes
    if delete_threads:  # the caller's own threads of it only (those their auth handler lets them delete)
        gone = await authorize("threads", "delete", {"assistant_id": key})
        mine = ThreadFilters(metadata={"assistant_id": key}, auth=gone)
        while batch := await resources.threads.search(mine, 100, 0, "created_at", "asc"):
            for thread in batch:
                with contextlib.suppress(NotFound):  # deleted meanwhile
                    await resources.threads.delete(thread["thread_id"], gone)  # 409 when a run holds one
    await resources.assistants.delete(key, auth)


@post("/assistants/{assistant_id:str}/versions", status_code=200)
async def assistant_versions(assistant_id: str, resources: ResourcesT,
                             data: VersionsSearch | None = None) -> list[dict[str, Any]]:
    query = data or VersionsSearch()
    _page(query.limit, query.offset)
    storable(query.metadata, "metadata")
    key = (await visible(resources, assistant_id)).assistant_id
    found = await resources.assistants.versions(key, query.metadata, query.limit, query.offset)
    if not found:
        raise NotFound(f"assistant {assistant_id} not found")
    return [a.to_json() for a in found]


@post("/assistants/{assistant_id:str}/latest", status_code=200)
async def set_latest_version(assistant_id: str, resources: ResourcesT, data: VersionChange | None = None,
                             version: int | None = None) -> dict[str, Any]:
    """The version comes in the body (as the SDKs send it) or the query (as the spec documents it)."""
    chosen = data.version if data is not None and data.version is not None else version
    if chosen is None:
        raise Unprocessable("version is required")
    key = _id(resources, assistant_id)
    auth = await authorize("assistants", "update", {"assistant_id": key, "version": chosen})
    return (await resources.assistants.set_latest(key, chosen, auth)).to_json()


async def _entry(resources: ResourcesT, assistant_id: str) -> tuple[Assistant, GraphEntry]:
    assistant = await visible(resources, assistant_id)
    return assistant, _graph(resources, assistant.graph_id)


@get("/assistants/{assistant_id:str}/graph")
async def get_assistant_graph(assistant_id: str, resources: ResourcesT, xray: str | None = None) -> dict[str, Any]:
    depth = introspect.parse_xray(xray)
    _, entry = await _entry(resources, assistant_id)
    return await introspect.drawable(entry.graph, depth)


@get("/assistants/{assistant_id:str}/schemas")
async def get_assistant_schemas(assistant_id: str, resources: ResourcesT) -> dict[str, Any]:
    assistant, entry = await _entry(resources, assistant_id)
    return {"graph_id": assistant.graph_id, **introspect.schemas(entry.graph)}


@get("/assistants/{assistant_id:str}/subgraphs")
async def get_assistant_subgraphs(assistant_id: str, resources: ResourcesT, recurse: bool = False) -> dict[str, Any]:
    _, entry = await _entry(resources, assistant_id)
    return await introspect.subgraphs(entry.graph, None, recurse)


@get("/assistants/{assistant_id:str}/subgraphs/{namespace:str}")
async def get_assistant_subgraphs_at(assistant_id: str, namespace: str, resources: ResourcesT,
                                     recurse: bool = False) -> dict[str, Any]:
    storable(namespace, "namespace")
    _, entry = await _entry(resources, assistant_id)
    return await introspect.subgraphs(entry.graph, namespace, recurse)


ROUTES = [create_assistant, search_assistants, count_assistants, get_assistant, patch_assistant, delete_assistant,
          assistant_versions, set_latest_version, get_assistant_graph, get_assistant_schemas, get_assistant_subgraphs,
          get_assistant_subgraphs_at]
