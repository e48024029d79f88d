"""What a graph says about itself: drawable graph (``xray``), JSON schemas, subgraphs.

The shapes are the LangGraph Server's: the state schema is built from the graph's stream channels,
the config schema is the ``configurable`` part only (without the keys the server sets itself), and a
schema that pydantic cannot describe is null rather than an error.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from service.errors import Unprocessable
from service.logging import get_logger

log = get_logger("service.assistants")

EXCLUDED_CONFIG_KEYS = ("__pregel_checkpointer", "__pregel_store", "checkpoint_id", "checkpoint_ns", "thread_id")


def parse_xray(raw: str | None) -> bool | int:
    """``xray``: true/false, or a positive depth."""
    if raw is None or raw == "" or raw in ("false", "False"):
        return False
    if raw in ("true", "True"):
        return True
    try:
        depth = int(raw)
    except ValueError:
        raise Unprocessable("xray must be true, false or a positive integer") from None
    if depth <= 0:
        raise Unprocessable("xray must be true, false or a positive integer")
    return depth


async def drawable(graph: Any, xray: bool | int) -> dict[str, Any]:
    try:
        drawn = await graph.aget_graph(xray=xray)
    except NotImplementedError:
        raise Unprocessable("the graph does not support visualization") from None
    body: dict[str, Any] = drawn.to_json()
    for node in body.get("nodes", []):
        if isinstance(data := node.get("data"), dict):
            data.pop("id", None)
    return body


def _state_schema(graph: Any) -> dict[str, Any]:
    from langchain_core.utils.pydantic import create_model

    fields: dict[str, Any] = {}
    for key in graph.stream_channels_list:
        channel = graph.channels[key]
        try:
            create_model(key, __root__=(channel.UpdateType, None)).model_json_schema()
            fields[key] = (channel.UpdateType, None)
        except Exception:
            fields[key] = (Any, None)
    schema: dict[str, Any] = create_model(graph.get_name("State"), **fields).model_json_schema()
    return schema


def _config_schema(graph: Any) -> dict[str, Any]:
    from pydantic import TypeAdapter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = graph.config_schema()
    fields = getattr(model, "model_fields", None)
    if not fields or "configurable" not in fields:
        return {}
    annotation: Any = fields["configurable"].annotation
    schema: dict[str, Any] = TypeAdapter(annotation).json_schema()
    for key in EXCLUDED_CONFIG_KEYS:
        schema.get("properties", {}).pop(key, None)
    config_type = getattr(graph, "config_type", None)
    if config_type is not None and hasattr(config_type, "__name__"):
        schema["title"] = config_type.__name__
    return schema


def _safe(graph: Any, name: str, make: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    try:
        return make()
    except Exception as exc:
        log.warning("graph_schema_unavailable", graph=getattr(graph, "name", None), schema=name,
                    error=str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        return None


def schemas(graph: Any) -> dict[str, Any]:
    return {
        "input_schema": _safe(graph, "input", graph.get_input_jsonschema),
        "output_schema": _safe(graph, "output", graph.get_output_jsonschema),
        "state_schema": _safe(graph, "state", lambda: _state_schema(graph)),
        "config_schema": _safe(graph, "config", lambda: _config_schema(graph)),
        "context_schema": _safe(graph, "context", graph.get_context_jsonschema),
    }


async def subgraphs(graph: Any, namespace: str | None, recurse: bool) -> dict[str, Any]:
    try:
        return {ns: schemas(sub) async for ns, sub in graph.aget_subgraphs(namespace=namespace, recurse=recurse)}
    except NotImplementedError:
        raise Unprocessable("the graph does not support visualization") from None
