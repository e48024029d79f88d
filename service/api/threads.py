"""Threads: create, get, update, delete, search, count, state, update_state, history, copy, prune, storage."""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec
import structlog
from langchain_core.runnables import RunnableConfig
from langgraph.errors import EmptyChannelError, InvalidUpdateError
from langgraph.types import StateSnapshot
from litestar import delete, get, patch, post

from service.app_types import ResourcesT
from service.auth.gate import authorize
from service.errors import BAD_REQUEST_RESPONSES, BadRequest, Conflict, NotFound, NotSupported, Unprocessable
from service.graphs import GraphEntry, resolve
from service.serde import to_jsonable
from service.thread_storage import ThreadStorage
from service.threads import Filters, ThreadStatus, ThreadTTL
from service.validation import storable

MAX_LIMIT = 1000
MAX_TTL_MINUTES = 100_000_000  # about 190 years; PostgreSQL's timestamps end in the year 294276
ThreadStatusName = Literal["idle", "busy", "interrupted", "error"]


class TTLBody(msgspec.Struct, kw_only=True):
    """A thread's time to live, as the spec's ``TTL``: ``ttl`` minutes from now, then ``strategy``."""

    strategy: Literal["delete", "keep_latest"] = "delete"
    ttl: float | None = None

    def parsed(self) -> ThreadTTL:
        if self.ttl is None or not math.isfinite(self.ttl) or not 0 <= self.ttl <= MAX_TTL_MINUTES:
            raise Unprocessable(f"ttl.ttl must be a number of minutes from 0 to {MAX_TTL_MINUTES}, got {self.ttl!r}")
        return ThreadTTL(self.strategy, float(self.ttl))


class ThreadCreate(msgspec.Struct, kw_only=True):
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    graph_id: str | None = None
    supersteps: list[Any] | None = None
    ttl: TTLBody | None = None


class ThreadPatch(msgspec.Struct, kw_only=True):
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    ttl: TTLBody | None = None


class ThreadSearch(msgspec.Struct, kw_only=True):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    ids: list[str] | None = None
    status: ThreadStatusName | None = None
    limit: int = 10
    offset: int = 0
    sort_by: Literal["thread_id", "status", "created_at", "updated_at"] = "updated_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[str] | None = None
    extract: dict[str, Any] | None = None


class ThreadCount(msgspec.Struct, kw_only=True):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: ThreadStatusName | None = None


class CheckpointRef(msgspec.Struct, kw_only=True):
    checkpoint_id: str | None = None
    checkpoint_ns: str | None = None
    thread_id: str | None = None
    checkpoint_map: dict[str, Any] | None = None
    # The JS SDK sends a RunnableConfig here (`getHistory(id, {before: {configurable: {checkpoint_id}}})`),
    # which the LangGraph Server reads as the config it is: the same fields, one level down.
    configurable: dict[str, Any] | None = None

    def field(self, name: str) -> str | None:
        value = getattr(self, name) or (self.configurable or {}).get(name)
        if value is not None and not isinstance(value, str):
            raise Unprocessable(f"configurable.{name} must be a string")
        return value


class StateQuery(msgspec.Struct, kw_only=True):
    checkpoint: CheckpointRef | None = None
    subgraphs: bool = False


class StateUpdate(msgspec.Struct, kw_only=True):
    values: Any = None
    as_node: str | None = None
    checkpoint_id: str | None = None
    checkpoint: CheckpointRef | None = None


class HistoryQuery(msgspec.Struct, kw_only=True):
    limit: int = 10
    before: CheckpointRef | str | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None


def _bind(thread_id: str) -> None:
    storable(thread_id, "thread_id")
    structlog.contextvars.bind_contextvars(thread_id=thread_id)


async def visible_thread(resources: ResourcesT, thread_id: str, action: str = "read",
                         value: dict[str, Any] | None = None) -> dict[str, Any]:
    """The thread, if the caller's auth handler lets them ``action`` it; 404 as if absent otherwise."""
    auth = await authorize("threads", action, value if value is not None else {"thread_id": thread_id})
    return await resources.threads.get(thread_id, auth)


def _check_page(limit: int, offset: int = 0) -> None:
    if limit < 0 or offset < 0:
        raise Unprocessable("limit and offset must not be negative")
    if limit > MAX_LIMIT:
        raise Unprocessable(f"limit must be at most {MAX_LIMIT}")


