"""Assistants: one per configured graph (search, get, get_graph, get_schemas)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import get, post

from service.app_types import ResourcesT
from service.errors import Unprocessable
from service.graphs import GraphEntry, resolve
from service.logging import get_logger

log = get_logger("service.assistants")

_CREATED = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).isoformat()


def assistant_json(entry: GraphEntry) -> dict[str, Any]:
    return {
        "assistant_id": entry.assistant_id, "graph_id": entry.graph_id, "name": entry.graph_id,
        "description": None, "config": {}, "context": {}, "metadata": {"created_by": "system"},
        "version": 1, "created_at": _CREATED, "updated_at": _CREATED,
    }


class AssistantSearch(msgspec.Struct, kw_only=True):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = 10
    offset: int = 0
    sort_by: str | None = None
    sort_order: str | None = None
    select: list[str] | None = None


def _matching(graphs: dict[str, GraphEntry], query: AssistantSearch) -> list[dict[str, Any]]:
    out = []
    for entry in graphs.values():
        body = assistant_json(entry)
        if query.graph_id and entry.graph_id != query.graph_id:
            continue
        if query.name and query.name not in entry.graph_id:
            continue
        if query.metadata and any(body["metadata"].get(k) != v for k, v in query.metadata.items()):
            continue
        out.append(body)
    return out


@post("/assistants/search", status_code=200)
async def search_assistants(data: AssistantSearch, resources: ResourcesT) -> list[dict[str, Any]]:
    if data.limit < 0 or data.offset < 0:
        raise Unprocessable("limit and offset must not be negative")
    return _matching(resources.graphs, data)[data.offset:data.offset + data.limit]


@post("/assistants/count", status_code=200)
async def count_assistants(data: AssistantSearch, resources: ResourcesT) -> int:
    return len(_matching(resources.graphs, data))


@get("/assistants/{assistant_id:str}")
async def get_assistant(assistant_id: str, resources: ResourcesT) -> dict[str, Any]:
    return assistant_json(resolve(resources.graphs, assistant_id))


@get("/assistants/{assistant_id:str}/graph")
async def get_assistant_graph(assistant_id: str, resources: ResourcesT, xray: bool | int = False) -> dict[str, Any]:
    entry = resolve(resources.graphs, assistant_id)
    drawable = entry.graph.get_graph(xray=xray)
    return drawable.to_json()


@get("/assistants/{assistant_id:str}/schemas")
async def get_assistant_schemas(assistant_id: str, resources: ResourcesT) -> dict[str, Any]:
    entry = resolve(resources.graphs, assistant_id)
    graph = entry.graph
    return {
        "graph_id": entry.graph_id,
        "input_schema": _schema(entry, graph.get_input_jsonschema),
        "output_schema": _schema(entry, graph.get_output_jsonschema),
        "state_schema": _schema(entry, graph.get_output_jsonschema),
        "config_schema": _schema(entry, graph.get_config_jsonschema),
        "context_schema": _schema(entry, graph.get_context_jsonschema),
    }


def _schema(entry: GraphEntry, make: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    """A graph whose state types pydantic cannot describe still serves; that schema is null."""
    try:
        return make()
    except Exception as exc:
        log.warning("graph_schema_unavailable", graph=entry.graph_id, schema=make.__name__,
                    error=str(exc).splitlines()[0][:200])
        return None


ROUTES = [search_assistants, count_assistants, get_assistant, get_assistant_graph, get_assistant_schemas]
