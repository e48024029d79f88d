"""What the API asks of runs on PostgreSQL: create, wait, stream, join, cancel, list, get, delete.

Every run goes through the queue, whichever call made it: runs/wait, runs/stream and background
runs are rows alike, visible to ``runs.get``/``list`` from any pod. A run on a free thread starts
at once on the pod that received it (no queueing delay, no cross-pod hop for its stream); one
that must wait for its thread is claimed later by whichever pod's worker gets there first, and
its waiter follows it through the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from psycopg.types.json import Jsonb

from service import metrics
from service.assistants import (
    AssistantStore,
    assistant_for_run,
    merge_run_config,
    resolve_assistant,
    thread_metadata,
)
from service.errors import Conflict, NotFound, Unprocessable
from service.graphs import GraphEntry
from service.logging import get_logger
from service.runs.events import Event, EventLog
from service.runs.execution import UNAVAILABLE_MESSAGE, Outcome, RunCreate, encode_kwargs, requested_modes
from service.runs.notify import Notifier
from service.runs.queue import (
    CANCEL_AHEAD_SQL,
    CHANNEL_DONE,
    CHANNEL_RUNS,
    FINAL,
    NOTIFY_RUNS_SQL,
    TAG_THREAD_SQL,
    CancelAction,
    RunQueue,
    StaleAssistant,
    public_status,
    run_json,
)
from service.runs.webhooks import webhook_payload
from service.runs.worker import Execution, Workers
from service.threads import RunStatus, ThreadStore, new_thread_id
from service.validation import storable

log = get_logger("service.runs")

Kind = Literal["wait", "stream", "background"]
_MAX_UUID = "ffffffff-ffff-ffff-ffff-ffffffffffff"  # a cursor after every run created at the same instant
WebhookSender = Callable[[str, dict[str, Any]], Coroutine[Any, Any, None]]
WebhookCheck = Callable[[str], None]


@dataclass
class Created:
    row: dict[str, Any]
    body: RunCreate
    entry: GraphEntry
    execution: Execution | None

    @property
    def run_id(self) -> str:
        return str(self.row["run_id"])

    @property
    def thread_id(self) -> str:
        return str(self.row["thread_id"])


class QueueRunManager:
    def __init__(self, queue: RunQueue, events: EventLog, notifier: Notifier, threads: ThreadStore,
                 graphs: dict[str, GraphEntry], assistants: AssistantStore, *, slots: int, lease: float,
                 sample_interval: float = 10.0, events_ttl: float = 3600.0, webhook_check: WebhookCheck | None = None,
                 webhook_send: WebhookSender | None = None, flush_each_step: bool = False,
                 answer_within: float | None = None) -> None:
        self.queue = queue
        self.events = events
        self.notifier = notifier
        self.threads = threads
        self.graphs = graphs
        self.assistants = assistants
        self.webhook_check = webhook_check
        self.sample_interval = sample_interval
        self.events_ttl = events_ttl
        self.webhook_send = webhook_send
        self.workers = Workers(queue, events, notifier, graphs, slots=slots, lease=lease,
                               on_finished=self._on_finished, flush_each_step=flush_each_step,
                               answer_within=answer_within)
        self._background: set[asyncio.Task[Any]] = set()
        self._sampler: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.notifier.start()
        self.workers.start()
        self._sampler = asyncio.create_task(self._sample_depth())

    async def drain(self, timeout: float) -> int:
        if self._sampler is not None:
            self._sampler.cancel()
        left = await self.workers.stop(timeout)
        await self.notifier.stop()
        return left

    async def _sample_depth(self) -> None:
        """Queue depth for the dashboard and expiry of old stream events: one small statement each,
        every ``sample_interval`` seconds and every minute (or every TTL, if shorter)."""
        every = min(60.0, self.events_ttl)
        next_expiry = time.monotonic() + every
        while True:
            with contextlib.suppress(Exception):
                depth = await self.queue.depth()
                for status in metrics.QUEUE_STATUSES:
                    metrics.RUN_QUEUE_DEPTH.labels(status).set(depth.get(status, 0))
            if time.monotonic() >= next_expiry:
                next_expiry = time.monotonic() + every
                with contextlib.suppress(Exception):
                    expired = await self.events.expire(self.events_ttl)
                    if expired:
                        log.info("run_events_expired", events=expired)
            await asyncio.sleep(self.sample_interval)

    # -- creating ------------------------------------------------------------------------------------
    async def create(self, thread_id: str | None, body: RunCreate, kind: Kind,
                     user: dict[str, Any] | None = None) -> Created:
        """``user``: what the run's configurable says of its user (service.auth.gate.run_configurable)."""
        requested_modes(body)
        storable([body.input, body.command and msgspec.structs.asdict(body.command), body.config, body.context,
                  body.metadata], "run")
        if thread_id is not None:
            storable(thread_id, "thread_id")
        if body.after_seconds is not None and body.after_seconds < 0:
            raise Unprocessable("after_seconds must not be negative")
        if body.webhook is not None and self.webhook_check is not None:
            self.webhook_check(body.webhook)
        target: str
        for attempt in range(3):
            # The assistant as this process last read it; read again if the submit finds it changed
            # (the last attempt submits what it has just read, unchecked, as a plain read would).
            assistant, entry, revision = await assistant_for_run(self.assistants, self.graphs, body.assistant_id,
                                                                 fresh=attempt > 0)
            config, context = merge_run_config(assistant, body.config, body.context, entry.graph)
            if user:
                config = {**config, "configurable": {**(config.get("configurable") or {}), **user}}
            owner = {"graph_id": entry.graph_id, "assistant_id": assistant.assistant_id}
            create: dict[str, Any] | None = None
            temporary = thread_id is None
            if thread_id is None:
                target, create = new_thread_id(), {**thread_metadata(assistant, body.config, body.metadata),
                                                      "temporary": True}
            else:
                target = thread_id
                if body.if_not_exists == "create":
                    create = thread_metadata(assistant, body.config, body.metadata)
            kwargs = encode_kwargs(body)
            # What the executing pod needs besides the body (never shown in the API: "_" keys).
            kwargs.update(_store_events=kind != "wait", _kind=kind, _temporary=temporary,
                          _graph_id=entry.graph_id, _config=config, _context=context)
            run_now = kind != "background" or body.multitask_strategy == "reject" or self.workers.free_slots > 0
            try:
                submitted = await self.queue.submit(
                    thread_id=target, assistant_id=assistant.assistant_id, kwargs=kwargs,
                    metadata=body.metadata or {}, strategy=body.multitask_strategy, run_now=run_now, create=create,
                    thread_metadata=owner, after_seconds=body.after_seconds,
                    assistant_revision=revision if attempt < 2 else None,
                    # A runs/wait is acknowledged by its answer, after its end's (flushing) commit.
                    defer=kind == "wait" and not self.workers.flush_each_step,
                    prefetch=not self.workers.flush_each_step)
                break
            except StaleAssistant:
                continue
            except Conflict:
                metrics.RUNS.labels(entry.graph_id, "rejected").inc()
                raise
        row = submitted.row
        execution = None
        if submitted.taken:
            if kind != "background":
                metrics.THREAD_LOCK_WAIT.observe(0.0)
            latest = (row["thread_id"], submitted.latest) if submitted.prefetched else None
            execution = self.workers.execute(row, body, entry, slot=kind == "background", store=kind != "wait",
                                             latest=latest)
        else:
            if body.multitask_strategy in ("interrupt", "rollback") and body.after_seconds is None:
                action: CancelAction = "interrupt" if body.multitask_strategy == "interrupt" else "rollback"
                for cancelled in await self.queue.cancel_ahead(target, str(row["run_id"]), action):
                    self.workers.cancel_local(cancelled["run_id"], action)
            await self.queue.wake()
        return Created(row, body, entry, execution)

    async def submit_in(self, conn: Any, thread_id: str | None, payload: dict[str, Any]) -> str:
        """The crons' Submit: a pending run inside the caller's transaction ``conn``; its run id.

        ``thread_id`` None: a new thread, whose metadata carries the run's metadata (and so the
        payload's ``cron_id``). Any pod's workers claim the run once the transaction commits (the
        NOTIFY goes out with the commit).
        """
        body = msgspec.convert(payload, RunCreate)
        assistant, entry = await resolve_assistant(self.assistants, self.graphs, body.assistant_id)
        config, context = merge_run_config(assistant, body.config, body.context, entry.graph)
        if payload.get("_auth"):  # the user who created the cron (service.auth.gate.run_configurable)
            config = {**config, "configurable": {**(config.get("configurable") or {}), **payload["_auth"]}}
        owner = {"graph_id": entry.graph_id, "assistant_id": assistant.assistant_id}
        create: dict[str, Any] | None = None
        if thread_id is None:
            thread_id, create = new_thread_id(), thread_metadata(assistant, body.config, body.metadata)
        kwargs = encode_kwargs(body)
        # on_completion (set by the cron) says what happens to a stateless cron's thread.
        kwargs.update(_store_events=True, _kind="background", _temporary=False, _graph_id=entry.graph_id,
                      _config=config, _context=context)
        submitted = await self.queue.submit(
            thread_id=thread_id, assistant_id=assistant.assistant_id, kwargs=kwargs, metadata=body.metadata or {},
            strategy=body.multitask_strategy, run_now=False, create=create, thread_metadata=owner, conn=conn)
        run_id = str(submitted.row["run_id"])
        if create is None:
            await conn.execute(TAG_THREAD_SQL, {"thread_id": thread_id, "thread_metadata": Jsonb(owner)})
        if body.multitask_strategy in ("interrupt", "rollback"):
            # The runs ahead on the thread, cancelled in the same transaction (their pods hear of it at commit).
            cur = await conn.execute(CANCEL_AHEAD_SQL, {"thread_id": thread_id, "run_id": run_id})
            ahead = [r["run_id"] for r in await cur.fetchall()]
            if ahead:
                action: CancelAction = "interrupt" if body.multitask_strategy == "interrupt" else "rollback"
                await self.queue.cancel(action=action, run_ids=ahead, conn=conn)
        await conn.execute(NOTIFY_RUNS_SQL)
        return run_id

    # -- waiting -------------------------------------------------------------------------------------
    async def outcome(self, run_id: str, thread_id: str, execution: Execution | None = None) -> Outcome:
        """Wait for the run's end, wherever it executes, and return its outcome."""
        while True:
            ex = execution or self.workers.local.get(run_id)
            if ex is not None:
                outcome = await asyncio.shield(ex.outcome)
                if not ex.lease_lost:
                    return outcome
                execution = None
            row = await self._row_or_none(run_id)
            if row is None or row["status"] in FINAL:
                return await self._stored_outcome(row, thread_id)
            await self.notifier.wait(CHANNEL_DONE, run_id)

    async def _row_or_none(self, run_id: str) -> dict[str, Any] | None:
        try:
            return await self.queue.get(run_id)
        except NotFound:
            return None

    async def _stored_outcome(self, row: dict[str, Any] | None, thread_id: str) -> Outcome:
        try:
            thread = await self.threads.get(thread_id)
        except NotFound:
            thread = {"values": {}, "interrupts": {}}
        status = row["status"] if row is not None else "interrupted"
        if status == "error":
            error = (row or {}).get("error") or {"error": "Error", "message": "run failed"}
            return Outcome("error", "error", None, error=error,
                           unavailable=error.get("message") == UNAVAILABLE_MESSAGE)
        interrupts = thread.get("interrupts") or {}
        interrupt_list = [i for group in interrupts.values() for i in (group or [])]
        final: RunStatus = "success" if status == "success" else "interrupted"
        return Outcome(final, "interrupted" if interrupt_list else "idle", thread.get("values") or {},
                       interrupts, interrupt_list)

    # -- streaming -----------------------------------------------------------------------------------
    async def follow(self, run_id: str, after: int = 0) -> AsyncIterator[Event]:
        """The run's events after ``after``: from memory where it executes, else from the database."""
        ex = self.workers.local.get(run_id)
        if ex is not None:
            async for item in ex.hub.follow(after):
                after = item[0]
                yield item
            if not ex.lease_lost:
                return
        async for item in self.events.follow(run_id, after):
            yield item

    async def follow_thread(self, thread_id: str, resume: tuple[str, int] | None
                            ) -> AsyncIterator[tuple[str, Event]]:
        """The events of the thread's runs, one run after another, from its oldest live run (or the
        run and event ``resume`` names) on, and of every run created later, until the client leaves."""
        if resume is not None:
            row = await self.queue.get(resume[0], thread_id)
            async for item in self.follow(resume[0], resume[1]):
                yield resume[0], item
            after_ts, after_id = row["created_at"], resume[0]
        else:
            after_ts, after_id = await self.queue.thread_start(thread_id), _MAX_UUID
        while True:
            nxt = await self.queue.next_run(thread_id, after_ts, after_id)
            if nxt is None:
                await self.notifier.wait(CHANNEL_RUNS, timeout=min(1.0, self.notifier.poll_interval))
                continue
            async for item in self.follow(nxt["run_id"]):
                yield nxt["run_id"], item
            after_ts, after_id = nxt["created_at"], nxt["run_id"]

    # -- the other operations ------------------------------------------------------------------------
    async def get(self, thread_id: str | None, run_id: str) -> dict[str, Any]:
        return await self.queue.get(run_id, thread_id)

    async def of_thread(self, thread_id: str, status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        await self.threads.get(thread_id)  # 404 for a missing thread
        return await self.queue.of_thread(thread_id, status, limit, offset)

    async def delete(self, thread_id: str, run_id: str) -> None:
        await self.queue.delete(thread_id, run_id)

    async def cancel(self, *, action: CancelAction, run_ids: list[str] | None = None, thread_id: str | None = None,
                     status: str | None = None, auth: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        targets = await self.queue.cancel(action=action, run_ids=run_ids, thread_id=thread_id, status=status,
                                          auth=auth)
        for target in targets:
            if target["status"] == "running":
                self.workers.cancel_local(target["run_id"], action)
            else:
                metrics.RUNS_CANCELLED.labels(action).inc()
                self.notifier.poke(CHANNEL_DONE, target["run_id"])
        if any(t["status"] == "pending" for t in targets):
            self.notifier.poke(CHANNEL_RUNS)
        return targets

    # -- after a run ---------------------------------------------------------------------------------
    async def _on_finished(self, row: dict[str, Any], body: RunCreate, outcome: Outcome) -> None:
        kwargs = row.get("kwargs") or {}
        temporary = bool(kwargs.get("_temporary"))
        if body.on_completion == "delete" or (temporary and body.on_completion != "keep"):
            with contextlib.suppress(NotFound, Conflict, Exception):
                await self.threads.delete(str(row["thread_id"]))
        if body.webhook and self.webhook_send is not None:
            payload = webhook_payload(run_json(row), status=public_status(outcome.run_status),
                                      started_at=row.get("started_at"),
                                      ended_at=row.get("ended_at") or dt.datetime.now(dt.UTC),
                                      values=outcome.values, error=outcome.error)
            task = asyncio.create_task(self.webhook_send(body.webhook, payload))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

