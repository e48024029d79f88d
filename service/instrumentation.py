"""Instrumented versions of the service's database objects (``METRICS_ENABLED=false`` skips them).

* :class:`InstrumentedSaver`: the pool-bounded checkpointer, timing each public operation into
  ``langgraph_checkpoint_operation_duration_seconds{operation, outcome}`` and counting failures
  by kind in ``langgraph_checkpoint_errors_total{operation, error}``. SQL and behaviour are the
  parent's; the wrapper adds two clock reads and one pre-bound histogram observation per call.
* :class:`InstrumentedThreadStore`: the thread store. Its ``delete`` removes the thread's
  checkpoints (the rows ``adelete_thread`` removes) with the thread row in one transaction, so on a
  pod it is the ``delete_thread`` checkpoint operation; every method counts database errors.
* :class:`InstrumentedStore`: LangGraph's PostgreSQL store; every batch counts database errors.
* :class:`InstrumentedPool`: the connection pool, timing each checkout into
  ``langgraph_db_pool_wait_seconds``; :func:`pool_gauges` samples its state every second into
  ``langgraph_db_pool_connections{state}``.

Deadlocks and lock timeouts are counted once per error by :func:`service.metrics.record_database_error`,
whichever of these layers (or the HTTP exception handler) sees the error first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Sequence
from time import perf_counter
from typing import Any, ParamSpec, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple
from langgraph.store.base import Result
from langgraph.store.postgres.aio import AsyncPostgresStore
from prometheus_client.metrics import Histogram
from psycopg_pool import AsyncConnectionPool

from service import db, metrics
from service.checkpointer import PooledPostgresSaver
from service.pool import Pool
from service.threads import PostgresThreadStore

P = ParamSpec("P")
R = TypeVar("R")


class _Operation:
    """The pre-bound metric children of one checkpoint operation (no label lookups per call)."""

    __slots__ = ("errors", "failed", "ok")

    def __init__(self, name: str) -> None:
        self.ok: Histogram = metrics.CHECKPOINT_DURATION.labels(name, "ok")
        self.failed: Histogram = metrics.CHECKPOINT_DURATION.labels(name, "error")
        self.errors = {kind: metrics.CHECKPOINT_ERRORS.labels(name, kind) for kind in metrics.DB_ERRORS}

    def error(self, exc: BaseException, seconds: float) -> None:
        self.failed.observe(seconds)
        self.errors[metrics.record_database_error(exc)].inc()


GET_TUPLE, LIST, PUT, PUT_WRITES, DELETE_THREAD, PRUNE = (_Operation(n) for n in metrics.CHECKPOINT_OPERATIONS)


class InstrumentedSaver(PooledPostgresSaver):
    """PooledPostgresSaver with a duration and an outcome for every public async operation.

    A cancelled call (the client went away) is neither a success nor a database error and is
    not observed.
    """

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        started = perf_counter()
        try:
            result = await super().aget_tuple(config)
        except Exception as exc:
            GET_TUPLE.error(exc, perf_counter() - started)
            raise
        GET_TUPLE.ok.observe(perf_counter() - started)
        return result

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        # Only the time spent producing items counts, not the consumer's time between them.
        items = cast("AsyncGenerator[CheckpointTuple, None]",
                     super().alist(config, filter=filter, before=before, limit=limit))
        spent = 0.0
        try:
            while True:
                started = perf_counter()
                try:
                    item = await anext(items)
                except StopAsyncIteration:
                    spent += perf_counter() - started
                    break
                except Exception as exc:
                    LIST.error(exc, spent + perf_counter() - started)
                    raise
                spent += perf_counter() - started
                yield item
        finally:
            await items.aclose()
        LIST.ok.observe(spent)

    # aput and aput_writes time their statement in place rather than around the parent's coroutine:
    # they are most of a run's checkpoint operations, and a wrapping coroutine costs more than the
    # observation itself.
    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        started = perf_counter()
        try:
            next_config, sql, params = self.put_statement(config, checkpoint, metadata, new_versions)
            async with self._cursor() as cur:
                await cur.execute(sql, params)
        except Exception as exc:
            PUT.error(exc, perf_counter() - started)
            raise
        PUT.ok.observe(perf_counter() - started)
        return next_config

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        started = perf_counter()
        try:
            statement = self.writes_statement(config, writes, task_id, task_path)
            if statement is not None:
                async with self._cursor() as cur:
                    await cur.execute(*statement)
        except Exception as exc:
            PUT_WRITES.error(exc, perf_counter() - started)
            raise
        PUT_WRITES.ok.observe(perf_counter() - started)

    async def adelete_thread(self, thread_id: str) -> None:
        started = perf_counter()
        try:
            await super().adelete_thread(thread_id)
        except Exception as exc:
            DELETE_THREAD.error(exc, perf_counter() - started)
            raise
        DELETE_THREAD.ok.observe(perf_counter() - started)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        started = perf_counter()
        try:
            await super().aprune(thread_ids, strategy=strategy)
        except Exception as exc:
            PRUNE.error(exc, perf_counter() - started)
            raise
        PRUNE.ok.observe(perf_counter() - started)


def _counting_errors(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Wrap an async method so that deadlocks and lock timeouts it raises are counted."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except Exception as exc:
            metrics.record_database_error(exc)
            raise

    return wrapper


class InstrumentedThreadStore(PostgresThreadStore):
    """PostgresThreadStore that counts database errors; ``delete`` is the delete_thread operation."""

    async def delete(self, thread_id: str, auth: dict[str, Any] | None = None) -> None:
        started = perf_counter()
        try:
            await super().delete(thread_id, auth)
        except Exception as exc:
            if metrics.classify_error(exc) != "other":  # NotFound and Conflict are answers, not failures
                DELETE_THREAD.error(exc, perf_counter() - started)
            raise
        DELETE_THREAD.ok.observe(perf_counter() - started)

    create = _counting_errors(PostgresThreadStore.create)
    get = _counting_errors(PostgresThreadStore.get)
    access = _counting_errors(PostgresThreadStore.access)
    patch = _counting_errors(PostgresThreadStore.patch)
    search = _counting_errors(PostgresThreadStore.search)
    count = _counting_errors(PostgresThreadStore.count)
    record_state = _counting_errors(PostgresThreadStore.record_state)
    begin_run = _counting_errors(PostgresThreadStore.begin_run)
    heartbeat = _counting_errors(PostgresThreadStore.heartbeat)
    finish_run = _counting_errors(PostgresThreadStore.finish_run)


class InstrumentedStore(AsyncPostgresStore):
    """AsyncPostgresStore that counts database errors (every store operation goes through abatch)."""

    async def abatch(self, ops: Any) -> list[Result]:
        try:
            return await super().abatch(ops)
        except Exception as exc:
            metrics.record_database_error(exc)
            raise


class InstrumentedPool(Pool):
    """The service's Pool that times every checkout (a PoolTimeout is observed too) and counts the
    new connections the server refused, by reason, in ``langgraph_db_connections_refused_total``.

    Requests never see a refused connection: they wait for the pool and get 503 after
    ``DB_POOL_TIMEOUT``; this counter says why the pool could not grow or reconnect.
    """

    observe_wait = staticmethod(metrics.POOL_WAIT.observe)

    async def _connect(self, timeout: float | None = None) -> Any:
        try:
            return await super()._connect(timeout)
        except Exception as exc:
            reason = db.classify(exc).value
            metrics.DB_CONNECTIONS_REFUSED.labels(reason if reason in metrics.CONNECT_FAILURES else "other").inc()
            raise


def sample_pool(pool: AsyncConnectionPool[Any]) -> None:
    stats = pool.get_stats()
    size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
    metrics.POOL_CONNECTIONS.labels("size").set(size)
    metrics.POOL_CONNECTIONS.labels("idle").set(idle)
    metrics.POOL_CONNECTIONS.labels("in_use").set(max(0, size - idle))
    metrics.POOL_CONNECTIONS.labels("waiting").set(stats.get("requests_waiting", 0))
    metrics.POOL_CONNECTIONS.labels("max").set(stats.get("pool_max", 0))


@contextlib.asynccontextmanager
async def pool_gauges(pool: AsyncConnectionPool[Any], interval: float = 1.0) -> AsyncIterator[None]:
    """Sample the pool's state every ``interval`` seconds while the context is open.

    A sampler rather than a scrape-time collector, so that it also works with several workers
    (``PROMETHEUS_MULTIPROC_DIR``), where a scrape reads files and runs no code of the workers.
    """

    async def loop() -> None:
        while True:
            sample_pool(pool)
            await asyncio.sleep(interval)

    task = asyncio.create_task(loop(), name="pool-gauges")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = ["InstrumentedPool", "InstrumentedSaver", "InstrumentedStore", "InstrumentedThreadStore", "pool_gauges",
           "sample_pool"]