@post("/threads", status_code=200)
async def create_thread(data: ThreadCreate, resources: ResourcesT) -> dict[str, Any]:
    if data.supersteps:
        raise Unprocessable("supersteps are not supported by this server")
    ttl = data.ttl.parsed() if data.ttl is not None else None
    storable(data.metadata, "metadata")
    if data.thread_id is not None:
        storable(data.thread_id, "thread_id")
    value: dict[str, Any] = {"thread_id": data.thread_id, "metadata": dict(data.metadata or {}),
                             "if_exists": data.if_exists, "ttl": None}
    await authorize("threads", "create", value)
    metadata = dict(value.get("metadata") or {})
    if data.graph_id:
        resolve(resources.graphs, data.graph_id)
        metadata["graph_id"] = data.graph_id
    # do_nothing answers an existing thread only when the caller may read it (409 otherwise).
    read = await authorize("threads", "read", {"thread_id": data.thread_id}) if data.if_exists == "do_nothing" else None
    thread = await resources.threads.create(data.thread_id, metadata, data.if_exists, read, ttl=ttl)
    _bind(thread["thread_id"])
    return thread


@get("/threads/{thread_id:str}")
async def get_thread(thread_id: str, resources: ResourcesT, include: str | None = None) -> dict[str, Any]:
    """``include=ttl`` adds the thread's TTL (``strategy``, ``ttl_minutes``, ``expires_at``) when it has one."""
    _bind(thread_id)
    fields = {f.strip() for f in (include or "").split(",")}  # others are ignored, as the LangGraph Server does
    auth = await authorize("threads", "read", {"thread_id": thread_id})
    return await resources.threads.get(thread_id, auth, include_ttl="ttl" in fields)


@patch("/threads/{thread_id:str}")
async def patch_thread(thread_id: str, data: ThreadPatch, resources: ResourcesT) -> dict[str, Any]:
    _bind(thread_id)
    ttl = data.ttl.parsed() if data.ttl is not None else None
    storable(data.metadata, "metadata")
    value: dict[str, Any] = {"thread_id": thread_id, "metadata": dict(data.metadata)}
    auth = await authorize("threads", "update", value)
    return await resources.threads.patch(thread_id, value["metadata"], auth, ttl=ttl)


@delete("/threads/{thread_id:str}", status_code=204)
async def delete_thread(thread_id: str, resources: ResourcesT) -> None:
    """Remove the thread row, its runs, and every checkpoint, blob and write of it."""
    _bind(thread_id)
    await resources.threads.delete(thread_id, await authorize("threads", "delete", {"thread_id": thread_id}))


@post("/threads/search", status_code=200)
async def search_threads(data: ThreadSearch, resources: ResourcesT) -> list[dict[str, Any]]:
    _check_page(data.limit, data.offset)
    storable([data.metadata, data.values, data.ids], "filter")
    auth = await authorize("threads", "search", {"metadata": dict(data.metadata or {}), "values": data.values,
                                                 "status": data.status, "limit": data.limit, "offset": data.offset})
    filters = Filters(metadata=data.metadata, values=data.values, status=data.status, ids=data.ids, auth=auth)
    rows = await resources.threads.search(filters, data.limit, data.offset, data.sort_by, data.sort_order)
    if data.select:
        rows = [{k: v for k, v in row.items() if k in data.select} for row in rows]
    return rows


@post("/threads/count", status_code=200)
async def count_threads(data: ThreadCount, resources: ResourcesT) -> int:
    storable([data.metadata, data.values], "filter")
    auth = await authorize("threads", "search", {"metadata": dict(data.metadata or {}), "values": data.values,
                                                 "status": data.status})
    return await resources.threads.count(Filters(metadata=data.metadata, values=data.values, status=data.status,
                                                 auth=auth))


# -- state ----------------------------------------------------------------------------------------

async def _thread_graph(resources: ResourcesT, thread_id: str,
                        action: str = "read") -> tuple[dict[str, Any], GraphEntry | None]:
    thread = await visible_thread(resources, thread_id, action)
    graph_id = thread["metadata"].get("graph_id")
    if graph_id:
        return thread, resolve(resources.graphs, graph_id)
    if len(resources.graphs) == 1:
        return thread, next(iter(resources.graphs.values()))
    return thread, None


