"""Workers: claim runs from the queue, execute them, keep their leases, stop them when cancelled.

Every pod runs ``slots`` workers' worth of claimed runs at once (``N_JOBS_PER_WORKER``). Runs that
a request executes where it arrived (runs/wait and runs/stream on a free thread) do not take a
slot: the HTTP server bounds those. The claim loop sleeps until a ``NOTIFY`` says a run became
claimable, a delayed run is due or a lease may have expired, with a poll interval as the floor,
so an idle pod issues one statement every few seconds.

An execution renews its run's lease every third of the lease. The renewal also reads the run's
cancel flag, which is how a cancel reaches a pod that is not listening; a listening pod hears
the ``NOTIFY`` at once. A run whose lease was lost (another pod took it over) is stopped here.

A run's checkpoint writes commit without waiting for the disk, and its tasks' pending writes go
with the next checkpoint (``flush_each_step`` False, the default: see :mod:`service.checkpointer`);
its end sends what is still pending, then is committed as usual, which flushes them all to disk.
When the end cannot be recorded, a flush is asked for before the run is answered, else it is
answered 503 as a run the database failed under.

Those steps of a run's end meet the same database as the run did, so its waiters do not wait
for all of them when the database is gone (each would wait out a pool or an I/O timeout, one
after another). A run the database failed under is answered at once: nothing after it can make
it a success. A run whose end is not settled ``answer_within`` seconds (the I/O timeout) after its
graph returned is answered as one too; its end may still be recorded, the answer does not claim it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from service import metrics
from service.auth.handlers import with_user
from service.checkpointer import Deferred, deferred
from service.errors import UNAVAILABLE_ERRORS
from service.graphs import GraphEntry
from service.logging import get_logger
from service.runs.events import EventLog, Hub
from service.runs.execution import Outcome, RunCreate, RunTarget, decode_kwargs, failure, run_graph
from service.runs.notify import Notifier
from service.runs.queue import CHANNEL_CANCEL, CHANNEL_DONE, CHANNEL_RUNS, RunQueue

log = get_logger("service.runs.worker")

MIN_WAIT = 0.25  # the shortest a worker sleeps between looks at the queue by itself

OnFinished = Callable[[dict[str, Any], RunCreate, Outcome], Awaitable[None]]


@dataclass
class Execution:
    row: dict[str, Any]
    body: RunCreate
    entry: GraphEntry
    hub: Hub
    outcome: asyncio.Future[Outcome]
    task: asyncio.Task[None] | None = None
    cancel_action: str | None = None
    slot: bool = False
    lease_lost: bool = False
    deferred: Deferred | None = None
    # The thread's latest checkpoint as the run's submit read it (service.checkpointer.Deferred.latest).
    latest: tuple[str, dict[str, Any] | None] | None = None
    started: float = field(default_factory=time.monotonic)

    @property
    def run_id(self) -> str:
        return str(self.row["run_id"])


class Workers:
    def __init__(self, queue: RunQueue, events: EventLog, notifier: Notifier, graphs: dict[str, GraphEntry], *,
                 slots: int, lease: float, on_finished: OnFinished, flush_each_step: bool = False,
                 answer_within: float | None = None) -> None:
        self.queue = queue
        self.events = events
        self.notifier = notifier
        self.graphs = graphs
        self.slots = slots
        self.lease = lease
        self.on_finished = on_finished
        self.flush_each_step = flush_each_step
        self.answer_within = answer_within
        self.local: dict[str, Execution] = {}
        self.busy_slots = 0
        self._slot_freed = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False
        self.after_finish: set[asyncio.Task[Any]] = set()
        notifier.on(CHANNEL_CANCEL, self._cancel_requested)

    # -- the claim loop ------------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.create_task(self._claim_forever())

    @property
    def free_slots(self) -> int:
        return max(0, self.slots - self.busy_slots)

    async def _claim_forever(self) -> None:
        next_check_give_up = 0.0
        while not self._stopping:
            try:
                if self.free_slots == 0:
                    self._slot_freed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._slot_freed.wait(), timeout=self.notifier.poll_interval)
                    continue
                if time.monotonic() >= next_check_give_up:
                    for run_id in await self.queue.give_up():
                        log.warning("run_abandoned", run_id=run_id)
                        metrics.RUNS_ABANDONED.inc()
                    next_check_give_up = time.monotonic() + self.lease / 2
                rows = await self.queue.claim(self.free_slots)
                for row in rows:
                    self._start_claimed(row)
                if len(rows) and self.free_slots:
                    continue  # there may be more
                timeout = self.notifier.poll_interval
                if self.notifier.listening:  # polling looks often anyway: no statement for the next due time
                    due = await self.queue.next_due()
                    if due is not None:  # never below MIN_WAIT: a lease that expired but cannot be taken
                        timeout = min(timeout, max(MIN_WAIT, due + 0.01))  # must not make a busy loop
                await self.notifier.wait(CHANNEL_RUNS, timeout=timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("run_claim_failed", error_type=type(exc).__name__)
                await asyncio.sleep(min(5.0, self.notifier.poll_interval))

    def _start_claimed(self, row: dict[str, Any]) -> None:
        if row["prior_status"] == "running":
            metrics.RUNS_TAKEN_OVER.inc()
            log.info("run_taken_over", run_id=row["run_id"], thread_id=row["thread_id"], attempt=row["attempt"])
        else:
            queued = max(0.0, float(row["queued_seconds"] or 0.0))
            metrics.RUN_QUEUE_WAIT.observe(queued)
            if row["kwargs"].get("_kind") in ("wait", "stream"):  # a request that wanted to run at once
                metrics.THREAD_LOCK_WAIT.observe(queued)
        try:
            body = decode_kwargs(row["kwargs"])
            entry = self.graphs[row["kwargs"]["_graph_id"]]
        except Exception as exc:
            # Not runnable here (a graph this pod does not serve, a body it cannot read): fail it.
            outcome = failure(exc, False)
            task = asyncio.create_task(self.queue.finish(row, outcome, notify=True))
            self.after_finish.add(task)
            task.add_done_callback(self.after_finish.discard)
            return
        self.execute(row, body, entry, slot=True, store=bool(row["kwargs"].get("_store_events", True)))

    # -- executing -----------------------------------------------------------------------------------
    def execute(self, row: dict[str, Any], body: RunCreate, entry: GraphEntry, *, slot: bool,
                store: bool, latest: tuple[str, dict[str, Any] | None] | None = None) -> Execution:
        hub = Hub(str(row["run_id"]), store=store)
        loop = asyncio.get_running_loop()
        execution = Execution(row, body, entry, hub, loop.create_future(), slot=slot,
                              cancel_action=row.get("cancel_action"), latest=latest)
        if slot:
            self.busy_slots += 1
        self.local[execution.run_id] = execution
        execution.task = asyncio.create_task(self._run(execution))
        return execution

    async def _run(self, ex: Execution) -> None:
        run_id, thread_id, graph_id = ex.run_id, ex.row["thread_id"], ex.entry.graph_id
        attempt = int(ex.row["attempt"])
        if not self.flush_each_step:  # this task's context: the run's writes, not others'
            ex.deferred, ex.latest = Deferred(ex.latest), None  # the saver's first read takes it
            deferred.set(ex.deferred)
        heartbeat = asyncio.create_task(self._heartbeat(ex))
        metrics.RUNS_IN_PROGRESS.labels(graph_id).inc()
        outcome = Outcome("error", "error", None)
        try:
            resume = False
            if attempt > 1:
                ex.hub.seq = await self.events.last_seq(run_id) if ex.hub.store else 0
                resume = await self.queue.resumed(thread_id, run_id)
            self.events.start_writer(ex.hub)
            ex.hub.publish("metadata", {"run_id": run_id, "attempt": attempt})

            async def emit(event: str, payload: Any) -> None:
                ex.hub.publish(event, payload)

            if ex.cancel_action is not None:  # cancelled while its pod was dying: end it, do not run it
                raise asyncio.CancelledError
            kwargs = ex.row["kwargs"]
            target = RunTarget(run_id, thread_id, str(ex.row["assistant_id"]),
                               with_user(kwargs.get("_config", ex.body.config or {})),
                               kwargs.get("_context", ex.body.context or {}))
            outcome = await run_graph(ex.entry, ex.body, target, emit, resume=resume)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if ex.cancel_action is None and not ex.lease_lost:
                # Shutdown past the drain timeout: leave the run to another pod (its lease expires).
                ex.outcome.cancel()
                raise
            outcome = Outcome("interrupted", "idle", None,
                              error=None if ex.cancel_action else {"error": "LeaseLost",
                                                                   "message": "the run continued on another pod"})
            if ex.cancel_action == "interrupt":
                with contextlib.suppress(Exception):
                    state = await ex.entry.graph.aget_state({"configurable": {"thread_id": thread_id}})
                    outcome.values = state.values if isinstance(state.values, dict) else None
                    from service.serde import to_jsonable

                    outcome.values = to_jsonable(outcome.values)
        except Exception as exc:
            unavailable = isinstance(exc, UNAVAILABLE_ERRORS)
            outcome = failure(exc, unavailable)
            log.warning("run_failed", run_id=run_id, thread_id=thread_id, graph=graph_id,
                        error_type=type(exc).__name__, database_unavailable=unavailable)
            ex.hub.publish("error", outcome.error)
        finally:
            heartbeat.cancel()
            metrics.RUNS_IN_PROGRESS.labels(graph_id).dec()
            await asyncio.shield(self._finish(ex, outcome))

    async def _finish(self, ex: Execution, outcome: Outcome) -> None:
        graph_id = ex.entry.graph_id
        _answer_if_unavailable(ex, outcome)
        deadline = (None if self.answer_within is None else
                    asyncio.get_running_loop().call_later(self.answer_within, _answer_unsettled, ex))
        try:
            await self._settle(ex, outcome, graph_id)
        except Exception as exc:  # the lease expires and another pod settles it
            log.warning("run_settle_failed", run_id=ex.run_id, error_type=type(exc).__name__,
                        error=str(exc).splitlines()[0][:200] if str(exc) else "")
        finally:
            if deadline is not None:
                deadline.cancel()
            self.local.pop(ex.run_id, None)
            if ex.slot:
                self.busy_slots -= 1
                self._slot_freed.set()
            if not ex.outcome.done():
                ex.outcome.set_result(outcome)
            self.notifier.poke(CHANNEL_DONE, ex.run_id)

    async def _settle(self, ex: Execution, outcome: Outcome, graph_id: str) -> None:
        if ex.deferred is not None and ex.deferred.pending:
            try:
                await ex.deferred.flush()  # the writes of an interrupted or failed step
            except Exception as exc:
                log.warning("run_writes_failed", run_id=ex.run_id, error_type=type(exc).__name__)
                outcome.unavailable = True
                _answer_if_unavailable(ex, outcome)
        await self.events.flush(ex.hub)
        if ex.lease_lost:
            pass  # another pod owns the run now
        elif ex.cancel_action == "rollback":
            await self.queue.rollback(ex.row)
            metrics.RUNS_CANCELLED.labels("rollback").inc()
        else:
            if ex.cancel_action == "interrupt":
                metrics.RUNS_CANCELLED.labels("interrupt").inc()
            if not await self._record(ex, outcome):
                if ex.deferred is not None and not await self._flushed(ex):
                    outcome.unavailable = True  # its checkpoints may not be on disk: never answer it done
                    _answer_if_unavailable(ex, outcome)
                task = asyncio.create_task(self._record_later(ex, outcome))
                self.after_finish.add(task)
                task.add_done_callback(self.after_finish.discard)
        if not ex.lease_lost:
            metrics.RUNS.labels(graph_id, metrics.run_status_label(outcome.run_status)).inc()
            metrics.RUN_DURATION.labels(graph_id).observe(time.monotonic() - ex.started)
            log.info("run_finished", run_id=ex.run_id, thread_id=ex.row["thread_id"], graph=graph_id,
                     status=outcome.run_status, seconds=round(time.monotonic() - ex.started, 4))
            await self.on_finished(ex.row, ex.body, outcome)

    async def _record(self, ex: Execution, outcome: Outcome) -> bool:
        try:
            await self.queue.finish(ex.row, outcome, notify=ex.slot or ex.hub.store)
        except Exception as exc:  # the run's result is in the checkpoints; the row catches up later
            log.warning("run_finish_failed", run_id=ex.run_id, error_type=type(exc).__name__)
            return False
        return True

    async def _flushed(self, ex: Execution) -> bool:
        try:
            await self.queue.flush(ex.run_id)
        except Exception as exc:
            log.warning("run_flush_failed", run_id=ex.run_id, error_type=type(exc).__name__)
            return False
        return True

    async def _record_later(self, ex: Execution, outcome: Outcome) -> None:
        deadline = time.monotonic() + 2 * self.lease
        delay = 0.5
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            if await self._record(ex, outcome):
                log.info("run_finish_recovered", run_id=ex.run_id)
                return
            delay = min(5.0, delay * 2)

    async def _heartbeat(self, ex: Execution) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                alive, action = await self.queue.heartbeat(ex.run_id, int(ex.row["attempt"]))
            except Exception as exc:
                log.warning("run_heartbeat_failed", run_id=ex.run_id, error_type=type(exc).__name__)
                continue
            if not alive:
                log.warning("run_lease_lost", run_id=ex.run_id, thread_id=ex.row["thread_id"])
                ex.lease_lost = True
                self._stop(ex)
                return
            if action is not None:
                self._stop(ex, action)
                return

    def _cancel_requested(self, run_id: str) -> None:
        ex = self.local.get(run_id)
        if ex is None:
            return
        task = asyncio.create_task(self._check_cancel(ex))
        self.after_finish.add(task)
        task.add_done_callback(self.after_finish.discard)

    async def _check_cancel(self, ex: Execution) -> None:
        with contextlib.suppress(Exception):
            row = await self.queue.get(ex.run_id)
            if row["cancel_action"]:
                self._stop(ex, row["cancel_action"])

    def cancel_local(self, run_id: str, action: str) -> bool:
        """Stop a run executing here (the cancel flag is already in its row)."""
        ex = self.local.get(run_id)
        if ex is None:
            return False
        self._stop(ex, action)
        return True

    def _stop(self, ex: Execution, action: str | None = None) -> None:
        if action is not None and ex.cancel_action is None:
            ex.cancel_action = action
        if ex.task is not None and not ex.task.done():
            ex.task.cancel()

    # -- shutdown ------------------------------------------------------------------------------------
    async def stop(self, timeout: float) -> int:
        """Stop claiming; wait for runs in flight (at most ``timeout`` s); return how many were left."""
        self._stopping = True
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop
        tasks = [ex.task for ex in self.local.values() if ex.task is not None and not ex.task.done()]
        tasks += [t for t in self.after_finish if not t.done()]
        if not tasks:
            return 0
        _, still = await asyncio.wait(tasks, timeout=timeout)
        for task in still:
            task.cancel()
        return len(still)


def _answer_if_unavailable(ex: Execution, outcome: Outcome) -> None:
    """A run the database failed under is its waiters' answer now; settling it cannot change that."""
    if outcome.unavailable and not ex.outcome.done():
        ex.outcome.set_result(outcome)


def _answer_unsettled(ex: Execution) -> None:
    """The run's end is still not settled: answer it as one the database failed under (503)."""
    if not ex.outcome.done():
        log.warning("run_end_unsettled", run_id=ex.run_id, thread_id=ex.row["thread_id"])
        ex.outcome.set_result(failure(TimeoutError("the run's end was not recorded in time"), True))
