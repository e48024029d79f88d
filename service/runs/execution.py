"""Executing one run of a graph: the request body, the graph's config, the stream, the outcome.

Both ways a run reaches a graph use this module: the PostgreSQL run queue's workers
(:mod:`service.runs.worker`) and the in-process runs of ``CHECKPOINTER=memory``
(:mod:`service.runs.local`). It knows nothing of where the run came from or where its events go:
it calls ``emit(event, payload)`` for every stream event and returns an :class:`Outcome`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import msgspec
from langchain_core.messages import (
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    ToolMessageChunk,
    convert_to_messages,
    message_chunk_to_message,
)
from langgraph.types import Command

from service.errors import Unprocessable
from service.graphs import GraphEntry
from service.serde import to_jsonable
from service.threads import RunStatus, ThreadStatus

STREAM_MODES = {"values", "updates", "messages", "messages-tuple", "custom", "debug", "tasks", "checkpoints",
                "events"}
# The graph's own stream mode for each requested one; "events" is no graph mode (astream_events gives it).
_GRAPH_MODE = {"messages-tuple": "messages"}

Emit = Callable[[str, Any], Awaitable[None]]


class CommandBody(msgspec.Struct, kw_only=True):
    resume: Any = None
    update: Any = None
    goto: Any = None


class RunCreate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The body of every run-creating call (wait, stream, background, batch, crons), as the SDKs send it."""

    assistant_id: str
    input: Any = None
    command: CommandBody | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    stream_mode: str | list[str] = "values"
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    interrupt_before: str | list[str] | None = None
    interrupt_after: str | list[str] | None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    checkpoint_during: bool | None = None
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    on_disconnect: Literal["cancel", "continue"] = "continue"
    on_completion: Literal["delete", "keep"] | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    webhook: str | None = None
    after_seconds: float | None = None
    feedback_keys: list[str] | None = None


def decode_kwargs(kwargs: dict[str, Any]) -> RunCreate:
    """A run's stored kwargs back into its body (they were validated when the run was created)."""
    return msgspec.convert(kwargs, RunCreate)


def encode_kwargs(body: RunCreate) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(body)
    return out


@dataclass
class Outcome:
    run_status: RunStatus
    thread_status: ThreadStatus
    values: dict[str, Any] | None
    interrupts: dict[str, Any] = field(default_factory=dict)
    interrupt_list: list[Any] = field(default_factory=list)
    error: dict[str, Any] | None = None
    # The database failed under the run (not the graph): answered 503, the client may retry.
    unavailable: bool = False

    def wait_body(self) -> Any:
        if self.error is not None:
            return {"__error__": self.error}
        body = dict(self.values or {})
        if self.interrupt_list:
            body["__interrupt__"] = self.interrupt_list
        return body


def requested_modes(body: RunCreate) -> list[str]:
    requested = [body.stream_mode] if isinstance(body.stream_mode, str) else list(body.stream_mode)
    unknown = [m for m in requested if m not in STREAM_MODES]
    if unknown:
        raise Unprocessable(f"unsupported stream_mode {unknown[0]!r}; use one of {sorted(STREAM_MODES)}")
    return requested or ["values"]


def config_for(entry: GraphEntry, body: RunCreate, run_id: str, thread_id: str, assistant_id: str,
               merged: dict[str, Any]) -> dict[str, Any]:
    """The run's config: ``merged`` (the assistant's with the request's) plus the run's own ids."""
    config: dict[str, Any] = dict(merged)
    configurable = dict(config.get("configurable") or {})
    configurable.update(thread_id=thread_id, run_id=run_id, assistant_id=assistant_id, graph_id=entry.graph_id)
    checkpoint = dict(body.checkpoint or {})
    if body.checkpoint_id:
        checkpoint["checkpoint_id"] = body.checkpoint_id
    for key in ("checkpoint_id", "checkpoint_ns"):
        if checkpoint.get(key):
            configurable[key] = checkpoint[key]
    config["configurable"] = configurable
    config["metadata"] = {**(config.get("metadata") or {}), **(body.metadata or {}),
                          "run_id": run_id, "graph_id": entry.graph_id, "assistant_id": assistant_id}
    return config


@dataclass(frozen=True)
class RunTarget:
    """Where a run goes: its thread and ids, and the config and context its assistant merged in."""

    run_id: str
    thread_id: str
    assistant_id: str
    config: dict[str, Any]
    context: dict[str, Any]


async def run_graph(entry: GraphEntry, body: RunCreate, target: RunTarget, emit: Emit | None, *,
                    resume: bool = False) -> Outcome:
    """Execute the graph for one run; ``emit`` gets the requested stream events (None: no stream).

    ``resume``: the run already wrote checkpoints on an earlier attempt (its pod died); it continues
    from the thread's last checkpoint instead of starting over with its input.
    """
    # A graph factory builds this run's graph from its config (and context); others are the one graph.
    config = config_for(entry, body, target.run_id, target.thread_id, target.assistant_id, target.config)
    async with entry.for_run(config, target.context) as graph:
        return await _run(graph, config, body, target, emit, resume)


