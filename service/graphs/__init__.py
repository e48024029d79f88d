"""Graphs loaded from configuration by import path, as ``langgraph.json`` names them.

``GRAPHS='{"support": "service.graphs.support:graph"}'`` (or ``LANGSERVE_GRAPHS``, or ``graphs``
of langgraph.json): each value names a module attribute (``pkg.module:attr``) or an attribute
of a Python file (``/srv/agents/agent.py:attr``). The attribute is a compiled graph, a
``StateGraph`` builder (compiled here), or a graph factory: a function (sync or async, or a
context manager) taking nothing, the run's ``RunnableConfig``, a ``ServerRuntime``, or both,
classified by its signature as the LangGraph Server does. A factory is called for every run
with the run's config; reads (schemas, drawing, state) use the graph it builds at start-up for
the ``assistants.read`` access context.

Every graph is bound to the process's one checkpointer and store; each is served as one
assistant whose id is the graph id's UUIDv5, as the LangGraph Server derives it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import sys
import typing
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.pregel import Pregel
from langgraph_sdk.runtime import ServerRuntime, _ExecutionRuntime, _ReadRuntime

from service.config import ConfigError
from service.config.langgraph_json import is_file_target

NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
# Given a run's config and runtime, the keyword arguments of one factory's call.
FactoryArgs = Callable[[RunnableConfig, Any], dict[str, Any]]


@dataclass(frozen=True)
class GraphSource:
    """What a graph spec names, imported: a graph, or a factory and how to call it."""

    graph_id: str
    import_path: str
    value: Any
    factory_args: FactoryArgs | None = None


@dataclass(frozen=True)
class GraphEntry:
    graph_id: str
    assistant_id: str
    import_path: str
    graph: CompiledStateGraph[Any, Any, Any, Any]
    source: GraphSource | None = None
    checkpointer: Any = None
    store: Any = None

    @property
    def is_factory(self) -> bool:
        return self.source is not None and self.source.factory_args is not None

    @contextlib.asynccontextmanager
    async def for_run(self, config: RunnableConfig | dict[str, Any], context: Any = None) -> AsyncIterator[Any]:
        """The graph to execute one run: the factory's, built for this run's config, or the one graph."""
        if self.source is None or self.source.factory_args is None:
            yield self.graph
            return
        # The run's user (service.auth puts it in the configurable, as the LangGraph Server does).
        user = (config.get("configurable") or {}).get("langgraph_auth_user")
        runtime = _ExecutionRuntime(access_context="threads.create_run", store=self.store, context=context,
                                    user=user)
        async with _built(self.source, RunnableConfig(**config), runtime) as graph:  # type: ignore[typeddict-item]
            yield _bind(graph, self.graph_id, self.checkpointer, self.store)


def assistant_id_for(graph_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE_GRAPH, graph_id))


def _import_module(graph_id: str, target: str) -> Any:
    if not is_file_target(target):
        return importlib.import_module(target)
    path = Path(target)
    if not path.is_file():
        raise ConfigError(f"graph {graph_id!r}: no such file {target}")
    name = "langgraph_file_" + "".join(c if c.isalnum() else "_" for c in str(path.resolve()))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"graph {graph_id!r}: cannot load {target} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def import_object(what: str, path: str) -> Any:
    """The attribute a ``module:attr`` or ``file.py:attr`` path names; failures are one-line ConfigErrors."""
    target, _, attr = path.rpartition(":")
    try:
        module = _import_module(what, target)
        return getattr(module, attr)
    except ConfigError:
        raise
    except AttributeError:
        raise ConfigError(f"{what}: {target} has no attribute {attr!r}") from None
    except SyntaxError as exc:
        raise ConfigError(f"{what}: cannot import {path}: {exc.msg} ({exc.filename}:{exc.lineno})") from None
    except Exception as exc:
        first = (str(exc).splitlines() or [""])[0][:300]
        raise ConfigError(f"{what}: cannot import {path}: {type(exc).__name__}: {first}") from None


def _is_runtime(annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty:
        return False
    if annotation is ServerRuntime:
        return True
    if isinstance(annotation, type):
        return issubclass(annotation, _ExecutionRuntime | _ReadRuntime)
    if isinstance(annotation, str):
        return annotation.split("[")[0].strip() in ("ServerRuntime", "langgraph_sdk.runtime.ServerRuntime")
    origin = typing.get_origin(annotation)
    if origin is ServerRuntime:
        return True
    args = typing.get_args(annotation)
    return bool(origin is not None and args and _is_runtime(args[0]))


def classify_factory(graph_id: str, fn: Callable[..., Any]) -> FactoryArgs:
    """How to call a factory, from its signature (the four shapes the LangGraph Server accepts)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        raise ConfigError(f"graph {graph_id!r}: cannot read the signature of the factory {fn!r}") from None
    try:
        hints = typing.get_type_hints(fn, localns={"ServerRuntime": ServerRuntime, "RunnableConfig": RunnableConfig})
    except Exception:
        hints = {}

    def is_runtime(p: inspect.Parameter) -> bool:
        return _is_runtime(hints.get(p.name, p.annotation))

    if not params:
        return lambda config, runtime: {}
    if len(params) == 1:
        name = params[0].name
        if is_runtime(params[0]):
            return lambda config, runtime: {name: runtime}
        return lambda config, runtime: {name: config}
    if len(params) == 2:
        runtimes = [p for p in params if is_runtime(p)]
        if len(runtimes) != 1:
            raise ConfigError(f"graph {graph_id!r}: a two-argument factory takes a RunnableConfig and a "
                              "ServerRuntime (annotate the runtime one)")
        rt_name = runtimes[0].name
        cfg_name = next(p.name for p in params if p.name != rt_name)
        return lambda config, runtime: {rt_name: runtime, cfg_name: config}
    raise ConfigError(f"graph {graph_id!r}: a factory takes at most 2 arguments (config, runtime), "
                      f"got {len(params)}")


