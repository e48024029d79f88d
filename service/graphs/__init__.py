"""Graphs loaded from configuration by import path, as ``langgraph.json`` does.

``GRAPHS='{"support": "service.graphs.support:graph"}'``: each value names a module attribute
that is a compiled graph (or a ``StateGraph`` builder, compiled here). Every graph is bound to
the process's one checkpointer and store; each is served as one assistant whose id is the
graph id's UUIDv5, as the LangGraph Server derives it.
"""

from __future__ import annotations

import importlib
import uuid
from dataclasses import dataclass
from typing import Any

from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph

from service.settings import ConfigError

NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


@dataclass(frozen=True)
class GraphEntry:
    graph_id: str
    assistant_id: str
    import_path: str
    graph: CompiledStateGraph[Any, Any, Any, Any]


def assistant_id_for(graph_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE_GRAPH, graph_id))


def load_graphs(spec: dict[str, str], checkpointer: Any, store: Any) -> dict[str, GraphEntry]:
    graphs = {}
    for graph_id, path in spec.items():
        module_name, _, attr = path.partition(":")
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"GRAPHS[{graph_id!r}]: cannot import {path}: {exc}") from None
        if isinstance(obj, StateGraph):
            compiled = obj.compile(checkpointer=checkpointer, store=store)
        elif isinstance(obj, CompiledStateGraph):
            compiled = obj.copy(update={"checkpointer": checkpointer, "store": store})
        else:
            raise ConfigError(f"GRAPHS[{graph_id!r}]: {path} is a {type(obj).__name__}, not a graph")
        graphs[graph_id] = GraphEntry(graph_id, assistant_id_for(graph_id), path, compiled)
    return graphs


def resolve(graphs: dict[str, GraphEntry], assistant_id: str) -> GraphEntry:
    """Find a graph by graph id or by assistant id."""
    from service.errors import NotFound

    if assistant_id in graphs:
        return graphs[assistant_id]
    for entry in graphs.values():
        if entry.assistant_id == assistant_id:
            return entry
    raise NotFound(f"assistant {assistant_id} not found")
