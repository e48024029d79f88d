"""Executing runs: one at a time per thread on every pod, streamed or awaited.

A run is admitted (thread found or created, graph resolved, its turn on the thread taken)
before any response starts, so 404/409/503 are real HTTP statuses even for streams. It then
executes in a task of its own: a client that disconnects does not cut a run short, and on
shutdown the service waits for runs in flight (bounded by the drain timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from langgraph.types import Command

from service import metrics
from service.errors import UNAVAILABLE_ERRORS, Conflict, NotFound, Unprocessable
from service.graphs import GraphEntry, resolve
from service.logging import get_logger
from service.serde import to_jsonable
from service.threads import RunRecord, RunStatus, ThreadStatus, ThreadStore, new_thread_id
from service.validation import storable

log = get_logger("service.runs")

STREAM_MODES = {"values", "updates", "messages-tuple", "custom", "debug", "tasks", "checkpoints"}
_GRAPH_MODE = {"messages-tuple": "messages"}
_EVENT_NAME = {"messages": "messages"}


class CommandBody(msgspec.Struct, kw_only=True):
    resume: Any = None
    update: Any = None
    goto: Any = None


class RunCreate(msgspec.Struct, kw_only=True):
    """The body of runs/wait and runs/stream, as the langgraph-sdk client sends it."""

    assistant_id: str
    input: Any = None
    command: CommandBody | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    stream_mode: str | list[str] = "values"
    stream_subgraphs: bool = False
    interrupt_before: str | list[str] | None = None
    interrupt_after: str | list[str] | None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    on_disconnect: Literal["cancel", "continue"] = "continue"
    on_completion: Literal["delete", "keep"] | None = None
    durability: Literal["sync", "async", "exit"] | None = None


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


@dataclass
class ActiveRun:
    run: RunRecord
    entry: GraphEntry
    temporary: bool
    events: asyncio.Queue[tuple[str, Any] | None]
    task: asyncio.Task[Outcome] | None = None



def _modes(body: RunCreate) -> list[str]:
    requested = [body.stream_mode] if isinstance(body.stream_mode, str) else list(body.stream_mode)
    unknown = [m for m in requested if m not in STREAM_MODES]
    if unknown:
        raise Unprocessable(f"unsupported stream_mode {unknown[0]!r}; use one of {sorted(STREAM_MODES)}")
    return requested or ["values"]


class RunManager:
    """Admits, executes and tracks the runs of this process."""

    def __init__(self, threads: ThreadStore, graphs: dict[str, GraphEntry], *, lease: float,
                 queue_timeout: float) -> None:
        self.threads = threads
        self.graphs = graphs
        self.lease = lease
        self.queue_timeout = queue_timeout
        self.in_flight: set[asyncio.Task[Any]] = set()

    # -- admission ---------------------------------------------------------------------------------
    async def admit(self, thread_id: str | None, body: RunCreate) -> ActiveRun:
        if body.multitask_strategy in ("interrupt", "rollback"):
            raise Unprocessable(f"multitask_strategy {body.multitask_strategy!r} is not supported; "
                                "use 'enqueue' or 'reject'")
        entry = resolve(self.graphs, body.assistant_id)
        _modes(body)  # validate before anything is created
        storable([body.input, body.command and msgspec.structs.asdict(body.command), body.config, body.context,
                  body.metadata], "run")
        if thread_id is not None:
            storable(thread_id, "thread_id")
        temporary = thread_id is None
        create: dict[str, Any] | None = None
        if thread_id is None:
            thread_id, create = new_thread_id(), {"graph_id": entry.graph_id, "temporary": True}
        elif body.if_not_exists == "create":
            create = {"graph_id": entry.graph_id}
        run = RunRecord(run_id=str(uuid.uuid4()), thread_id=thread_id, assistant_id=entry.assistant_id,
                        graph_id=entry.graph_id, metadata=body.metadata or {},
                        multitask_strategy=body.multitask_strategy)
        try:
            waited = await self.threads.begin_run(run, self.lease, self.queue_timeout, create)
        except BaseException as exc:
            if isinstance(exc, Conflict):
                metrics.RUNS.labels(entry.graph_id, "rejected").inc()
            if temporary:
                with contextlib.suppress(Exception):  # best effort; the original error is the answer
                    await asyncio.shield(self._drop_thread(thread_id))
            raise
        metrics.THREAD_LOCK_WAIT.observe(waited)
        return ActiveRun(run, entry, temporary, asyncio.Queue())

    # -- execution ---------------------------------------------------------------------------------
    def start(self, active: ActiveRun, body: RunCreate, *, stream: bool) -> ActiveRun:
        active.task = asyncio.create_task(self._execute(active, body, stream))
        self._track(active.task)
        return active

    async def events(self, active: ActiveRun) -> AsyncIterator[tuple[str, Any]]:
        yield "metadata", {"run_id": active.run.run_id, "attempt": 1}
        while (item := await active.events.get()) is not None:
            yield item

    async def _execute(self, active: ActiveRun, body: RunCreate, stream: bool) -> Outcome:
        run, entry = active.run, active.entry
        graph_id = entry.graph_id
        started = time.monotonic()
        heartbeat = asyncio.create_task(self._heartbeat(run))
        metrics.RUNS_IN_PROGRESS.labels(graph_id).inc()
        outcome = Outcome("error", "error", None)
        try:
            outcome = await self._stream(active, body, stream)
        except asyncio.CancelledError:
            outcome = Outcome("cancelled", "idle", None, error={"error": "Cancelled", "message": "run cancelled"})
            raise
        except Exception as exc:
            unavailable = isinstance(exc, UNAVAILABLE_ERRORS)
            message = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
            if unavailable:
                message = "the database became unavailable during the run"
            outcome = Outcome("error", "error", None, error={"error": type(exc).__name__, "message": message},
                              unavailable=unavailable)
            log.warning("run_failed", run_id=run.run_id, thread_id=run.thread_id, graph=graph_id,
                        error_type=type(exc).__name__, database_unavailable=unavailable)
            if stream:
                await active.events.put(("error", outcome.error))
        finally:
            heartbeat.cancel()
            metrics.RUNS_IN_PROGRESS.labels(graph_id).dec()
            status = {"success": "success", "interrupted": "interrupted", "cancelled": "cancelled"}.get(
                outcome.run_status, "error")
            metrics.RUNS.labels(graph_id, status).inc()
            metrics.RUN_DURATION.labels(graph_id).observe(time.monotonic() - started)
            if not await asyncio.shield(self._finish(active, body, outcome)):
                # The database is away: release the thread once it is back, without making the
                # client wait (the lease frees the thread meanwhile if this pod goes away).
                self._track(asyncio.create_task(self._finish_later(active, body, outcome)))
            await active.events.put(None)
            log.info("run_finished", run_id=run.run_id, thread_id=run.thread_id, graph=graph_id,
                     status=outcome.run_status, seconds=round(time.monotonic() - started, 4))
        return outcome

    async def _finish(self, active: ActiveRun, body: RunCreate, outcome: Outcome) -> bool:
        """Record the run's end and release its thread; False when the database could not be reached."""
        try:
            await self.threads.finish_run(active.run, outcome.run_status, outcome.thread_status, outcome.values,
                                          outcome.interrupts, outcome.error)
            delete = body.on_completion == "delete" or (active.temporary and body.on_completion != "keep")
            if delete:
                await self._drop_thread(active.run.thread_id)
        except Exception as exc:  # the run's result is in the checkpoints; the row catches up later
            log.warning("run_finish_failed", run_id=active.run.run_id, error_type=type(exc).__name__)
            return False
        return True

    async def _finish_later(self, active: ActiveRun, body: RunCreate, outcome: Outcome) -> None:
        deadline = time.monotonic() + 2 * self.lease
        delay = 0.5
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            if await self._finish(active, body, outcome):
                log.info("run_finish_recovered", run_id=active.run.run_id)
                return
            delay = min(5.0, delay * 2)

    def _track(self, task: asyncio.Task[Any]) -> None:
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _drop_thread(self, thread_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self.threads.delete(thread_id)

    async def _heartbeat(self, run: RunRecord) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                if not await self.threads.heartbeat(run.run_id, self.lease):
                    log.warning("run_lease_lost", run_id=run.run_id, thread_id=run.thread_id)
            except Exception as exc:
                log.warning("run_heartbeat_failed", run_id=run.run_id, error_type=type(exc).__name__)

    def config_for(self, active: ActiveRun, body: RunCreate) -> dict[str, Any]:
        config: dict[str, Any] = dict(body.config or {})
        configurable = dict(config.get("configurable") or {})
        configurable.update(thread_id=active.run.thread_id, run_id=active.run.run_id,
                            assistant_id=active.entry.assistant_id, graph_id=active.entry.graph_id)
        checkpoint = dict(body.checkpoint or {})
        if body.checkpoint_id:
            checkpoint["checkpoint_id"] = body.checkpoint_id
        for key in ("checkpoint_id", "checkpoint_ns"):
            if checkpoint.get(key):
                configurable[key] = checkpoint[key]
        config["configurable"] = configurable
        config["metadata"] = {**(config.get("metadata") or {}), **(body.metadata or {}),
                              "run_id": active.run.run_id, "graph_id": active.entry.graph_id,
                              "assistant_id": active.entry.assistant_id}
        return config

    async def _stream(self, active: ActiveRun, body: RunCreate, stream: bool) -> Outcome:
        # A graph factory builds this run's graph from its config (and context); others are the one graph.
        async with active.entry.for_run(self.config_for(active, body), body.context) as graph:
            return await self._stream_graph(graph, active, body, stream)

    async def _stream_graph(self, graph: Any, active: ActiveRun, body: RunCreate, stream: bool) -> Outcome:
        requested = _modes(body) if stream else []
        graph_modes = list(dict.fromkeys([_GRAPH_MODE.get(m, m) for m in requested] + ["values", "updates"]))
        emit_modes = {_GRAPH_MODE.get(m, m) for m in requested}
        config = self.config_for(active, body)
        graph_input: Any = body.input
        if body.command is not None:
            graph_input = Command(resume=body.command.resume, update=body.command.update,
                                  goto=body.command.goto or ())
        kwargs: dict[str, Any] = {"stream_mode": graph_modes, "subgraphs": body.stream_subgraphs}
        if body.interrupt_before is not None:
            kwargs["interrupt_before"] = body.interrupt_before
        if body.interrupt_after is not None:
            kwargs["interrupt_after"] = body.interrupt_after
        if body.durability is not None:
            kwargs["durability"] = body.durability
        if body.context is not None:
            kwargs["context"] = body.context

        values: dict[str, Any] | None = None
        interrupted = False
        interrupt_list: list[Any] = []
        async for item in graph.astream(graph_input, config, **kwargs):
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
            if stream and mode in emit_modes:
                event = _EVENT_NAME.get(mode, mode)
                if namespace:
                    event = "|".join([event, *namespace])
                await active.events.put((event, to_jsonable(chunk)))

        interrupts: dict[str, Any] = {}
        if interrupt_list:
            state = await graph.aget_state({"configurable": {"thread_id": active.run.thread_id}})
            interrupts = {t.id: to_jsonable(list(t.interrupts)) for t in state.tasks if t.interrupts}
        json_values = to_jsonable(values) if values is not None else None
        if interrupted:
            return Outcome("interrupted", "interrupted", json_values, interrupts, interrupt_list)
        return Outcome("success", "idle", json_values)

    async def drain(self, timeout: float) -> int:
        """Wait for runs in flight (at most ``timeout`` s); return how many were still running."""
        pending = [t for t in self.in_flight if not t.done()]
        if not pending:
            return 0
        _, still = await asyncio.wait(pending, timeout=timeout)
        return len(still)
