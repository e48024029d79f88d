"""Runs of ``CHECKPOINTER=memory``: executed in this process, inside the request that started them.

Local experiments and benchmarks only: there is no queue, so no background runs, join or
cancel (those need PostgreSQL). A run is admitted (thread found or created, its turn on the
thread taken) before any response starts, then executes in a task of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgspec

from service import metrics
from service.assistants import AssistantStore, merge_run_config, resolve_assistant, thread_metadata
from service.errors import UNAVAILABLE_ERRORS, Conflict, NotFound
from service.graphs import GraphEntry
from service.logging import get_logger
from service.runs.execution import Outcome, RunCreate, RunTarget, failure, requested_modes, run_graph
from service.threads import RunRecord, ThreadStore, new_thread_id
from service.validation import storable

log = get_logger("service.runs")


@dataclass
class LocalRun:
    run: RunRecord
    entry: GraphEntry
    temporary: bool
    events: asyncio.Queue[tuple[str, Any] | None]
    target: RunTarget
    task: asyncio.Task[Outcome] | None = None


class LocalRunManager:
    """Admits, executes and tracks the runs of this process."""

    def __init__(self, threads: ThreadStore, graphs: dict[str, GraphEntry], *, queue_timeout: float,
                 assistants: AssistantStore) -> None:
        self.threads = threads
        self.assistants = assistants
        self.graphs = graphs
        self.queue_timeout = queue_timeout
        self.in_flight: set[asyncio.Task[Any]] = set()

    async def admit(self, thread_id: str | None, body: RunCreate) -> LocalRun:
        requested_modes(body)  # validate before anything is created
        storable([body.input, body.command and msgspec.structs.asdict(body.command), body.config, body.context,
                  body.metadata], "run")
        if thread_id is not None:
            storable(thread_id, "thread_id")
        assistant, entry = await resolve_assistant(self.assistants, self.graphs, body.assistant_id)
        config, context = merge_run_config(assistant, body.config, body.context, entry.graph)
        temporary = thread_id is None
        create: dict[str, Any] | None = None
        if thread_id is None:
            thread_id, create = new_thread_id(), {**thread_metadata(assistant, body.config, body.metadata),
                                                  "temporary": True}
        elif body.if_not_exists == "create":
            create = thread_metadata(assistant, body.config, body.metadata)
        run = RunRecord(run_id=str(uuid.uuid4()), thread_id=thread_id, assistant_id=assistant.assistant_id,
                        graph_id=entry.graph_id, metadata=body.metadata or {},
                        multitask_strategy=body.multitask_strategy)
        try:
            waited = await self.threads.begin_run(run, 0, self.queue_timeout, create)
        except BaseException as exc:
            if isinstance(exc, Conflict):
                metrics.RUNS.labels(entry.graph_id, "rejected").inc()
            if temporary:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._drop_thread(thread_id))
            raise
        metrics.THREAD_LOCK_WAIT.observe(waited)
        return LocalRun(run, entry, temporary, asyncio.Queue(),
                        RunTarget(run.run_id, thread_id, assistant.assistant_id, config, context))

    def start(self, active: LocalRun, body: RunCreate, *, stream: bool) -> LocalRun:
        active.task = asyncio.create_task(self._execute(active, body, stream))
        self.in_flight.add(active.task)
        active.task.add_done_callback(self.in_flight.discard)
        return active

    async def events(self, active: LocalRun) -> AsyncIterator[tuple[str, Any]]:
        yield "metadata", {"run_id": active.run.run_id, "attempt": 1}
        while (item := await active.events.get()) is not None:
            yield item

    async def _execute(self, active: LocalRun, body: RunCreate, stream: bool) -> Outcome:
        run, entry = active.run, active.entry
        started = time.monotonic()
        metrics.RUNS_IN_PROGRESS.labels(entry.graph_id).inc()
        outcome = Outcome("error", "error", None)

        async def emit(event: str, payload: Any) -> None:
            await active.events.put((event, payload))

        try:
            outcome = await run_graph(entry, body, active.target, emit if stream else None)
        except asyncio.CancelledError:
            outcome = Outcome("interrupted", "idle", None, error={"error": "Cancelled", "message": "run cancelled"})
            raise
        except Exception as exc:
            outcome = failure(exc, isinstance(exc, UNAVAILABLE_ERRORS))
            log.warning("run_failed", run_id=run.run_id, thread_id=run.thread_id, graph=entry.graph_id,
                        error_type=type(exc).__name__)
            if stream:
                await active.events.put(("error", outcome.error))
        finally:
            metrics.RUNS_IN_PROGRESS.labels(entry.graph_id).dec()
            metrics.RUNS.labels(entry.graph_id, metrics.run_status_label(outcome.run_status)).inc()
            metrics.RUN_DURATION.labels(entry.graph_id).observe(time.monotonic() - started)
            await self.threads.finish_run(run, outcome.run_status, outcome.thread_status, outcome.values,
                                          outcome.interrupts, outcome.error)
            if body.on_completion == "delete" or (active.temporary and body.on_completion != "keep"):
                await self._drop_thread(run.thread_id)
            await active.events.put(None)
        return outcome

    async def _drop_thread(self, thread_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self.threads.delete(thread_id)

    async def drain(self, timeout: float) -> int:
        pending = [t for t in self.in_flight if not t.done()]
        if not pending:
            return 0
        _, still = await asyncio.wait(pending, timeout=timeout)
        return len(still)