def import_graphs(spec: dict[str, str]) -> dict[str, GraphSource]:
    """Import every configured graph (at start-up, before serving); a bad one is a ConfigError."""
    sources = {}
    for graph_id, path in spec.items():
        obj = import_object(f"graph {graph_id!r}", path)
        if isinstance(obj, StateGraph | Pregel):
            sources[graph_id] = GraphSource(graph_id, path, obj)
        elif callable(obj):
            sources[graph_id] = GraphSource(graph_id, path, obj, classify_factory(graph_id, obj))
        else:
            raise ConfigError(f"graph {graph_id!r}: {path} is a {type(obj).__name__}, not a graph or a graph factory")
    return sources


@contextlib.asynccontextmanager
async def _built(source: GraphSource, config: RunnableConfig, runtime: Any) -> AsyncIterator[Any]:
    assert source.factory_args is not None
    value = source.value(**source.factory_args(config, runtime))
    if inspect.isawaitable(value):
        value = await value
    if hasattr(value, "__aenter__"):
        async with value as graph:
            yield graph
    elif hasattr(value, "__enter__") and not isinstance(value, Pregel):
        with value as graph:
            yield graph
    else:
        yield value


def _bind(obj: Any, graph_id: str, checkpointer: Any, store: Any) -> CompiledStateGraph[Any, Any, Any, Any]:
    if isinstance(obj, StateGraph):
        obj = obj.compile()
    if not isinstance(obj, Pregel):
        raise ConfigError(f"graph {graph_id!r}: the factory returned a {type(obj).__name__}, not a graph")
    update: dict[str, Any] = {"checkpointer": checkpointer, "store": store}
    if obj.name == "LangGraph":
        update["name"] = graph_id
    return obj.copy(update=update)  # type: ignore[return-value]


async def bind_graphs(sources: dict[str, GraphSource], checkpointer: Any, store: Any) -> dict[str, GraphEntry]:
    """Bind each graph to the process's checkpointer and store; factories build their read graph."""
    graphs = {}
    for graph_id, source in sources.items():
        if source.factory_args is None:
            compiled = _bind(source.value, graph_id, checkpointer, store)
        else:
            runtime: _ReadRuntime[Any] = _ReadRuntime(access_context="assistants.read", store=store)
            try:
                async with _built(source, RunnableConfig(configurable={}), runtime) as built:
                    compiled = _bind(built, graph_id, checkpointer, store)
            except ConfigError:
                raise
            except Exception as exc:
                first = (str(exc).splitlines() or [""])[0][:300]
                raise ConfigError(f"graph {graph_id!r}: the factory {source.import_path} failed: "
                                  f"{type(exc).__name__}: {first}") from None
        graphs[graph_id] = GraphEntry(graph_id, assistant_id_for(graph_id), source.import_path, compiled, source,
                                      checkpointer, store)
    return graphs


async def load_graphs(spec: dict[str, str], checkpointer: Any, store: Any) -> dict[str, GraphEntry]:
    return await bind_graphs(import_graphs(spec), checkpointer, store)


def resolve(graphs: dict[str, GraphEntry], assistant_id: str) -> GraphEntry:
    """Find a graph by graph id or by assistant id."""
    from service.errors import NotFound

    if assistant_id in graphs:
        return graphs[assistant_id]
    for entry in graphs.values():
        if entry.assistant_id == assistant_id:
            return entry
    raise NotFound(f"assistant {assistant_id} not found")