def _checkpoint_json(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config:
        return None
    c = config.get("configurable", {})
    out = {"thread_id": c.get("thread_id"), "checkpoint_ns": c.get("checkpoint_ns", ""),
           "checkpoint_id": c.get("checkpoint_id")}
    if c.get("checkpoint_map") is not None:  # present only when set, as the LangGraph Server answers
        out["checkpoint_map"] = c["checkpoint_map"]
    return out


def _task_checkpoint(state: Any) -> dict[str, Any] | None:
    if isinstance(state, dict) and isinstance(state.get("configurable"), dict):
        return to_jsonable(state["configurable"])  # type: ignore[no-any-return]
    return None


def state_json(snapshot: StateSnapshot) -> dict[str, Any]:
    checkpoint = _checkpoint_json(snapshot.config)  # type: ignore[arg-type]
    parent = _checkpoint_json(snapshot.parent_config)  # type: ignore[arg-type]
    return {
        "values": to_jsonable(snapshot.values),
        "next": list(snapshot.next),
        "tasks": [
            {"id": t.id, "name": t.name, "path": to_jsonable(t.path),
             "error": (t.error if isinstance(t.error, str) else repr(t.error)) if t.error else None,
             "interrupts": to_jsonable(list(t.interrupts)),
             # A subgraph's task: its own checkpoint (subgraphs=false) or its whole state (subgraphs=true).
             "checkpoint": _task_checkpoint(t.state),
             "state": state_json(t.state) if isinstance(t.state, StateSnapshot) else None,
             "result": to_jsonable(t.result)}
            for t in snapshot.tasks
        ],
        "metadata": to_jsonable(snapshot.metadata),
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint,
        "parent_checkpoint": parent,
        "checkpoint_id": checkpoint["checkpoint_id"] if checkpoint else None,
        "parent_checkpoint_id": parent["checkpoint_id"] if parent else None,
        "interrupts": to_jsonable(list(snapshot.interrupts)),
    }


def _empty_state(thread_id: str) -> dict[str, Any]:
    return {"values": {}, "next": [], "tasks": [], "metadata": {}, "created_at": None,
            "checkpoint": {"thread_id": thread_id, "checkpoint_ns": "", "checkpoint_id": None},
            "parent_checkpoint": None, "checkpoint_id": None, "parent_checkpoint_id": None, "interrupts": []}


def _config(thread_id: str, ref: CheckpointRef | None = None, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id}
    if ref is not None:
        if checkpoint_ns := ref.field("checkpoint_ns"):
            configurable["checkpoint_ns"] = checkpoint_ns
        checkpoint_id = checkpoint_id or ref.field("checkpoint_id")
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return RunnableConfig(configurable=configurable)


async def _state(resources: ResourcesT, thread_id: str, ref: CheckpointRef | None, subgraphs: bool,
                 checkpoint_id: str | None = None) -> dict[str, Any]:
    _bind(thread_id)
    _, entry = await _thread_graph(resources, thread_id)
    config = _config(thread_id, ref, checkpoint_id)
    wanted = config.get("configurable", {}).get("checkpoint_id")
    if entry is None:
        if wanted:
            raise NotFound(f"checkpoint {wanted} not found in thread {thread_id}")
        return _empty_state(thread_id)
    snapshot = await entry.graph.aget_state(config, subgraphs=subgraphs)
    if snapshot.created_at is None:
        if wanted:
            raise NotFound(f"checkpoint {wanted} not found in thread {thread_id}")
        return _empty_state(thread_id)
    return state_json(snapshot)


@get("/threads/{thread_id:str}/state")
async def get_state(thread_id: str, resources: ResourcesT, subgraphs: bool = False) -> dict[str, Any]:
    return await _state(resources, thread_id, None, subgraphs)


@get("/threads/{thread_id:str}/state/{checkpoint_id:str}")
async def get_state_at(thread_id: str, checkpoint_id: str, resources: ResourcesT,
                       subgraphs: bool = False) -> dict[str, Any]:
    return await _state(resources, thread_id, None, subgraphs, checkpoint_id)


@post("/threads/{thread_id:str}/state/checkpoint", status_code=200)
async def post_state_at(thread_id: str, data: StateQuery, resources: ResourcesT) -> dict[str, Any]:
    return await _state(resources, thread_id, data.checkpoint, data.subgraphs)


@post("/threads/{thread_id:str}/state", status_code=200, responses=BAD_REQUEST_RESPONSES)
async def update_state(thread_id: str, data: StateUpdate, resources: ResourcesT) -> dict[str, Any]:
    _bind(thread_id)
    thread, entry = await _thread_graph(resources, thread_id, "update")
    if entry is None:  # 400, as the LangGraph Server answers: the operation needs the thread's graph
        raise BadRequest(f"thread {thread_id} has no assigned graph ID: run it first, create it with graph_id, "
                         "or set metadata.graph_id")
    if thread["status"] == "busy":
        raise Conflict(f"thread {thread_id} is busy")
    if data.as_node is not None and data.as_node not in entry.graph.nodes:
        raise Unprocessable(f"as_node {data.as_node!r} is not a node of graph {entry.graph_id}")
    storable(data.values, "values")
    config = _config(thread_id, data.checkpoint, data.checkpoint_id)
    try:
        new_config = await entry.graph.aupdate_state(config, data.values, as_node=data.as_node)
    except (InvalidUpdateError, EmptyChannelError, ValueError, TypeError, KeyError) as exc:
        # LangGraph's word on an update the graph's state cannot take.
        raise Unprocessable(f"values: {str(exc).splitlines()[0][:300] or type(exc).__name__}") from None
    snapshot = await entry.graph.aget_state(_config(thread_id))
    status: ThreadStatus = "interrupted" if snapshot.next else "idle"
    await resources.threads.record_state(thread_id, to_jsonable(snapshot.values), status)
    return {"checkpoint": _checkpoint_json(new_config)}  # type: ignore[arg-type]


async def _history(resources: ResourcesT, thread_id: str, query: HistoryQuery) -> list[dict[str, Any]]:
    _bind(thread_id)
    _check_page(query.limit)
    storable(query.metadata, "metadata")
    _, entry = await _thread_graph(resources, thread_id)
    if entry is None:
        return []
    before = query.before
    before_config: RunnableConfig | None = None
    if isinstance(before, str):
        before_config = _config(thread_id, checkpoint_id=before)
    elif before is not None:
        before_config = _config(thread_id, before)
    config = _config(thread_id, query.checkpoint)
    return [state_json(s) async for s in entry.graph.aget_state_history(
        config, filter=query.metadata, before=before_config, limit=query.limit)]


@post("/threads/{thread_id:str}/history", status_code=200)
async def post_history(thread_id: str, data: HistoryQuery, resources: ResourcesT) -> list[dict[str, Any]]:
    return await _history(resources, thread_id, data)


@get("/threads/{thread_id:str}/history")
async def get_history(thread_id: str, resources: ResourcesT, limit: int = 10,
                      before: str | None = None) -> list[dict[str, Any]]:
    return await _history(resources, thread_id, HistoryQuery(limit=limit, before=before))


# -- whole-thread operations ----------------------------------------------------------------------

class ThreadPrune(msgspec.Struct, kw_only=True):
    thread_ids: list[str]
    strategy: Literal["delete", "keep_latest"] = "delete"


def _storage(resources: ResourcesT, what: str) -> ThreadStorage:
    if resources.pool is None:
        raise NotSupported(f"{what} needs the PostgreSQL checkpointer (CHECKPOINTER=memory keeps no tables)")
    return ThreadStorage(resources.pool)


@post("/threads/{thread_id:str}/copy", status_code=200)
async def copy_thread(thread_id: str, resources: ResourcesT) -> dict[str, Any]:
    """A new thread with this one's metadata, state and every checkpoint (one transaction)."""
    _bind(thread_id)
    storage = _storage(resources, "copying a thread")
    if await resources.threads.access(thread_id, await authorize("threads", "read", {"thread_id": thread_id})) \
            is False:  # another owner's thread answers as a missing one does (409, as the LangGraph Server)
        raise Conflict(f"thread {thread_id} not found: nothing to copy")
    value: dict[str, Any] = {"thread_id": None, "metadata": {}, "if_exists": "raise", "ttl": None}
    restricted = await authorize("threads", "create", value)
    copied = await storage.copy(thread_id)
    if value["metadata"] or restricted:  # the copy belongs to whoever made it (owner metadata of create)
        copied = await resources.threads.patch(copied["thread_id"], value["metadata"])
    return copied


@post("/threads/prune", status_code=200)
async def prune_threads(data: ThreadPrune, resources: ResourcesT) -> dict[str, int]:
    """``delete``: remove the threads (not those a run holds); ``keep_latest``: keep only the latest checkpoint."""
    if len(data.thread_ids) > MAX_LIMIT:
        raise Unprocessable(f"at most {MAX_LIMIT} thread_ids per request")
    storable(data.thread_ids, "thread_ids")
    auth = await authorize("threads", "delete", {"thread_ids": list(data.thread_ids)})
    if auth:  # only the threads the caller may delete are pruned; the others count as absent
        visible = [t for t in dict.fromkeys(data.thread_ids) if await resources.threads.access(t, auth)]
        data = ThreadPrune(thread_ids=visible, strategy=data.strategy)
    if resources.pool is None and data.strategy == "delete":
        pruned = 0
        for thread_id in dict.fromkeys(data.thread_ids):
            try:
                await resources.threads.delete(thread_id)
            except (NotFound, Conflict):
                continue
            pruned += 1
        return {"pruned_count": pruned}
    storage = _storage(resources, "keep_latest pruning")
    return {"pruned_count": await storage.prune(data.thread_ids, data.strategy, resources.checkpointer)}


@get("/threads/{thread_id:str}/storage")
async def get_thread_storage(thread_id: str, resources: ResourcesT) -> dict[str, Any]:
    """Bytes the thread's checkpoints, channel values (per channel) and pending writes occupy, as stored."""
    _bind(thread_id)
    storage = _storage(resources, "thread storage")
    await visible_thread(resources, thread_id)  # 404 for a thread that does not exist (or is not the caller's)
    return await storage.storage(thread_id)


ROUTES = [create_thread, get_thread, patch_thread, delete_thread, search_threads, count_threads, get_state,
          get_state_at, post_state_at, update_state, post_history, get_history, copy_thread, prune_threads,
          get_thread_storage]