class _Messages:
    """``stream_mode: "messages"`` as the LangGraph Server streams it (langgraph-api 0.16.7, ``stream.py``).

    Every message chunk of the graph's ``messages`` stream is added to the message of its id; the
    first chunk of an id gives ``messages/metadata`` (``{id: {"metadata": ...}}``), then each gives
    ``messages/partial`` with the message accumulated so far, or ``messages/complete`` when the
    graph streamed a whole message (not a chunk). Payloads are lists of message dicts.
    """

    def __init__(self) -> None:
        self.by_id: dict[str | None, BaseMessage] = {}

    def events(self, chunk: Any) -> list[tuple[str, Any]]:
        raw, meta = chunk
        is_chunk = False
        if isinstance(raw, dict):
            kind, role = str(raw.get("type", "")).lower(), str(raw.get("role", "")).lower()
            if "chunk" in kind or "chunk" in role:
                cls = AIMessageChunk if "ai" in role else ToolMessageChunk if "tool" in role else BaseMessageChunk
                msg: BaseMessage = cls(**raw)
                is_chunk = True
            else:
                msg = convert_to_messages([raw])[0]
        else:
            msg = raw
        out: list[tuple[str, Any]] = []
        if msg.id in self.by_id:
            self.by_id[msg.id] = cast("BaseMessage", self.by_id[msg.id] + msg)  # chunk + chunk: one chunk
        else:
            self.by_id[msg.id] = msg
            out.append(("messages/metadata", {msg.id: {"metadata": to_jsonable(meta)}}))
        # As the LangGraph Server does: a message object's accumulation goes out as a whole message
        # (type "ai", not "AIMessageChunk"); only chunks that came as dicts stay chunks.
        current = self.by_id[msg.id] if is_chunk else message_chunk_to_message(self.by_id[msg.id])
        name = "messages/partial" if isinstance(msg, BaseMessageChunk) else "messages/complete"
        out.append((name, [to_jsonable(current)]))
        return out


async def _run(graph: Any, config: dict[str, Any], body: RunCreate, target: RunTarget, emit: Emit | None,
               resume: bool) -> Outcome:
    thread_id = target.thread_id
    requested = requested_modes(body) if emit is not None else []
    graph_modes = list(dict.fromkeys([_GRAPH_MODE.get(m, m) for m in requested if m != "events"]
                                     + ["values", "updates"]))
    # Both message modes read the graph's "messages" stream; messages-tuple wins, as on the LangGraph Server.
    tuples = "messages-tuple" in requested
    messages = _Messages() if "messages" in requested and not tuples else None
    emit_modes = {_GRAPH_MODE.get(m, m) for m in requested} - {"events"}
    graph_input: Any = body.input
    if resume:
        graph_input = None
    elif body.command is not None:
        graph_input = Command(resume=body.command.resume, update=body.command.update,
                              goto=body.command.goto or ())
    kwargs: dict[str, Any] = {"stream_mode": graph_modes, "subgraphs": body.stream_subgraphs}
    if body.interrupt_before is not None:
        kwargs["interrupt_before"] = body.interrupt_before
    if body.interrupt_after is not None:
        kwargs["interrupt_after"] = body.interrupt_after
    if body.durability is not None:
        kwargs["durability"] = body.durability
    kwargs["context"] = target.context

    values: dict[str, Any] | None = None
    interrupted = False
    interrupt_list: list[Any] = []
    async for item in _chunks(graph, graph_input, config, kwargs, "events" in requested, resume, target, emit):
        if body.stream_subgraphs:
            namespace, mode, chunk = item
        else:
            namespace, (mode, chunk) = (), item
        if not namespace:
            if mode == "values" and isinstance(chunk, dict):
                values = chunk
            elif mode == "updates" and isinstance(chunk, dict) and "__interrupt__" in chunk:
                interrupted = True
                interrupt_list = to_jsonable(list(chunk["__interrupt__"]))
        if emit is None or mode not in emit_modes:
            continue
        if mode == "messages" and messages is not None:
            for event, payload in messages.events(chunk):
                await emit(event, payload)
            continue
        event = mode
        if namespace:
            event = "|".join([event, *namespace])
        await emit(event, to_jsonable(chunk))

    interrupts: dict[str, Any] = {}
    if interrupt_list:
        state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
        interrupts = {t.id: to_jsonable(list(t.interrupts)) for t in state.tasks if t.interrupts}
    if values is None and resume:
        # Resumed after the last step had already been written: the state is the thread's.
        state = await graph.aget_state({"configurable": {"thread_id": thread_id}})
        values = state.values if isinstance(state.values, dict) else None
    json_values = to_jsonable(values) if values is not None else None
    if interrupted:
        return Outcome("interrupted", "interrupted", json_values, interrupts, interrupt_list)
    return Outcome("success", "idle", json_values)


async def _chunks(graph: Any, graph_input: Any, config: dict[str, Any], kwargs: dict[str, Any], events: bool,
                  resume: bool, target: RunTarget, emit: Emit | None) -> AsyncIterator[Any]:
    """The graph's stream items; with ``events``, read from ``astream_events`` (v2) as the LangGraph Server does.

    There the graph's own stream items are the ``on_chain_stream`` events of the run's root (whose
    run id is the run's, a fresh one on a later attempt); every other event goes out as ``events``.
    """
    if not events:
        async for item in graph.astream(graph_input, config, **kwargs):
            yield item
        return
    root = str(uuid.uuid4()) if resume else target.run_id
    async for event in graph.astream_events(graph_input, {**config, "run_id": uuid.UUID(root)}, version="v2",
                                            **kwargs):
        if "langsmith:hidden" in (event.get("tags") or ()):
            continue
        if event["event"] == "on_chain_stream" and str(event["run_id"]) == root:
            yield event["data"]["chunk"]
        elif emit is not None:
            await emit("events", to_jsonable(event))


# The stored error message of a run the database failed under (not the graph); a runs/wait that
# reads the outcome back from the row (the run ran on another pod) answers 503 for it too.
UNAVAILABLE_MESSAGE = "the database became unavailable during the run"


def failure(exc: BaseException, unavailable: bool) -> Outcome:
    message = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
    if unavailable:
        message = UNAVAILABLE_MESSAGE
    return Outcome("error", "error", None, error={"error": type(exc).__name__, "message": message},
                   unavailable=unavailable)
