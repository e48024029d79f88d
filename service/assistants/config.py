"""How an assistant's config and context are written, and how they enter its runs.

The LangGraph Server's rules, kept here in one place:

* an assistant (and a run) sets ``config.configurable`` or ``context``, not both (400); whichever
  is set is mirrored into the other, so graphs reading either see the same values;
* a run's config is the assistant's config with the request's on top (``configurable`` merged
  key by key), and its metadata starts from the assistant's;
* a run's context is the assistant's context with the request's on top; keys that the graph's
  context schema does not declare are dropped, and a run always passes a context (``{}`` when
  nothing is set), so a dataclass or pydantic context schema gets its defaults;
* a thread created by a run carries ``graph_id`` and ``assistant_id`` in its metadata (clients
  such as agent-chat-ui list threads by assistant id), then the config's and the run's metadata.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any

from service.assistants.store import Assistant, AssistantStore, parse_id
from service.errors import BadRequest, NotFound, Unprocessable
from service.graphs import GraphEntry

BOTH_SET = ("Cannot specify both configurable and context. Prefer setting context alone. Context was "
            "introduced in LangGraph 0.6.0 and is the long term planned replacement for configurable.")


def check_config(config: dict[str, Any] | None, where: str = "config") -> None:
    """The shape the spec's ``Config`` gives: tags (strings), recursion_limit (integer), configurable (object)."""
    if not config:
        return
    tags = config.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise Unprocessable(f"{where}.tags must be a list of strings")
    limit = config.get("recursion_limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        raise Unprocessable(f"{where}.recursion_limit must be an integer")
    for key in ("configurable", "metadata"):
        value = config.get(key)
        if value is not None and not isinstance(value, dict):
            raise Unprocessable(f"{where}.{key} must be an object")


def reconcile(config: dict[str, Any] | None, context: dict[str, Any] | None
              ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """An assistant's config and context kept in step: (config, context), context None when unset."""
    config = copy.deepcopy(config or {})
    context = copy.deepcopy(context) if context is not None else None
    check_config(config)
    if config.get("configurable") and context:
        raise BadRequest(BOTH_SET)
    if config.get("configurable"):
        context = dict(config["configurable"])
    elif context:
        config["configurable"] = dict(context)
    return config, context


# Per context schema type (a graph factory may build a new graph per run; the types stay few).
_CONTEXT_KEYS: dict[Any, frozenset[str] | None] = {}


def context_keys(graph: Any) -> frozenset[str] | None:
    """The keys the graph's context schema declares (None: no schema, or one without properties)."""
    schema_type = getattr(graph, "context_schema", None)
    if schema_type is None:
        return None
    try:
        return _CONTEXT_KEYS[schema_type]
    except (KeyError, TypeError):
        pass
    keys: frozenset[str] | None = None
    try:
        properties = (graph.get_context_jsonschema() or {}).get("properties")
        keys = frozenset(properties) if properties else None
    except Exception:  # a schema pydantic cannot describe: keep every key, as the LangGraph Server does
        keys = None
    with contextlib.suppress(TypeError):  # not hashable: computed each time
        _CONTEXT_KEYS[schema_type] = keys
    return keys


def merge_run_config(assistant: Assistant, request_config: dict[str, Any] | None,
                     request_context: dict[str, Any] | None, graph: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config and context a run of ``assistant`` passes to ``graph`` (before the run's own ids are added)."""
    check_config(request_config)
    config = copy.deepcopy(request_config or {})
    context = copy.deepcopy(request_context or {})
    configurable = dict(config.get("configurable") or {})
    if configurable and context:
        raise BadRequest(BOTH_SET)
    provided = bool(context)
    if provided:
        configurable = dict(context)
    else:
        context = dict(configurable)
    own = copy.deepcopy(assistant.config)
    merged: dict[str, Any] = {**own, **config}
    merged["configurable"] = {**(own.get("configurable") or {}), **configurable}
    merged["metadata"] = {**copy.deepcopy(assistant.metadata), **(config.get("metadata") or {})}
    context = {**copy.deepcopy(assistant.context), **context}
    keys = context_keys(graph)
    if keys is not None and context:
        dropped = set(context) - keys
        if provided:  # mirrored into configurable above: drop them there too
            for key in dropped:
                if merged["configurable"].get(key) == context[key]:
                    merged["configurable"].pop(key, None)
        context = {k: v for k, v in context.items() if k in keys}
    return merged, context


def thread_metadata(assistant: Assistant, config: dict[str, Any] | None = None,
                    metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metadata of a thread that a run of ``assistant`` creates."""
    return {"graph_id": assistant.graph_id, "assistant_id": assistant.assistant_id,
            **((config or {}).get("metadata") or {}), **(metadata or {})}


async def resolve_assistant(store: AssistantStore, graphs: dict[str, GraphEntry],
                            assistant_id: str) -> tuple[Assistant, GraphEntry]:
    """The assistant a run names (its UUID, or a graph id for that graph's system assistant) and its graph.

    A run naming something that is neither answers 404, as on the LangGraph Server.
    """
    assistant = await store.get(parse_id(assistant_id, graphs))
    return assistant, _entry(graphs, assistant, assistant_id)


async def assistant_for_run(store: AssistantStore, graphs: dict[str, GraphEntry], assistant_id: str,
                            fresh: bool = False) -> tuple[Assistant, GraphEntry, str | None]:
    """As :func:`resolve_assistant`, with the revision of the row it was read at (None: no check
    needed), and from the store's memory unless ``fresh`` (``AssistantStore.for_run``)."""
    assistant, revision = await store.for_run(parse_id(assistant_id, graphs), fresh)
    return assistant, _entry(graphs, assistant, assistant_id), revision


def _entry(graphs: dict[str, GraphEntry], assistant: Assistant, assistant_id: str) -> GraphEntry:
    entry = graphs.get(assistant.graph_id)
    if entry is None:
        raise NotFound(f"assistant {assistant_id} not found")
    return entry
